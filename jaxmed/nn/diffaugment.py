"""Differentiable augmentation for GANs trained on a few hundred images (DiffAugment, ADA-style p).

With little data the discriminator memorises the training set and the generator's
signal collapses. DiffAugment (Zhao et al. 2020) augments *both* real and generated
images before every discriminator call, in the D loss and in the G loss, with
transforms differentiable w.r.t. the images so G's gradient passes through them;
ADA (Karras et al. 2020) applies each transform to each sample with a probability
`p` that a controller (`jaxmed.nn.ada`) tunes, so augmentations cannot leak into
the generated distribution while p stays below about 0.8.

The transforms follow the reference DiffAugment code on NHWC images in [-1, 1]:

- "color": brightness (add U(-0.5, 0.5)), saturation (scale the deviation from the
  channel mean by U(0, 2); RGB only, skipped for C != 3) and contrast (scale the
  deviation from the image mean by U(0.5, 1.5)).
- "translation": an integer shift of up to 1/8 of each side, uncovered pixels `fill`.
- "cutout": one square of half the side set to `fill`, centred anywhere in the image.

`fill` is 0 as in DiffAugment; -1 (air in this project's convention) is the other
natural choice. Every random draw comes from `key` alone, split per operation in a
fixed order, so the same key applies the same transform to any batch of the same
shape (e.g. to two views that must stay aligned). Each elementary operation is
applied to each sample independently with probability `p` (a traced value is fine:
skipped samples are selected with `jnp.where`, never a Python branch).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxmed.errors import UsageError

POLICIES = ("color", "translation", "cutout")
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _per_sample(values_B: jax.Array) -> jax.Array:
    """(B,) -> (B, 1, 1, 1), explicit for strict rank promotion."""
    return values_B.reshape(-1, 1, 1, 1)


def _choose(key: jax.Array, p, augmented: jax.Array, images: jax.Array) -> jax.Array:
    """Each sample is `augmented` with probability p, else `images` unchanged."""
    apply_B = jax.random.uniform(key, (images.shape[0],)) < p
    return jnp.where(_per_sample(apply_B), augmented, images)


def _uniform(key: jax.Array, images: jax.Array, low: float, high: float) -> jax.Array:
    return _per_sample(jax.random.uniform(key, (images.shape[0],), images.dtype, low, high))


def _brightness(key, images):
    return images + _uniform(key, images, -0.5, 0.5)


def _saturation(key, images):
    mean = jnp.mean(images, axis=3, keepdims=True)
    return (images - mean) * _uniform(key, images, 0.0, 2.0) + mean


def _contrast(key, images):
    mean = jnp.mean(images, axis=(1, 2, 3), keepdims=True)
    return (images - mean) * _uniform(key, images, 0.5, 1.5) + mean


def _shift_axis(images: jax.Array, shift_B: jax.Array, axis: int, fill: float) -> jax.Array:
    """out[b, i] = images[b, i + shift_B[b]] along `axis` (1 or 2), `fill` where that is outside."""
    size = images.shape[axis]
    shape = [1, 1, 1, 1]
    shape[axis] = size
    source = jnp.arange(size).reshape(shape) + _per_sample(shift_B)  # (B, H, 1, 1) or (B, 1, W, 1)
    inside = (source >= 0) & (source < size)
    gathered = jnp.take_along_axis(images, jnp.clip(source, 0, size - 1), axis=axis, mode="clip")
    return jnp.where(inside, gathered, jnp.asarray(fill, images.dtype))


def _translation(key, images, fill):
    batch, height, width, _ = images.shape
    key_y, key_x = jax.random.split(key)
    max_y, max_x = int(height * TRANSLATION_RATIO + 0.5), int(width * TRANSLATION_RATIO + 0.5)
    shifted = _shift_axis(images, jax.random.randint(key_y, (batch,), -max_y, max_y + 1), 1, fill)
    return _shift_axis(shifted, jax.random.randint(key_x, (batch,), -max_x, max_x + 1), 2, fill)


def _cutout(key, images, fill):
    batch, height, width, _ = images.shape
    key_y, key_x = jax.random.split(key)
    size_y, size_x = int(height * CUTOUT_RATIO + 0.5), int(width * CUTOUT_RATIO + 0.5)
    # The reference draws the centre in [0, side + (1 - size % 2)) and starts size // 2 before it.
    start_y = jax.random.randint(key_y, (batch,), 0, height + (1 - size_y % 2)) - size_y // 2
    start_x = jax.random.randint(key_x, (batch,), 0, width + (1 - size_x % 2)) - size_x // 2
    rows = jnp.arange(height).reshape(1, height, 1, 1) - _per_sample(start_y)
    columns = jnp.arange(width).reshape(1, 1, width, 1) - _per_sample(start_x)
    inside = (rows >= 0) & (rows < size_y) & (columns >= 0) & (columns < size_x)
    return jnp.where(inside, jnp.asarray(fill, images.dtype), images)


def augment(images_BxHxWxC: jax.Array, key: jax.Array, p: float | jax.Array = 1.0,
            policy: Sequence[str] = POLICIES, *, fill: float = 0.0) -> jax.Array:
    """DiffAugment of a batch, each operation applied per sample with probability `p`.

    Args:
      images_BxHxWxC: floating-point images in [-1, 1] (the output is not clipped, as in DiffAugment).
      key: PRNG key; the same key gives the same transform for any batch of this shape.
      p: probability of each elementary operation per sample (1: classic DiffAugment;
        below 1: ADA-style, e.g. from `jaxmed.nn.ada.update_probability`). May be traced.
      policy: a subset of `POLICIES`; they apply in the order of `POLICIES` whatever the order given.
      fill: value of pixels uncovered by translation or cut out.

    Returns:
      The augmented images, same shape and dtype, differentiable w.r.t. `images_BxHxWxC`.

    Raises:
      UsageError: an unknown policy name, or images that are not 4-D floating point.
    """
    unknown = [name for name in policy if name not in POLICIES]
    if unknown:
        raise UsageError(f"DiffAugment policy {unknown[0]!r} is unknown; choose from {', '.join(POLICIES)}")
    if images_BxHxWxC.ndim != 4 or not jnp.issubdtype(images_BxHxWxC.dtype, jnp.floating):
        raise UsageError(f"DiffAugment takes (B, H, W, C) floating-point images, got {images_BxHxWxC.dtype}"
                         f"{list(images_BxHxWxC.shape)}")
    x = images_BxHxWxC
    # One key per operation, fixed whatever the policy, so ("translation",) and
    # ("color", "translation") shift by the same amounts for the same key.
    operations = ("brightness", "saturation", "contrast", "translation", "cutout")
    keys = {name: jax.random.split(operation_key) for name, operation_key in
            zip(operations, jax.random.split(key, len(operations)))}
    if "color" in policy:
        x = _choose(keys["brightness"][0], p, _brightness(keys["brightness"][1], x), x)
        if x.shape[3] == 3:
            x = _choose(keys["saturation"][0], p, _saturation(keys["saturation"][1], x), x)
        x = _choose(keys["contrast"][0], p, _contrast(keys["contrast"][1], x), x)
    if "translation" in policy:
        x = _choose(keys["translation"][0], p, _translation(keys["translation"][1], x, fill), x)
    if "cutout" in policy:
        x = _choose(keys["cutout"][0], p, _cutout(keys["cutout"][1], x, fill), x)
    return x
