"""Classifier train state and pure steps: (state, batch) -> (state, metrics), and evaluation.

The state is one pytree: parameters, the rest of the model's state (BatchNorm
statistics and the dropout RNG stream), the optax state, the step, an augmentation
key, and the weights of the best validation epoch so far (early stopping returns to
them, and a resumed run must remember them). `ClassifierDefinition` is the static
rest, rebuilt from the config.

With `accumulate_steps=K` a step sums the gradients of K microbatches before its one
update (`jaxmed.train.accumulation`). Each microbatch's loss is its share of the
batch's class-weighted mean (its weighted sum over the batch's total weight), so the
sum over microbatches is exactly the batch loss whatever the class mix per microbatch.
`make_classifier_train_step(definition, mesh)` compiles for a device mesh
(`jaxmed.train.sharding`).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax.sharding import Mesh

from jaxmed.data.augment import AugmentConfig, augment
from jaxmed.models.classifier import build_classifier
from jaxmed.train import sharding
from jaxmed.train.accumulation import sum_over_microbatches
from jaxmed.train.config import ClassifierConfig, compute_dtype, model_conv_backend
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
    accumulate_steps: int = 1


def _build(config: ClassifierConfig, num_classes: int, key: jax.Array) -> nnx.Module:
    params_key, dropout_key = jax.random.split(key)
    return build_classifier(config.model, config.image_size, config.channels, num_classes,
                            width=config.width, dropout_rate=config.dropout_rate,
                            dtype=compute_dtype(config.precision), conv_backend=model_conv_backend(config),
                            rngs=nnx.Rngs(params=params_key, dropout=dropout_key))


def classifier_definition(config: ClassifierConfig, num_classes: int, total_steps: int) -> ClassifierDefinition:
    """The static structure for `config`, without allocating parameters."""
    model = nnx.eval_shape(lambda: _build(config, num_classes, jax.random.key(0)))
    return ClassifierDefinition(model=nnx.graphdef(model), optimizer=build_optimizer(config.optimizer, total_steps),
                                augment=AugmentConfig() if config.augment else None, num_classes=num_classes,
                                accumulate_steps=config.accumulate_steps)


def init_classifier_state(config: ClassifierConfig, definition: ClassifierDefinition,
                          key: jax.Array) -> ClassifierState:
    """Fresh weights from `key` (normally `jax.random.key(config.seed)`)."""
    init_key, augment_key = jax.random.split(key)
    _, params, model_state = nnx.split(_build(config, definition.num_classes, init_key), nnx.Param, NON_PARAMS)
    return ClassifierState(
        step=jnp.zeros((), jnp.int32), key=jax.random.key_data(augment_key), params=params,
        model_state=model_state, opt_state=definition.optimizer.init(params),
        best_params=jax.tree.map(jnp.copy, params), best_model_state=jax.tree.map(jnp.copy, model_state))


def classifier_train_step(definition: ClassifierDefinition, state: ClassifierState, images_BxHxWxC: jax.Array,
                          labels_B: jax.Array, class_weights_C: jax.Array) -> tuple[ClassifierState, dict]:
    """One optimizer update on a batch (augmented on device when the definition says so).

    The loss is softmax cross-entropy averaged with per-example class weights,
    sum(w * loss) / sum(w) over the batch (class weighting for imbalance).

    Returns:
      The new state, and scalar metrics `loss` (weighted) and `accuracy`.
    """
    key, augment_key = jax.random.split(jax.random.wrap_key_data(state.key))
    if definition.augment is not None:
        images_BxHxWxC = augment(augment_key, images_BxHxWxC, definition.augment)
    weights_B = class_weights_C[labels_B]
    total_weight = jnp.maximum(jnp.sum(weights_B), 1e-12)

    def microbatch_gradients(model_state, microbatch):
        images_bxHxWxC, labels_b, weights_b = microbatch

        def loss_fn(params):
            model = nnx.merge(definition.model, params, model_state, copy=True)
            model.train()
            logits_bxC = model(images_bxHxWxC)
            losses_b = optax.softmax_cross_entropy_with_integer_labels(logits_bxC, labels_b)
            return jnp.sum(weights_b * losses_b) / total_weight, (logits_bxC, nnx.state(model, NON_PARAMS))

        (loss, (logits_bxC, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        correct = jnp.sum((jnp.argmax(logits_bxC, -1) == labels_b).astype(jnp.float32))
        return model_state, (grads, {"loss": loss, "correct": correct})

    model_state, (grads, sums) = sum_over_microbatches(
        microbatch_gradients, state.model_state, (images_BxHxWxC, labels_B, weights_B), definition.accumulate_steps)
    updates, opt_state = definition.optimizer.update(grads, state.opt_state, state.params)
    new_state = state.replace(step=state.step + 1, key=jax.random.key_data(key),
                              params=optax.apply_updates(state.params, updates), model_state=model_state,
                              opt_state=opt_state)
    return new_state, {"loss": sums["loss"], "accuracy": sums["correct"] / labels_B.shape[0]}


def make_classifier_train_step(definition: ClassifierDefinition, mesh: Mesh | None = None):
    """`classifier_train_step` for `definition`, jitted once with the state donated.

    Args:
      definition: the run's static structure.
      mesh: a `jaxmed.train.sharding.make_mesh` mesh. With one, the step is compiled
        for it: state and class weights replicated, images and labels sharded along
        `data`, metrics replicated (place inputs that way to compile once; see
        `jaxmed.train.gan_steps.make_gan_train_step`). Without one, everything goes to
        the default device.

    Returns:
      `step(state, images_BxHxWxC, labels_B, class_weights_C) -> (state, metrics)`.
    """
    return sharding.jit_train_step(functools.partial(classifier_train_step, definition), mesh,
                                   ("rows", "rows", "whole"))


@functools.partial(jax.jit, static_argnums=0)
def predict_probabilities(model_def: nnx.GraphDef, params: nnx.State, model_state: nnx.State,
                          images_BxHxWxC: jax.Array) -> jax.Array:
    """Class probabilities (B, C) in evaluation mode (no dropout, running BatchNorm statistics)."""
    model = nnx.merge(model_def, params, model_state, copy=True)
    model.eval()
    return jax.nn.softmax(model(images_BxHxWxC), axis=-1)
