"""A convolutional variational autoencoder (Kingma & Welling 2014) in the DCGAN's shapes.

    Encoder   the discriminator's convolutions (`dcgan.DownsamplingStack`)
              -> flatten 8*8*256 -> Dense 2*latent_dim -> (mean, log-variance) of q(z|x)
    Decoder   the DCGAN generator (`dcgan.Generator`): z -> images in [-1, 1]

Sharing the DCGAN's layers is deliberate: the decoder's up-sampling layers are the same
`jaxmed.nn.UpsampleConv` (fast on every backend), the two families are compared on
equal networks, and the benchmark's layer shapes cover both. The encoder's BatchNorm
layers and the decoder's work as in the GAN: batch statistics in training, running
statistics after `model.eval()`.

Sampling draws z from the prior N(0, I) and decodes it; `reconstruct` decodes the
posterior mean. The loss (the negative ELBO) is `jaxmed.losses.vae_loss`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmed.models.dcgan import WEIGHT_INIT, DownsamplingStack, Generator
from jaxmed.nn import ConvBackend


class Encoder(DownsamplingStack):
    """Maps images in [-1, 1] to the mean and log-variance of a diagonal Gaussian over z.

    Args: as `VAE`.
    """

    def __init__(self, image_size: int = 128, channels: int = 1, latent_dim: int = 128, *, base_features: int = 256,
                 dtype=None, conv_backend: ConvBackend = "auto", rngs: nnx.Rngs):
        super().__init__(image_size, channels, base_features=base_features, dtype=dtype, conv_backend=conv_backend,
                         rngs=rngs)
        self.latent_dim = latent_dim
        self.to_moments = nnx.Linear(self.flat_features, 2 * latent_dim, kernel_init=WEIGHT_INIT,
                                     dtype=self.dense_dtype, rngs=rngs)

    def __call__(self, x_BxHxWxC: jax.Array) -> tuple[jax.Array, jax.Array]:
        moments = self.to_moments(self.features(x_BxHxWxC)).astype(jnp.float32)
        mean_BxZ, log_var_BxZ = jnp.split(moments, 2, axis=-1)
        return mean_BxZ, log_var_BxZ


class VAE(nnx.Module):
    """Encoder, reparameterised sample, decoder.

    Args:
      image_size: image height and width (32, 64, 128 or 256).
      channels: image channels (1 grayscale, 3 RGB).
      latent_dim: length of z.
      base_features: channels at the 8x8 bottleneck (256, as in `dcgan128`).
      dtype: computation dtype (None: float32); parameters stay float32.
      conv_backend: "auto", "xla" or "onednn" (see `jaxmed.nn.conv_backend`).
      rngs: parameter initialisation keys.
    """

    def __init__(self, image_size: int = 128, channels: int = 1, latent_dim: int = 128, *, base_features: int = 256,
                 dtype=None, conv_backend: ConvBackend = "auto", rngs: nnx.Rngs):
        self.latent_dim = latent_dim
        self.encoder = Encoder(image_size, channels, latent_dim, base_features=base_features, dtype=dtype,
                               conv_backend=conv_backend, rngs=rngs)
        self.decoder = Generator(image_size, channels, latent_dim, base_features=base_features, dtype=dtype,
                                 conv_backend=conv_backend, rngs=rngs)

    def __call__(self, x_BxHxWxC: jax.Array, noise_BxZ: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(reconstructions, mean, log-variance) of images, z = mean + sigma * noise.

        Args:
          x_BxHxWxC: images in [-1, 1].
          noise_BxZ: standard normal noise, one row per image (the caller owns the randomness,
            so a step is a pure function of its inputs).
        """
        mean_BxZ, log_var_BxZ = self.encoder(x_BxHxWxC)
        z_BxZ = mean_BxZ + jnp.exp(0.5 * log_var_BxZ) * noise_BxZ
        return self.decoder(z_BxZ), mean_BxZ, log_var_BxZ

    def reconstruct(self, x_BxHxWxC: jax.Array) -> jax.Array:
        """The decoded posterior mean of each image (deterministic)."""
        mean_BxZ, _ = self.encoder(x_BxHxWxC)
        return self.decoder(mean_BxZ)
