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

Two discriminator regularisers help when the training set is small:

- `r1_penalty`: E ||grad_x D(x)||^2 on real images (Mescheder et al. 2018). The caller
  multiplies it by gamma / 2 and adds it to D's loss. With lazy regularisation
  (StyleGAN2) it is computed every k steps only and multiplied by gamma / 2 * k then.
- `lecam`: the LeCam regulariser (Tseng et al. 2021), which pulls real logits towards
  an exponential moving average of the fake logits and vice versa; `lecam_anchors`
  updates those averages. It bounds D's output gap, which keeps D from overfitting.

The VAE's loss (`vae_loss`) is the negative evidence lower bound, per image

    -ELBO = E_q[-log p(x|z)] + KL(q(z|x) || N(0, I))

with a Gaussian decoder of fixed variance 1/2, whose negative log-likelihood is the sum
of squared pixel errors (up to a constant), estimated with one sample of z; the KL term
is exact. `kl_weight` multiplies the KL term (beta-VAE; 1 is the ELBO).
"""

from __future__ import annotations

from collections.abc import Callable

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


def r1_penalty(discriminator_fn: Callable[[jax.Array], jax.Array], real_BxHxWxC: jax.Array) -> jax.Array:
    """E ||grad_x D(x)||^2 over a batch of real images: the R1 gradient penalty, without gamma.

    The gradient of sum(D(x)) gives every image's own gradient, which holds when D
    treats the images of a batch independently (no training-mode BatchNorm inside).
    Add `gamma / 2 * r1_penalty(...)` to D's loss (times k when it runs every k
    steps: lazy regularisation). The penalty is differentiable w.r.t. whatever
    `discriminator_fn` closes over (D's parameters), for D's gradient step.

    The caller's gradient of this penalty is a second derivative of D: on the CPU,
    build that discriminator with `conv_backend="xla"`, since the oneDNN convolutions'
    gradients (`jaxmed.nn.onednn`) cannot be differentiated again.

    Args:
      discriminator_fn: images -> logits (B,), a pure function: e.g. the merged
        discriminator in evaluation mode (a training-mode NNX module that updates
        state inside this gradient, such as SpectralNorm's u, raises flax's
        TraceContextError), composed with the same augmentation, same key, as D's
        logits on these images when D only ever sees augmented images (ADA's R1).
      real_BxHxWxC: real images; the gradient is taken w.r.t. them.

    Returns:
      Float32 scalar: the batch mean of the squared gradient norms.
    """
    def summed_logits(images):
        return jnp.sum(discriminator_fn(images).astype(jnp.float32))

    gradients = jax.grad(summed_logits)(real_BxHxWxC).astype(jnp.float32)
    return jnp.mean(jnp.sum(jnp.square(gradients.reshape(gradients.shape[0], -1)), axis=-1))


def lecam(real_logits_B: jax.Array, fake_logits_B: jax.Array, ema_real: jax.Array, ema_fake: jax.Array, *,
          one_sided: bool = False) -> jax.Array:
    """The LeCam regulariser E[(D(x) - ema_fake)^2] + E[(D(G(z)) - ema_real)^2] (Tseng et al. 2021, eq. 3).

    Args:
      real_logits_B, fake_logits_B: D's logits on real and generated images.
      ema_real, ema_fake: the anchors, moving averages of the mean real and fake logits
        (`lecam_anchors`), treated as constants.
      one_sided: penalise only real logits above `ema_fake` and fake logits below
        `ema_real` (relu before the square), as the authors' released code does.

    Returns:
      Float32 scalar to add to D's loss times a weight (the paper uses 0.1-0.5 with
      little data); zero when real logits equal `ema_fake` and fake logits `ema_real`.
    """
    real_gap = real_logits_B.astype(jnp.float32) - jax.lax.stop_gradient(ema_fake)
    fake_gap = jax.lax.stop_gradient(ema_real) - fake_logits_B.astype(jnp.float32)
    if one_sided:
        real_gap, fake_gap = jax.nn.relu(real_gap), jax.nn.relu(fake_gap)
    return jnp.mean(jnp.square(real_gap)) + jnp.mean(jnp.square(fake_gap))


def lecam_anchors(ema_real: jax.Array, ema_fake: jax.Array, real_logits_B: jax.Array, fake_logits_B: jax.Array,
                  decay: float = 0.99) -> tuple[jax.Array, jax.Array]:
    """The anchors after one step: ema <- decay * ema + (1 - decay) * batch mean logit.

    Args:
      ema_real, ema_fake: the current anchors (float32 scalars; start them at 0).
      real_logits_B, fake_logits_B: this step's logits (their gradients are stopped).
      decay: the moving average's decay (0.99 in the paper's code).

    Returns:
      (new ema_real, new ema_fake).
    """
    real_mean = jax.lax.stop_gradient(jnp.mean(real_logits_B.astype(jnp.float32)))
    fake_mean = jax.lax.stop_gradient(jnp.mean(fake_logits_B.astype(jnp.float32)))
    return decay * ema_real + (1 - decay) * real_mean, decay * ema_fake + (1 - decay) * fake_mean
