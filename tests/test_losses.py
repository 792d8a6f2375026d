"""GAN losses and regularisers against their formulas, computed here with numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmed.losses import discriminator_loss, gaussian_kl, generator_loss, lecam, lecam_anchors, r1_penalty, vae_loss

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


def tiny_discriminator(weight, images):
    """A per-image nonlinear scalar: sum(tanh(w * x)) + (sum(x))^2 / 10."""
    flat = images.reshape(images.shape[0], -1)
    return jnp.sum(jnp.tanh(weight[None, :] * flat), axis=-1) + jnp.sum(flat, axis=-1) ** 2 / 10


def test_r1_penalty_matches_finite_difference_gradient_norms():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (3, 2, 2, 1))
    weight = rng.normal(size=4)
    penalty = r1_penalty(lambda x: tiny_discriminator(jnp.asarray(weight, jnp.float32), x),
                         jnp.asarray(images, jnp.float32))

    def d_numpy(image):
        flat = image.reshape(-1)
        return np.sum(np.tanh(weight * flat)) + np.sum(flat) ** 2 / 10

    norms = []
    for image in images:
        gradient = np.zeros(image.size)
        for i in range(image.size):
            step = np.zeros(image.size)
            step[i] = 1e-5
            gradient[i] = (d_numpy(image.reshape(-1) + step) - d_numpy(image.reshape(-1) - step)) / 2e-5
        norms.append(np.sum(gradient ** 2))
    np.testing.assert_allclose(penalty, np.mean(norms), rtol=1e-4)


def test_r1_penalty_is_differentiable_in_the_discriminator_parameters():
    images = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 2, 2, 1)), jnp.float32)

    def penalty(weight):
        return r1_penalty(lambda x: tiny_discriminator(weight, x), images)

    weight = jnp.asarray([0.5, -1.0, 2.0, 0.1], jnp.float32)
    gradient = jax.grad(penalty)(weight)
    step = jnp.asarray([0.0, 1e-2, 0.0, 0.0], jnp.float32)
    numeric = (penalty(weight + step) - penalty(weight - step)) / 2e-2
    np.testing.assert_allclose(gradient[1], numeric, rtol=1e-2)


def test_lecam_is_zero_at_the_anchors_and_positive_elsewhere():
    ema_real, ema_fake = jnp.float32(1.5), jnp.float32(-0.5)
    real_at_anchor, fake_at_anchor = jnp.full(4, -0.5), jnp.full(4, 1.5)
    assert float(lecam(real_at_anchor, fake_at_anchor, ema_real, ema_fake)) == 0.0
    real, fake = jnp.array([2.0, -1.0]), jnp.array([0.0, 3.0])
    expected = np.mean((np.array([2.0, -1.0]) + 0.5) ** 2) + np.mean((1.5 - np.array([0.0, 3.0])) ** 2)
    np.testing.assert_allclose(lecam(real, fake, ema_real, ema_fake), expected, rtol=1e-6)
    # The released code's one-sided form ignores real logits below the fake anchor and fake above the real one.
    one_sided = np.mean(np.array([2.5, 0.0]) ** 2) + np.mean(np.array([1.5, 0.0]) ** 2)
    np.testing.assert_allclose(lecam(real, fake, ema_real, ema_fake, one_sided=True), one_sided, rtol=1e-6)


def test_lecam_anchors_are_exponential_moving_averages_without_gradient():
    real, fake = jnp.array([1.0, 3.0]), jnp.array([-2.0, 0.0])
    ema_real, ema_fake = lecam_anchors(jnp.float32(0.5), jnp.float32(-0.5), real, fake, decay=0.9)
    np.testing.assert_allclose([ema_real, ema_fake], [0.9 * 0.5 + 0.1 * 2.0, 0.9 * -0.5 + 0.1 * -1.0], rtol=1e-6)
    gradient = jax.grad(lambda r: lecam_anchors(jnp.float32(0), jnp.float32(0), r, fake)[0])(real)
    np.testing.assert_array_equal(gradient, 0.0)
