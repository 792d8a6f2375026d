"""GAN losses on discriminator logits.

The seed paper's equation (1) is the minimax game

    min_G max_D  V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))],   D(x) = sigmoid(logit).

The discriminator minimises -V, i.e. binary cross-entropy with real = 1, fake = 0, in
every form below except hinge. The generator has three choices:

- "minimax":         minimise E[log(1 - D(G(z)))] exactly as in equation (1). Its
                     gradient vanishes when D confidently rejects fakes (early training).
- "non_saturating":  minimise -E[log D(G(z))] (Goodfellow et al. 2014, section 3): same
                     fixed point, strong gradients early. The default.
- "hinge":           D minimises E[relu(1 - D_real)] + E[relu(1 + D_fake)], G minimises
                     -E[D_fake] on raw logits (Lim & Ye 2017; StudioGAN's default for BigGAN).

All GAN functions take float32 logits of shape (B,) and return scalar means.

The VAE's loss (`vae_loss`) is the negative evidence lower bound, per image

    -ELBO = E_q[-log p(x|z)] + KL(q(z|x) || N(0, I))

with a Gaussian decoder of fixed variance 1/2, whose negative log-likelihood is the sum
of squared pixel errors (up to a constant), estimated with one sample of z; the KL term
is exact. `kl_weight` multiplies the KL term (beta-VAE; 1 is the ELBO).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

GAN_LOSSES = ("minimax", "non_saturating", "hinge")


def _check_kind(kind: str) -> None:
    if kind not in GAN_LOSSES:
        raise ValueError(f"unknown GAN loss {kind!r}; choose one of {', '.join(GAN_LOSSES)}")


def discriminator_loss(real_logits_B: jax.Array, fake_logits_B: jax.Array, kind: str = "non_saturating") -> jax.Array:
    """The discriminator's loss: -V(D, G) of equation (1), or the hinge loss.

    Args:
      real_logits_B: discriminator logits on real images.
      fake_logits_B: discriminator logits on generated images.
      kind: one of `GAN_LOSSES`.

    Returns:
      Scalar loss to minimise.
    """
    _check_kind(kind)
    if kind == "hinge":
        return jnp.mean(jax.nn.relu(1.0 - real_logits_B)) + jnp.mean(jax.nn.relu(1.0 + fake_logits_B))
    real = optax.sigmoid_binary_cross_entropy(real_logits_B, jnp.ones_like(real_logits_B))
    fake = optax.sigmoid_binary_cross_entropy(fake_logits_B, jnp.zeros_like(fake_logits_B))
    return jnp.mean(real) + jnp.mean(fake)


def generator_loss(fake_logits_B: jax.Array, kind: str = "non_saturating") -> jax.Array:
    """The generator's loss on the discriminator's logits for generated images.

    Args:
      fake_logits_B: discriminator logits on generated images.
      kind: one of `GAN_LOSSES`.

    Returns:
      Scalar loss to minimise.
    """
    _check_kind(kind)
    if kind == "hinge":
        return -jnp.mean(fake_logits_B)
    if kind == "minimax":
        # log(1 - sigmoid(l)) = -softplus(l), computed stably.
        return -jnp.mean(jax.nn.softplus(fake_logits_B))
    return jnp.mean(optax.sigmoid_binary_cross_entropy(fake_logits_B, jnp.ones_like(fake_logits_B)))


def gaussian_kl(mean_BxZ: jax.Array, log_var_BxZ: jax.Array) -> jax.Array:
    """KL(N(mean, exp(log_var)) || N(0, I)) per row, summed over the latent dimensions: shape (B,)."""
    return 0.5 * jnp.sum(jnp.square(mean_BxZ) + jnp.exp(log_var_BxZ) - 1.0 - log_var_BxZ, axis=-1)


def vae_loss(images: jax.Array, reconstructions: jax.Array, mean_BxZ: jax.Array, log_var_BxZ: jax.Array,
             kl_weight: float | jax.Array = 1.0) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """The negative ELBO (see the module docstring), averaged over the batch.

    Args:
      images, reconstructions: (B, H, W, C) in [-1, 1].
      mean_BxZ, log_var_BxZ: the encoder's posterior moments.
      kl_weight: weight of the KL term (1: the ELBO; a schedule may pass a traced value).

    Returns:
      (loss, (reconstruction, kl)): float32 scalars; loss = reconstruction + kl_weight * kl.
    """
    errors = jnp.square(images.astype(jnp.float32) - reconstructions.astype(jnp.float32))
    reconstruction = jnp.mean(jnp.sum(errors.reshape(errors.shape[0], -1), axis=-1))
    kl = jnp.mean(gaussian_kl(mean_BxZ, log_var_BxZ))
    return reconstruction + kl_weight * kl, (reconstruction, kl)
