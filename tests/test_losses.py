"""GAN losses against their formulas, computed here with numpy."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxmed.losses import discriminator_loss, gaussian_kl, generator_loss, vae_loss

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


def test_gaussian_kl_against_the_univariate_formula():
    """KL(N(m, s^2) || N(0, 1)) = log(1/s) + (s^2 + m^2)/2 - 1/2 per dimension, summed."""
    rng = np.random.default_rng(0)
    mean, log_var = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    sigma = np.exp(0.5 * log_var)
    expected = np.sum(np.log(1 / sigma) + (sigma**2 + mean**2) / 2 - 0.5, axis=-1)
    np.testing.assert_allclose(gaussian_kl(jnp.asarray(mean), jnp.asarray(log_var)), expected, rtol=1e-5)
    assert float(jnp.max(jnp.abs(gaussian_kl(jnp.zeros((2, 4)), jnp.zeros((2, 4)))))) == 0.0  # the prior itself


def test_vae_loss_terms_and_weight():
    rng = np.random.default_rng(1)
    images, reconstructions = rng.uniform(-1, 1, (2, 3, 3, 1)), rng.uniform(-1, 1, (2, 3, 3, 1))
    mean, log_var = rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    loss, (reconstruction, kl) = vae_loss(jnp.asarray(images), jnp.asarray(reconstructions), jnp.asarray(mean),
                                          jnp.asarray(log_var), kl_weight=0.25)
    # Summed over each image's pixels, averaged over images.
    np.testing.assert_allclose(reconstruction, np.sum((images - reconstructions) ** 2) / 2, rtol=1e-5)
    np.testing.assert_allclose(kl, np.mean(gaussian_kl(jnp.asarray(mean), jnp.asarray(log_var))), rtol=1e-6)
    np.testing.assert_allclose(loss, reconstruction + 0.25 * kl, rtol=1e-6)
    perfect, (zero, _) = vae_loss(jnp.asarray(images), jnp.asarray(images), jnp.zeros((2, 4)), jnp.zeros((2, 4)))
    assert float(perfect) == float(zero) == 0.0
