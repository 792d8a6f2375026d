"""The diffusion loss: zero for a perfect model, the min-SNR weights, label dropout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmed.diffusion.objective import diffusion_loss, drop_labels, loss_weight
from jaxmed.diffusion.schedule import (alpha_bar, cosine_schedule, eps_from_x0, model_time, snr, velocity,
                                       x0_from_v)

SCHEDULE = cosine_schedule(50)


def _oracle(x0, prediction):
    """A model that knows the clean batch: it recovers the true eps (or v) from x_t and t."""
    def model_fn(x_t, t, labels):
        timesteps = jnp.round(t * SCHEDULE.num_steps).astype(jnp.int32) - 1
        ab = alpha_bar(SCHEDULE, timesteps)
        eps = eps_from_x0(x_t, x0, ab)
        return eps if prediction == "eps" else velocity(x0, eps, ab)
    return model_fn


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_loss_is_zero_for_the_true_target_and_positive_otherwise(prediction):
    x0 = jax.random.uniform(jax.random.key(0), (6, 4, 4, 1), minval=-1, maxval=1)
    loss, metrics = diffusion_loss(_oracle(x0, prediction), SCHEDULE, x0, jax.random.key(1), prediction=prediction)
    assert float(loss) < 1e-8 and float(metrics["mse"]) < 1e-8
    other = "v" if prediction == "eps" else "eps"  # the right model, asked for the other target
    wrong, _ = diffusion_loss(_oracle(x0, other), SCHEDULE, x0, jax.random.key(1), prediction=prediction)
    assert float(wrong) > 1e-3


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_weighted_loss_matches_the_formula(prediction):
    """A model returning zeros: loss = mean_b w_b * mean(target_b^2), recomputed from the same draws."""
    x0 = jax.random.uniform(jax.random.key(2), (8, 2, 2, 1), minval=-1, maxval=1)
    key = jax.random.key(3)
    seen = {}

    def zeros(x_t, t, labels):
        seen["t"] = t
        return jnp.zeros_like(x_t)

    loss, _ = diffusion_loss(zeros, SCHEDULE, x0, key, prediction=prediction, min_snr_gamma=5.0)
    step_key, noise_key, _ = jax.random.split(key, 3)
    timesteps = jax.random.randint(step_key, (8,), 0, SCHEDULE.num_steps)
    np.testing.assert_allclose(seen["t"], model_time(SCHEDULE, timesteps))
    eps = jax.random.normal(noise_key, x0.shape)
    ab = alpha_bar(SCHEDULE, timesteps)
    target = eps if prediction == "eps" else velocity(x0, eps, ab)
    ratio = snr(ab)
    weight = np.minimum(ratio, 5.0) / (ratio if prediction == "eps" else ratio + 1.0)
    expected = np.mean(weight * np.mean(np.square(target), axis=(1, 2, 3)))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_min_snr_weights_equal_the_clamped_snr_on_the_x0_error():
    """Hang et al.: for any target, weight * target error^2 = min(SNR, gamma) * x0 error^2."""
    ab = jnp.array([0.999, 0.9, 0.5, 0.1, 0.001])
    x_t = jnp.ones((5, 1, 1, 1))
    v_error = jnp.full((5, 1, 1, 1), 0.3)
    x0_error = x0_from_v(x_t, v_error, ab)[:, 0, 0, 0] - x0_from_v(x_t, jnp.zeros_like(v_error), ab)[:, 0, 0, 0]
    weight = loss_weight("v", snr(ab), 5.0)
    np.testing.assert_allclose(weight * 0.3 ** 2, np.minimum(snr(ab), 5.0) * x0_error ** 2, rtol=1e-4)
    np.testing.assert_allclose(loss_weight("eps", snr(ab), None), np.ones(5))
    assert float(loss_weight("eps", snr(ab), 5.0)[-1]) == pytest.approx(1.0)  # low SNR: unclamped


def test_label_dropout_rate_and_null_label():
    labels = jnp.arange(20000) % 3
    dropped = drop_labels(labels, jax.random.key(4), 0.2, null_label=3)
    is_null = np.asarray(dropped == 3)
    assert abs(is_null.mean() - 0.2) < 0.015  # about 5 standard errors
    np.testing.assert_array_equal(np.asarray(dropped)[~is_null], np.asarray(labels)[~is_null])
    np.testing.assert_array_equal(drop_labels(labels[:5], jax.random.key(4), 0.0, 3), labels[:5])


def test_loss_passes_dropped_labels_to_the_model():
    seen = {}

    def model_fn(x_t, t, labels):
        seen["labels"] = labels
        return jnp.zeros_like(x_t)

    x0 = jnp.zeros((400, 2, 2, 1))
    diffusion_loss(model_fn, SCHEDULE, x0, jax.random.key(5), jnp.zeros((400,), jnp.int32), label_dropout=0.5,
                   null_label=7)
    share = float(jnp.mean(seen["labels"] == 7))
    assert 0.4 < share < 0.6 and set(np.unique(seen["labels"]).tolist()) == {0, 7}
    with pytest.raises(ValueError, match="null_label"):
        diffusion_loss(model_fn, SCHEDULE, x0, jax.random.key(5), jnp.zeros((400,), jnp.int32), label_dropout=0.5)
