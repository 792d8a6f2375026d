"""GAN losses against their formulas, computed here with numpy."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxmed.losses import discriminator_loss, generator_loss

REAL = np.array([2.0, -1.0, 0.5], np.float32)
FAKE = np.array([-3.0, 0.0, 1.5], np.float32)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("kind", ["minimax", "non_saturating"])
def test_discriminator_loss_is_negative_value_function(kind):
    value = np.mean(np.log(sigmoid(REAL))) + np.mean(np.log(1 - sigmoid(FAKE)))  # V(D, G), equation (1)
    np.testing.assert_allclose(discriminator_loss(jnp.array(REAL), jnp.array(FAKE), kind), -value, rtol=1e-5)


def test_generator_losses():
    np.testing.assert_allclose(generator_loss(jnp.array(FAKE), "minimax"), np.mean(np.log(1 - sigmoid(FAKE))),
                               rtol=1e-5)
    np.testing.assert_allclose(generator_loss(jnp.array(FAKE), "non_saturating"), -np.mean(np.log(sigmoid(FAKE))),
                               rtol=1e-5)
    np.testing.assert_allclose(generator_loss(jnp.array(FAKE), "hinge"), -np.mean(FAKE), rtol=1e-6)


def test_hinge_discriminator_loss():
    expected = np.mean(np.maximum(0, 1 - REAL)) + np.mean(np.maximum(0, 1 + FAKE))
    np.testing.assert_allclose(discriminator_loss(jnp.array(REAL), jnp.array(FAKE), "hinge"), expected, rtol=1e-6)


def test_losses_are_finite_for_extreme_logits():
    extreme = jnp.array([-100.0, 100.0])
    for kind in ("minimax", "non_saturating", "hinge"):
        assert np.isfinite(discriminator_loss(extreme, extreme, kind))
        assert np.isfinite(generator_loss(extreme, kind))


def test_unknown_loss_is_rejected():
    with pytest.raises(ValueError, match="unknown GAN loss"):
        generator_loss(jnp.zeros(2), "wasserstein")
