"""Classifier train state and pure steps: (state, batch) -> (state, metrics), and evaluation.

The state is one pytree: parameters, the rest of the model's state (BatchNorm
statistics and the dropout RNG stream), the optax state, the step, an augmentation
key, and the weights of the best validation epoch so far (early stopping returns to
them, and a resumed run must remember them). `ClassifierDefinition` is the static
rest, rebuilt from the config.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from jaxmed.data.augment import AugmentConfig, augment
from jaxmed.models.classifier import build_classifier
from jaxmed.train.config import ClassifierConfig, compute_dtype
from jaxmed.train.optimizer import build_optimizer

# Model state that is not a trainable parameter: BatchNorm statistics, dropout RNG counters.
NON_PARAMS = nnx.Not(nnx.Param)


@struct.dataclass
class ClassifierState:
    """Everything a classifier step changes, plus the best epoch's weights.

    Attributes:
      step: completed train steps (int32).
      key: raw uint32[2] key for augmentation.
      params: trainable parameters.
      model_state: BatchNorm statistics and dropout RNG state.
      opt_state: optax state.
      best_params, best_model_state: the weights of the best validation epoch.
    """

    step: jax.Array
    key: jax.Array
    params: nnx.State
    model_state: nnx.State
    opt_state: optax.OptState
    best_params: nnx.State
    best_model_state: nnx.State


@dataclasses.dataclass(frozen=True)
class ClassifierDefinition:
    """The static structure of a classifier run."""

    model: nnx.GraphDef
    optimizer: optax.GradientTransformation
    augment: AugmentConfig | None
    num_classes: int


def _build(config: ClassifierConfig, num_classes: int, key: jax.Array) -> nnx.Module:
    params_key, dropout_key = jax.random.split(key)
    return build_classifier(config.model, config.image_size, config.channels, num_classes,
                            width=config.width, dropout_rate=config.dropout_rate,
                            dtype=compute_dtype(config.precision),
                            rngs=nnx.Rngs(params=params_key, dropout=dropout_key))


def classifier_definition(config: ClassifierConfig, num_classes: int, total_steps: int) -> ClassifierDefinition:
    """The static structure for `config`, without allocating parameters."""
    model = nnx.eval_shape(lambda: _build(config, num_classes, jax.random.key(0)))
    return ClassifierDefinition(model=nnx.graphdef(model), optimizer=build_optimizer(config.optimizer, total_steps),
                                augment=AugmentConfig() if config.augment else None, num_classes=num_classes)


def init_classifier_state(config: ClassifierConfig, definition: ClassifierDefinition,
                          key: jax.Array) -> ClassifierState:
    """Fresh weights from `key` (normally `jax.random.key(config.seed)`)."""
    init_key, augment_key = jax.random.split(key)
    _, params, model_state = nnx.split(_build(config, definition.num_classes, init_key), nnx.Param, NON_PARAMS)
    return ClassifierState(
        step=jnp.zeros((), jnp.int32), key=jax.random.key_data(augment_key), params=params,
        model_state=model_state, opt_state=definition.optimizer.init(params),
        best_params=jax.tree.map(jnp.copy, params), best_model_state=jax.tree.map(jnp.copy, model_state))


def weighted_cross_entropy(logits_BxC: jax.Array, labels_B: jax.Array, weights_B: jax.Array) -> jax.Array:
    """Softmax cross-entropy averaged with per-example weights (class weighting for imbalance)."""
    losses_B = optax.softmax_cross_entropy_with_integer_labels(logits_BxC, labels_B)
    return jnp.sum(weights_B * losses_B) / jnp.maximum(jnp.sum(weights_B), 1e-12)


def classifier_train_step(definition: ClassifierDefinition, state: ClassifierState, images_BxHxWxC: jax.Array,
                          labels_B: jax.Array, class_weights_C: jax.Array) -> tuple[ClassifierState, dict]:
    """One optimizer update on a batch (augmented on device when the definition says so).

    Returns:
      The new state, and scalar metrics `loss` (weighted) and `accuracy`.
    """
    key, augment_key = jax.random.split(jax.random.wrap_key_data(state.key))
    if definition.augment is not None:
        images_BxHxWxC = augment(augment_key, images_BxHxWxC, definition.augment)
    weights_B = class_weights_C[labels_B]

    def loss_fn(params):
        model = nnx.merge(definition.model, params, state.model_state, copy=True)
        model.train()
        logits_BxC = model(images_BxHxWxC)
        return weighted_cross_entropy(logits_BxC, labels_B, weights_B), (logits_BxC, nnx.state(model, NON_PARAMS))

    (loss, (logits_BxC, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = definition.optimizer.update(grads, state.opt_state, state.params)
    new_state = state.replace(step=state.step + 1, key=jax.random.key_data(key),
                              params=optax.apply_updates(state.params, updates), model_state=model_state,
                              opt_state=opt_state)
    accuracy = jnp.mean((jnp.argmax(logits_BxC, -1) == labels_B).astype(jnp.float32))
    return new_state, {"loss": loss, "accuracy": accuracy}


def make_classifier_train_step(definition: ClassifierDefinition):
    """`classifier_train_step` for `definition`, jitted once with the state donated."""
    return jax.jit(functools.partial(classifier_train_step, definition), donate_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def predict_probabilities(model_def: nnx.GraphDef, params: nnx.State, model_state: nnx.State,
                          images_BxHxWxC: jax.Array) -> jax.Array:
    """Class probabilities (B, C) in evaluation mode (no dropout, running BatchNorm statistics)."""
    model = nnx.merge(model_def, params, model_state, copy=True)
    model.eval()
    return jax.nn.softmax(model(images_BxHxWxC), axis=-1)
