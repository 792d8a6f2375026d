"""Gradient accumulation: K microbatches then one update equal one big-batch step where the math says so."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxmed.errors import UsageError
from jaxmed import config as config_lib
from jaxmed.families.base import Task
from jaxmed.families.classifier import FAMILY as CLASSIFIER
from jaxmed.families.classifier import NON_PARAMS, ClassifierConfig, ClassifierDefinition, ClassifierState
from jaxmed.families.gan import FAMILY as GAN
from jaxmed.families.gan import GanConfig, GanDefinition, GanState
from jaxmed.training.accumulation import split_microbatches, sum_over_microbatches

BATCH = 8
# Labels whose class mix differs between the 4 microbatches (rows k, 4 + k): (0,0), (0,1), (1,1), (0,1).
LABELS = jnp.array([0, 0, 1, 0, 0, 1, 1, 1])
CLASS_WEIGHTS = jnp.array([1.0, 3.0])


class TinyClassifier(nnx.Module):
    """A classifier without batch statistics or dropout: its loss is a mean over independent examples."""

    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(16 * 16, 8, rngs=rngs)
        self.out = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.hidden(x.reshape(x.shape[0], -1))))


class TinyGenerator(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.project = nnx.Linear(4, 16 * 16, rngs=rngs)

    def __call__(self, z):
        return jnp.tanh(self.project(z)).reshape(z.shape[0], 16, 16, 1)


class TinyDiscriminator(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(16 * 16, 8, rngs=rngs)
        self.out = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.leaky_relu(self.hidden(x.reshape(x.shape[0], -1)), 0.2))[:, 0]


def images(seed=0):
    return jax.random.uniform(jax.random.key(seed), (BATCH, 16, 16, 1), minval=-1, maxval=1)


def assert_trees_close(got, want, atol):
    for got_leaf, want_leaf in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(got_leaf, want_leaf, rtol=1e-5, atol=atol)


def test_microbatch_k_takes_rows_k_k_plus_K_and_so_on():
    batch = {"x": jnp.arange(8 * 2).reshape(8, 2), "y": jnp.arange(8)}
    split = split_microbatches(batch, 4)
    np.testing.assert_array_equal(split["y"], [[0, 4], [1, 5], [2, 6], [3, 7]])
    np.testing.assert_array_equal(split["x"][1], batch["x"][jnp.array([1, 5])])
    with pytest.raises(ValueError, match="does not split into 3"):
        split_microbatches(batch, 3)


def test_summed_microbatch_gradients_equal_the_big_batch_gradient():
    weights = jax.random.normal(jax.random.key(1), (16 * 16, 3))
    x = images().reshape(BATCH, -1)

    def loss(w, rows):
        return jnp.sum(jnp.tanh(rows @ w) ** 2) / BATCH  # this microbatch's share of the batch mean

    def microbatch(count, rows):
        return count + 1, jax.grad(loss)(weights, rows)

    count, summed = jax.jit(sum_over_microbatches, static_argnums=(0, 3))(microbatch, 0, x, 4)
    assert count == 4  # the carry threads through every microbatch
    want = jax.grad(loss)(weights, x)
    # Float32 rounding, not the split, sets the tolerance: the 256-term dot products before tanh
    # are summed in another order for 2 rows than for 8 (3.5e-7 apart on an AVX2 CPU, where the
    # largest gradient is 0.07); a wrong share per microbatch would be off by the gradient itself.
    np.testing.assert_allclose(summed, want, rtol=0, atol=3e-5 * float(np.max(np.abs(want))))


def tiny_classifier_state(accumulate_steps):
    model = TinyClassifier(nnx.Rngs(0))
    graphdef, params, model_state = nnx.split(model, nnx.Param, NON_PARAMS)
    optimizer = optax.adamw(1e-2, weight_decay=1e-4)
    definition = ClassifierDefinition(model=graphdef, optimizer=optimizer, augment=None, num_classes=2,
                                      class_weights=tuple(float(w) for w in CLASS_WEIGHTS),
                                      accumulate_steps=accumulate_steps)
    state = ClassifierState(step=jnp.zeros((), jnp.int32), key=jax.random.key_data(jax.random.key(0)),
                            params=params, model_state=model_state, opt_state=optimizer.init(params),
                            best_params=jax.tree.map(jnp.copy, params), best_model_state=model_state)
    return definition, state


@pytest.mark.slow
def test_classifier_step_with_accumulation_equals_the_big_batch_step():
    results = {}
    for accumulate_steps in (1, 4):
        definition, state = tiny_classifier_state(accumulate_steps)
        step = CLASSIFIER.make_train_step(definition)
        history = []
        for index in range(3):
            state, metrics = step(state, {"image": images(index), "label": LABELS})
            history.append(metrics)
        results[accumulate_steps] = (state, history)
    (big, big_history), (accumulated, accumulated_history) = results[1], results[4]
    assert int(accumulated.step) == 3  # one update per step, not per microbatch
    for got, want in zip(accumulated_history, big_history):
        np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
        np.testing.assert_allclose(got["accuracy"], want["accuracy"])
    # Class-weighted: each microbatch contributes its share of the batch's weighted mean. The
    # tolerance is rounding's after 3 Adam steps of 1e-2 (up to 1e-5 seen on an AVX2 CPU, whose
    # matmuls sum in another order): a wrong share would move weights by a good part of a step.
    assert_trees_close(accumulated.params, big.params, atol=5e-5)
    assert_trees_close(accumulated.opt_state, big.opt_state, atol=5e-5)


@pytest.mark.slow
def test_gan_step_with_accumulation_equals_the_big_batch_step_without_batch_statistics():
    results = {}
    for accumulate_steps in (1, 2):
        generator, discriminator = TinyGenerator(nnx.Rngs(1)), TinyDiscriminator(nnx.Rngs(2))
        generator_def, generator_params, generator_stats = nnx.split(generator, nnx.Param, nnx.BatchStat)
        discriminator_def, discriminator_params, discriminator_stats = nnx.split(discriminator, nnx.Param,
                                                                                 nnx.BatchStat)
        adam = optax.adam(2e-4, b1=0.5)
        definition = GanDefinition(generator=generator_def, discriminator=discriminator_def, generator_optimizer=adam,
                                   discriminator_optimizer=adam, latent_dim=4, loss="non_saturating", ema_decay=0.9,
                                   accumulate_steps=accumulate_steps)
        state = GanState(step=jnp.zeros((), jnp.int32), key=jax.random.key_data(jax.random.key(3)),
                         generator_params=generator_params, generator_stats=generator_stats,
                         discriminator_params=discriminator_params, discriminator_stats=discriminator_stats,
                         ema_params=jax.tree.map(jnp.copy, generator_params), ema_stats=generator_stats,
                         generator_opt=adam.init(generator_params), discriminator_opt=adam.init(discriminator_params))
        step = GAN.make_train_step(definition)
        history = []
        for index in range(3):
            state, metrics = step(state, {"image": images(index)})
            history.append(metrics)
        results[accumulate_steps] = (state, history)
    (big, big_history), (accumulated, accumulated_history) = results[1], results[2]
    for got, want in zip(accumulated_history, big_history):
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, err_msg=name)
    # Adam's first steps move each weight by about lr; 2% of that allows for rounding near |g| ~ eps.
    assert_trees_close((accumulated.generator_params, accumulated.discriminator_params, accumulated.ema_params),
                       (big.generator_params, big.discriminator_params, big.ema_params), atol=4e-6)


@pytest.mark.slow
def test_with_batchnorm_each_microbatch_is_normalised_by_its_own_statistics():
    """What accumulation means for a BatchNorm model: the loss of K separately normalised microbatches."""
    config = ClassifierConfig.tiny(dropout_rate=0.0, accumulate_steps=2, augment=False)  # x as the step sees it
    definition = CLASSIFIER.definition(config, Task(class_names=("0", "1"), total_steps=10), np.asarray(CLASS_WEIGHTS))
    state = CLASSIFIER.init_state(config, definition, jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (BATCH, 32, 32, 1), minval=-1, maxval=1)
    weights = CLASS_WEIGHTS[LABELS]

    @jax.jit
    def weighted_loss_sums(rows_Kxb):
        """Sum of weighted losses of each group of rows, each group normalised by its own batch statistics."""
        model = nnx.merge(definition.model, state.params, state.model_state, copy=True)
        model.train()

        def one_group(rows):
            losses = optax.softmax_cross_entropy_with_integer_labels(model(x[rows]), LABELS[rows])
            return jnp.sum(weights[rows] * losses)

        return jnp.stack([one_group(rows) for rows in rows_Kxb])

    per_microbatch = float(jnp.sum(weighted_loss_sums(jnp.array([[0, 2, 4, 6], [1, 3, 5, 7]]))))
    whole_batch = float(weighted_loss_sums(jnp.arange(BATCH)[None])[0])
    _, metrics = CLASSIFIER.make_train_step(definition)(state, {"image": x, "label": LABELS})
    total_weight = float(jnp.sum(weights))
    np.testing.assert_allclose(metrics["loss"], per_microbatch / total_weight, rtol=1e-5)
    assert abs(per_microbatch - whole_batch) / total_weight > 1e-3  # not the big-batch normalisation


def test_accumulate_steps_is_validated_and_fixed_for_a_resumed_run():
    with pytest.raises(UsageError, match="accumulate_steps must be at least 1"):
        GanConfig.tiny(accumulate_steps=0)
    with pytest.raises(UsageError, match="accumulate_steps=3 must divide batch_size=8"):
        GanConfig.tiny(accumulate_steps=3)
    with pytest.raises(UsageError, match="accumulate_steps=3 must divide batch_size=8"):
        ClassifierConfig.tiny(accumulate_steps=3)
    assert config_lib.apply_overrides(GanConfig.tiny(), {"accumulate_steps": "4"}).accumulate_steps == 4
    with pytest.raises(UsageError, match="trained with accumulate_steps=1"):
        config_lib.check_resumable(GanConfig.tiny(), {"accumulate_steps": 2})
