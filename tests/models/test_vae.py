"""VAE shapes, the layers it shares with the DCGAN, and the reparameterisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmed.models.dcgan import Discriminator, Generator
from jaxmed.models.vae import VAE


def parameter_shapes(module):
    return jax.tree.map(lambda leaf: leaf.shape, nnx.state(module, nnx.Param))


@pytest.mark.parametrize("size, channels", [(32, 1), pytest.param(64, 3, marks=pytest.mark.slow)])
def test_shapes(size, channels):
    vae = VAE(size, channels, latent_dim=12, rngs=nnx.Rngs(0))
    images = jax.random.uniform(jax.random.key(0), (3, size, size, channels), minval=-1, maxval=1)
    reconstructions, mean, log_var = vae(images, jax.random.normal(jax.random.key(1), (3, 12)))
    assert reconstructions.shape == images.shape and mean.shape == log_var.shape == (3, 12)
    assert mean.dtype == log_var.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(reconstructions))) <= 1.0
    assert vae.reconstruct(images).shape == images.shape


@pytest.mark.slow
def test_decoder_is_the_dcgan_generator_and_encoder_the_discriminator_stack():
    vae = VAE(128, 1, latent_dim=100, rngs=nnx.Rngs(0))
    assert parameter_shapes(vae.decoder) == parameter_shapes(Generator(128, 1, 100, rngs=nnx.Rngs(0)))
    discriminator = Discriminator(128, 1, rngs=nnx.Rngs(0))
    assert [conv.kernel.shape for conv in vae.encoder.down_blocks] == [
        conv.kernel.shape for conv in discriminator.down_blocks]
    assert vae.encoder.to_moments.kernel.shape == (8 * 8 * 256, 2 * 100)


def test_z_is_mean_plus_sigma_times_noise():
    """Zero noise decodes the mean; the noise enters scaled by exp(log_var / 2), per row and dimension."""
    vae = VAE(32, 1, latent_dim=6, rngs=nnx.Rngs(0))
    vae.eval()  # running statistics: the decoder's output for a row does not depend on the others
    images = jax.random.uniform(jax.random.key(2), (4, 32, 32, 1), minval=-1, maxval=1)
    mean, log_var = vae.encoder(images)
    reconstructions, _, _ = vae(images, jnp.zeros((4, 6)))
    np.testing.assert_allclose(reconstructions, vae.decoder(mean), atol=1e-6)
    np.testing.assert_allclose(reconstructions, vae.reconstruct(images), atol=1e-6)
    noise = jax.random.normal(jax.random.key(3), (4, 6))
    noisy, _, _ = vae(images, noise)
    np.testing.assert_allclose(noisy, vae.decoder(mean + jnp.exp(0.5 * log_var) * noise), atol=1e-6)
    assert not np.allclose(noisy, reconstructions, atol=1e-4)


def test_gradients_reach_the_encoder_through_the_sample():
    vae = VAE(32, 1, latent_dim=6, rngs=nnx.Rngs(0))
    images = jax.random.uniform(jax.random.key(4), (4, 32, 32, 1), minval=-1, maxval=1)
    noise = jax.random.normal(jax.random.key(5), (4, 6))

    def reconstruction_error(model):
        reconstructions, _, _ = model(images, noise)
        return jnp.sum(jnp.square(reconstructions - images))

    grads = nnx.grad(reconstruction_error)(vae)
    # Without the KL term, only the reparameterised sample connects the error to the encoder.
    assert float(jnp.max(jnp.abs(grads.encoder.to_moments.kernel[...]))) > 0
    assert float(jnp.max(jnp.abs(grads.encoder.down_blocks[0].kernel[...]))) > 0


@pytest.mark.slow
def test_backends_agree():
    images = jax.random.uniform(jax.random.key(6), (2, 32, 32, 1), minval=-1, maxval=1)
    noise = jax.random.normal(jax.random.key(7), (2, 8))
    outputs = [VAE(32, 1, 8, conv_backend=backend, rngs=nnx.Rngs(0))(images, noise) for backend in ("xla", "onednn")]
    for xla, onednn in zip(*outputs):
        np.testing.assert_allclose(onednn, xla, rtol=1e-4, atol=1e-4)
