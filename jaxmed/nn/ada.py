"""The adaptive augmentation probability of ADA (Karras et al. 2020, section 3).

An overfitting discriminator grows confident on the training images: the mean sign
of its logits on (augmented) real images, r_t = E[sign(D(x_real))], rises towards 1.
ADA steers the augmentation probability p of `jaxmed.nn.diffaugment.augment` so
that r_t stays at a target (0.6): every few steps p moves up by a fixed amount when
r_t is above the target and down when below, the amount chosen so that p could
cross [0, 1] after `images_to_full` images (500k in ADA) and clipped to [0, 1].

Both functions are pure and jit-friendly: the step (or the loop) keeps p and a running
sum of signs in its state, calls `update_probability` every N steps with the sign
mean over those steps, and feeds p to `augment`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

TARGET = 0.6
IMAGES_TO_FULL = 500_000


def real_sign_mean(real_logits_B: jax.Array) -> jax.Array:
    """r_t = E[sign(D(x_real))] over a batch of logits on augmented real images (float32 scalar)."""
    return jnp.mean(jnp.sign(real_logits_B.astype(jnp.float32)))


def update_probability(p: float | jax.Array, sign_mean: float | jax.Array, images_seen: int | jax.Array, *,
                       target: float = TARGET, images_to_full: float = IMAGES_TO_FULL) -> jax.Array:
    """The augmentation probability after `images_seen` real images with mean logit sign `sign_mean`.

    Args:
      p: the current probability.
      sign_mean: r_t, from `real_sign_mean` (averaged over the images since the last update).
      images_seen: real images the discriminator saw since the last update
        (batch size x update interval); the step of p is proportional to it.
      target: the r_t that p steers towards (0.6 in ADA).
      images_to_full: images over which p may move from 0 to 1 (the adjustment speed).

    Returns:
      The new p, a float32 scalar in [0, 1]: higher when r_t > target (D overfits),
      lower when r_t < target, unchanged at the target.
    """
    step = jnp.sign(jnp.asarray(sign_mean, jnp.float32) - target) * images_seen / images_to_full
    return jnp.clip(jnp.asarray(p, jnp.float32) + step, 0.0, 1.0)
