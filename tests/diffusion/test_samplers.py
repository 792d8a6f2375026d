"""Samplers: exact recovery with an oracle, DDIM = DDPM at eta 1, DPM-Solver++'s order, guidance, determinism."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmed.diffusion.samplers import (ddim_sample, ddpm_sample, dpm_solver_2m_sample, guidance_combine, guided,
                                       sample, sampling_timesteps)
from jaxmed.diffusion.schedule import alpha_bar, cosine_schedule, eps_from_x0, velocity

SHAPE = (2, 4, 4, 1)


def _alpha_bar_at(schedule, t_B):
    """alpha_bar of the steps whose model time is t_B (t = (i + 1) / T), shaped to broadcast over images."""
    timesteps = jnp.round(t_B * schedule.num_steps).astype(jnp.int32) - 1
    return alpha_bar(schedule, timesteps).reshape(-1, 1, 1, 1)


def _oracle(schedule, x0, prediction):
    """A model for data that is the single image x0: it returns the exact noise (or v) of x_t."""
    def model_fn(x_t, t, labels):
        ab = _alpha_bar_at(schedule, t)[:, 0, 0, 0]
        eps = eps_from_x0(x_t, x0, ab)
        return eps if prediction == "eps" else velocity(x0, eps, ab)
    return model_fn


def _gaussian_oracle(schedule, scale):
    """The exact eps-predictor for data x0 ~ N(0, scale^2) per pixel: E[eps | x_t]."""
    def model_fn(x_t, t, labels):
        ab = _alpha_bar_at(schedule, t)
        return jnp.sqrt(1 - ab) * x_t / (ab * scale ** 2 + 1 - ab)
    return model_fn


def _toy_model(x_t, t, labels):
    """Not an oracle: a fixed smooth function of (x_t, t), so different samplers' paths really differ."""
    return 0.3 * x_t + 0.5 * jnp.sin(3.0 * t).reshape(-1, 1, 1, 1)


SAMPLER_CALLS = {
    "ddpm": lambda model, schedule, key, **kw: ddpm_sample(model, schedule, SHAPE, key, **kw),
    "ddim": lambda model, schedule, key, **kw: ddim_sample(model, schedule, SHAPE, key, 7, **kw),
    "ddim_eta": lambda model, schedule, key, **kw: ddim_sample(model, schedule, SHAPE, key, 7, eta=0.7, **kw),
    "dpm_solver_2m": lambda model, schedule, key, **kw: dpm_solver_2m_sample(model, schedule, SHAPE, key, 7, **kw),
}


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("sampler", sorted(SAMPLER_CALLS))
def test_oracle_model_recovers_its_image(sampler, prediction):
    schedule = cosine_schedule(40)
    x0 = jax.random.uniform(jax.random.key(0), SHAPE, minval=-0.9, maxval=0.9)
    result = SAMPLER_CALLS[sampler](_oracle(schedule, x0, prediction), schedule, jax.random.key(1),
                                    prediction=prediction, clip_x0=False)
    np.testing.assert_allclose(result, x0, atol=1e-4)


@pytest.mark.slow
def test_ddim_with_eta_one_on_the_full_grid_is_ddpm():
    schedule = cosine_schedule(30)
    key = jax.random.key(2)
    ddpm = ddpm_sample(_toy_model, schedule, SHAPE, key, prediction="eps")
    ddim = sample("ddim", _toy_model, schedule, SHAPE, key, 30, eta=1.0, prediction="eps")  # eta through the dispatch
    np.testing.assert_allclose(ddim, ddpm, atol=1e-4)
    deterministic = ddim_sample(_toy_model, schedule, SHAPE, key, 30, eta=0.0, prediction="eps")
    assert float(jnp.max(jnp.abs(deterministic - ddpm))) > 1e-2  # the noise really enters the comparison


