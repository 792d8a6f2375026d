"""The GAN family's two losses on one microbatch, with the small-data options: augmentation, R1, LeCam.

With a few hundred training images the discriminator memorises them and the
generator's signal collapses. The options here are the published remedies, composed
the way `jaxmed.families.gan.gan_train_step` calls them:

- augmentation (`jaxmed.nn.diffaugment`): real and generated images are augmented
  before every discriminator call, in D's loss and in G's, with probability p per
  operation: 1 for DiffAugment, the state's ADA p (`jaxmed.nn.ada`) for "ada";
- R1 (`jaxmed.losses.r1_penalty`) on the un-augmented real images through the same
  augmentation as their logits, lazily: every `r1_every` steps, scaled by `r1_every`;
  D is frozen (evaluation mode) for that pass, and must be built with XLA convolutions
  because R1 differentiates D twice;
- LeCam (`jaxmed.losses.lecam`) towards moving anchors of D's mean logits kept in the state.

With none of them on, the losses are the plain ones of the seed paper's DCGAN.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmed.losses import discriminator_loss, generator_loss, lecam, r1_penalty
from jaxmed.nn.diffaugment import augment

AUGMENTS = ("none", "diffaugment", "ada")


@dataclasses.dataclass(frozen=True)
class Regularisation:
    """The small-data options of a GAN run (static: part of its definition).

    Attributes:
      augment: one of `AUGMENTS`.
      ada_target: ADA's target for the mean sign of D's logits on augmented reals.
      ada_images_to_full: real images over which ADA's p may go from 0 to 1.
      r1_gamma: R1 weight (0: off).
      r1_every: R1 runs on steps divisible by this, scaled by it.
      lecam_weight: LeCam weight (0: off).
    """

    augment: str = "none"
    ada_target: float = 0.6
    ada_images_to_full: int = 500_000
    r1_gamma: float = 0.0
    r1_every: int = 16
    lecam_weight: float = 0.0

    @property
    def augments(self) -> bool:
        return self.augment != "none"


def augment_probability(settings: Regularisation, ada_p: jax.Array | None) -> jax.Array | float:
    """The per-operation augmentation probability of this step: ADA's p, or 1 for DiffAugment."""
    return ada_p if settings.augment == "ada" else 1.0


def microbatch_losses(settings: Regularisation, loss: str, generator: nnx.Module, discriminator: nnx.Module,
                      frozen_discriminator: nnx.Module | None, real: jax.Array, z: jax.Array,
                      labels: jax.Array | None, key: jax.Array | None, p: jax.Array | float,
                      anchors: tuple[jax.Array, jax.Array] | None, r1_due: jax.Array | None,
                      strength: jax.Array | float = 1.0
                      ) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array, dict[str, jax.Array]]]:
    """(D's loss, G's loss) on one microbatch, and (real logits, fake logits, regulariser metrics).

    Args:
      settings: the run's options.
      loss: the adversarial loss (`jaxmed.losses.GAN_LOSSES`).
      generator, discriminator: the merged networks in training mode.
      frozen_discriminator: D in evaluation mode for R1 (None when R1 is off).
      real: real images in [-1, 1]; z: noise; labels: class indices (None: unconditional).
      key: this microbatch's augmentation key (None without augmentation).
      p: the augmentation probability (`augment_probability`).
      anchors: LeCam's (ema_real, ema_fake) (None when LeCam is off).
      r1_due: whether R1 runs on this step (a traced bool; None when R1 is off).
      strength: the weight of the class in both networks (`conditioning_strength`).
    """
    conditioning = () if labels is None else (labels, strength)

    def seen(images, image_key):
        return augment(images, image_key, p) if settings.augments else images

    real_key, fake_key = jax.random.split(key) if settings.augments else (None, None)
    fake = generator(z, *conditioning)
    real_logits = discriminator(seen(real, real_key), *conditioning)
    fake_logits = discriminator(seen(fake, fake_key), *conditioning)
    d_loss = discriminator_loss(real_logits, fake_logits, loss)
    metrics = {}
    if settings.lecam_weight > 0:
        metrics["lecam"] = lecam(real_logits, fake_logits, *anchors)
        d_loss = d_loss + settings.lecam_weight * metrics["lecam"]
    if settings.r1_gamma > 0:
        def penalty():
            return r1_penalty(lambda images: frozen_discriminator(seen(images, real_key), *conditioning), real)

        metrics["r1"] = jax.lax.cond(r1_due, penalty, lambda: jnp.zeros((), jnp.float32))
        d_loss = d_loss + settings.r1_gamma / 2 * settings.r1_every * metrics["r1"]
    return (d_loss, generator_loss(fake_logits, loss)), (real_logits, fake_logits, metrics)
