"""The pure GAN train step: golden first step, determinism, one compilation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxmed.families.base import Task
from jaxmed.families.gan import FAMILY as GAN
from jaxmed.families.gan import GanConfig, generate

CONFIG = GanConfig.tiny()


def real_batch(seed=0):
    return jax.random.uniform(jax.random.key(seed), (CONFIG.batch_size, 32, 32, 1), minval=-1, maxval=1)


def fresh():
    definition = GAN.definition(CONFIG, Task(class_names=(), total_steps=CONFIG.steps))
    return definition, GAN.init_state(CONFIG, definition, jax.random.key(CONFIG.seed))


def test_first_step_matches_an_independent_computation():
    """Losses and the first Adam update recomputed here from the models and equation (1)."""
    definition, state = fresh()
    real = real_batch()
    _, noise_key = jax.random.split(jax.random.wrap_key_data(state.key))
    z = jax.random.normal(noise_key, (CONFIG.batch_size, CONFIG.latent_dim))
    initial_generator_params = jax.tree.map(np.asarray, state.generator_params)

    def logits(generator_params):
        generator = nnx.merge(definition.generator, generator_params, state.generator_stats, copy=True)
        discriminator = nnx.merge(definition.discriminator, state.discriminator_params, state.discriminator_stats,
                                  copy=True)
        return discriminator(real), discriminator(generator(z))

    real_logits, fake_logits = logits(state.generator_params)
    sigmoid = jax.nn.sigmoid
    expected_d = -(np.mean(np.log(sigmoid(real_logits))) + np.mean(np.log(1 - sigmoid(fake_logits))))
    expected_g = -np.mean(np.log(sigmoid(fake_logits)))
    generator_grads = jax.grad(lambda p: -jnp.mean(jax.nn.log_sigmoid(logits(p)[1])))(state.generator_params)

    new_state, metrics = GAN.make_train_step(definition)(state, {"image": real})
    np.testing.assert_allclose(metrics["d_loss"], expected_d, rtol=1e-4)
    np.testing.assert_allclose(metrics["g_loss"], expected_g, rtol=1e-4)
    assert int(new_state.step) == 1
    # Adam's first step moves each parameter by lr * g / (|g| + eps).
    lr = CONFIG.optimizer.lr
    expected_params = jax.tree.map(lambda p, g: p - lr * g / (jnp.abs(g) + 1e-8), initial_generator_params,
                                   generator_grads)
    for got, want, grad, before in zip(jax.tree.leaves(new_state.generator_params), jax.tree.leaves(expected_params),
                                       jax.tree.leaves(generator_grads), jax.tree.leaves(initial_generator_params)):
        got, want, grad = np.asarray(got), np.asarray(want), np.asarray(grad)
        # Where |g| is near eps the update lr * g / (|g| + eps) turns on float rounding of g (two
        # programs summing in different orders), so compare where |g| >> eps, and bound the rest.
        well_conditioned = np.abs(grad) >= 1e-6
        assert well_conditioned.mean() > 0.9
        np.testing.assert_allclose(got[well_conditioned], want[well_conditioned], atol=0.01 * lr)
        assert np.all(np.abs(got - before) <= lr * (1 + 1e-3))  # Adam's first step is at most lr


def test_step_is_deterministic_and_compiles_once():
    definition, _ = fresh()
    step = GAN.make_train_step(definition)
    results = []
    for _ in range(2):
        state = GAN.init_state(CONFIG, definition, jax.random.key(CONFIG.seed))
        losses = []
        for index in range(3):
            state, metrics = step(state, {"image": real_batch(index)})
            losses.append(float(metrics["g_loss"]))
        results.append((losses, jax.tree.map(np.asarray, state.ema_params)))
    assert results[0][0] == results[1][0]
    assert len(set(results[0][0])) == 3  # the losses do change from step to step
    assert step._cache_size() == 1


def test_step_updates_running_statistics_and_ema():
    definition, state = fresh()
    before = jax.tree.map(np.asarray, (state.generator_stats, state.ema_params, state.key))
    new_state, _ = GAN.make_train_step(definition)(state, {"image": real_batch()})
    after = (new_state.generator_stats, new_state.ema_params, new_state.key)
    for old, new in zip(before, after):
        assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(new)))


def test_generate_in_eval_mode_is_batch_independent():
    definition, state = fresh()
    z = jax.random.normal(jax.random.key(3), (4, CONFIG.latent_dim))
    full = generate(definition.generator, state.ema_params, state.ema_stats, z)
    first = generate(definition.generator, state.ema_params, state.ema_stats, z[:1])
    assert full.shape == (4, 32, 32, 1)
    np.testing.assert_allclose(full[:1], first, atol=1e-5)


def test_optimizer_states_are_adam():
    definition, state = fresh()
    assert isinstance(state.generator_opt[0], optax.ScaleByAdamState)
