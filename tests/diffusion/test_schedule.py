"""The cosine schedule against its closed form, the forward process's marginals, and the conversions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmed.diffusion.schedule import (alpha_bar, cosine_alpha_bar, cosine_schedule, eps_from_v, eps_from_x0,
                                       model_time, q_sample, snr, velocity, x0_and_eps, x0_from_eps, x0_from_v)


def test_alphas_cumprod_follow_the_closed_form_until_the_beta_clip():
    schedule = cosine_schedule(1000)
    steps = np.arange(1000)
    closed_form = np.asarray(cosine_alpha_bar((steps + 1) / 1000))
    # Before the clip bites, the product of (1 - beta) telescopes to f(t) / f(0) exactly.
    np.testing.assert_allclose(schedule.alphas_cumprod_T[:990], closed_form[:990], rtol=1e-5, atol=1e-7)
    assert float(schedule.alphas_cumprod_T[-1]) > 0.0  # the clip keeps the last step invertible
    assert float(cosine_alpha_bar(1.0)) < 1e-6
    assert np.all(np.diff(np.asarray(schedule.alphas_cumprod_T)) < 0)
    np.testing.assert_allclose(cosine_alpha_bar(0.5), np.cos((0.5 + 0.008) / 1.008 * np.pi / 2) ** 2
                               / np.cos(0.008 / 1.008 * np.pi / 2) ** 2, rtol=1e-6)


def test_step_minus_one_is_clean_and_model_time_spans_zero_to_one():
    schedule = cosine_schedule(10)
    np.testing.assert_allclose(alpha_bar(schedule, jnp.array([-1, 0, 9])),
                               [1.0, schedule.alphas_cumprod_T[0], schedule.alphas_cumprod_T[9]])
    np.testing.assert_allclose(model_time(schedule, jnp.array([0, 4, 9])), [0.1, 0.5, 1.0])


def test_forward_process_marginals():
    """x_t = sqrt(ab) x0 + sqrt(1 - ab) eps has mean sqrt(ab) x0 and variance 1 - ab, per pixel."""
    schedule = cosine_schedule(100)
    timesteps = jnp.array([5, 50, 95])
    x0 = jnp.array([0.9, -0.4, 0.7])
    samples = 20000
    noise = jax.random.normal(jax.random.key(0), (samples, 3, 1, 1, 1))
    ab = alpha_bar(schedule, timesteps)
    x_t = jax.vmap(lambda eps: q_sample(x0.reshape(3, 1, 1, 1), ab, eps))(noise)[..., 0, 0, 0]
    standard_error = np.sqrt((1 - ab) / samples)
    np.testing.assert_array_less(np.abs(x_t.mean(0) - np.sqrt(ab) * x0), 5 * standard_error)
    np.testing.assert_allclose(x_t.var(0), 1 - ab, rtol=0.05)


def test_conversions_invert_each_other():
    keys = jax.random.split(jax.random.key(1), 2)
    x0 = jax.random.uniform(keys[0], (4, 3, 3, 2), minval=-1, maxval=1)
    eps = jax.random.normal(keys[1], (4, 3, 3, 2))
    ab = jnp.array([0.999, 0.7, 0.2, 0.01])
    x_t = q_sample(x0, ab, eps)
    v = velocity(x0, eps, ab)
    np.testing.assert_allclose(x0_from_eps(x_t, eps, ab), x0, atol=2e-5)
    np.testing.assert_allclose(eps_from_x0(x_t, x0, ab), eps, atol=2e-4)  # 1 / sqrt(1 - 0.999) magnifies rounding
    np.testing.assert_allclose(x0_from_v(x_t, v, ab), x0, atol=1e-5)
    np.testing.assert_allclose(eps_from_v(x_t, v, ab), eps, atol=1e-5)
    for prediction, output in (("eps", eps), ("v", v)):
        x0_hat, eps_hat = x0_and_eps(prediction, x_t, output, ab)
        np.testing.assert_allclose(x0_hat, x0, atol=2e-5)
        np.testing.assert_allclose(eps_hat, eps, atol=2e-5)
    np.testing.assert_allclose(snr(ab), ab / (1 - ab), rtol=1e-6)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_steps"):
        cosine_schedule(0)
    with pytest.raises(ValueError, match="prediction"):
        x0_and_eps("x0", jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.ones((1,)))