def test_dpm_solver_2m_is_more_accurate_than_ddim_on_the_probability_flow_ode():
    """Gaussian data: the ODE maps x_T to x_T * scale / std(x_T), so each sampler's error is known."""
    schedule, scale = cosine_schedule(1000), 0.5
    model = _gaussian_oracle(schedule, scale)
    key = jax.random.key(3)
    start = jax.random.normal(jax.random.split(key)[0], SHAPE)  # the samplers' x_T (documented key use)
    ab_start = schedule.alphas_cumprod_T[-1]
    exact = start * scale / jnp.sqrt(ab_start * scale ** 2 + 1 - ab_start)

    def error(sampler, steps):
        result = sampler(model, schedule, SHAPE, key, steps, prediction="eps", clip_x0=False)
        return float(jnp.max(jnp.abs(result - exact)))

    ddim_10, ddim_20 = error(ddim_sample, 10), error(ddim_sample, 20)
    dpm_10, dpm_20 = error(dpm_solver_2m_sample, 10), error(dpm_solver_2m_sample, 20)
    assert ddim_20 < 0.6 * ddim_10  # first order: the error about halves with twice the steps
    assert dpm_10 < 0.5 * ddim_10
    assert dpm_20 < 0.1 * ddim_20
    assert dpm_20 < 0.25 * dpm_10  # at least second order


def test_guidance_scale_zero_is_unconditional_and_one_is_conditional():
    calls = []

    def model_fn(x_t, t, labels):
        calls.append(x_t.shape[0])
        return x_t + labels.astype(jnp.float32).reshape(-1, 1, 1, 1)

    x = jnp.full(SHAPE, 0.5)
    t = jnp.full((2,), 0.3)
    labels = jnp.array([1, 2])
    null = 5
    unconditional = model_fn(x, t, jnp.full((2,), null))
    conditional = model_fn(x, t, labels)
    calls.clear()
    np.testing.assert_allclose(guided(model_fn, 0.0, null)(x, t, labels), unconditional)
    np.testing.assert_allclose(guided(model_fn, 1.0, null)(x, t, labels), conditional)
    np.testing.assert_allclose(guided(model_fn, 3.0, null)(x, t, labels), 3 * conditional - 2 * unconditional)
    assert calls == [4, 4, 4]  # one network call on the doubled batch each
    np.testing.assert_allclose(guidance_combine(conditional, unconditional, 0.0), unconditional)


def test_guided_sampling_at_scale_zero_samples_the_unconditional_model():
    def model_fn(x_t, t, labels):
        return _toy_model(x_t, t, labels) + 0.2 * labels.astype(jnp.float32).reshape(-1, 1, 1, 1)

    schedule, key, labels = cosine_schedule(20), jax.random.key(7), jnp.array([0, 1])
    unconditional = dpm_solver_2m_sample(model_fn, schedule, SHAPE, key, 5, jnp.array([2, 2]))
    guided_samples = dpm_solver_2m_sample(guided(model_fn, 0.0, 2), schedule, SHAPE, key, 5, labels)
    np.testing.assert_allclose(guided_samples, unconditional, atol=1e-5)
    conditional = dpm_solver_2m_sample(model_fn, schedule, SHAPE, key, 5, labels)
    assert not np.allclose(conditional, unconditional, atol=1e-3)


@pytest.mark.parametrize("sampler", ["ddpm", pytest.param("ddim_eta", marks=pytest.mark.slow), "dpm_solver_2m"])
def test_samplers_are_deterministic_per_key_and_jit(sampler):
    schedule = cosine_schedule(20)
    run = functools.partial(SAMPLER_CALLS[sampler], _toy_model, schedule)
    first, again, other = run(jax.random.key(4)), run(jax.random.key(4)), run(jax.random.key(5))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    np.testing.assert_allclose(jax.jit(run)(jax.random.key(4)), first, atol=1e-5)


def test_sampling_timesteps_and_dispatch():
    np.testing.assert_array_equal(sampling_timesteps(10, 10), np.arange(9, -1, -1))
    np.testing.assert_array_equal(sampling_timesteps(1000, 4), [999, 749, 499, 249])
    with pytest.raises(ValueError, match="num_steps"):
        sampling_timesteps(10, 11)
    schedule = cosine_schedule(10)
    key = jax.random.key(6)
    np.testing.assert_array_equal(sample("ddim", _toy_model, schedule, SHAPE, key, 5),
                                  ddim_sample(_toy_model, schedule, SHAPE, key, 5))
    with pytest.raises(ValueError, match="sampler"):
        sample("euler", _toy_model, schedule, SHAPE, key)
