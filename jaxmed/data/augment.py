"""Classic on-device data augmentation for classifier training.

This is the baseline arm of the augmentation study: does adding GAN-synthetic
images help a classifier *beyond* what classic augmentation already gives? The
baseline must therefore be a reasonable, conventional recipe, applied on the
accelerator inside the jitted train step so that it costs (almost) nothing:

- random horizontal flips (on by default: axial brain MRI is roughly
  left/right symmetric) and vertical flips (off by default: it is not
  top/bottom symmetric, and an upside-down head is not a plausible scan);
- a small rotation (±10°), isotropic scaling (0.9-1.1) and translation (±4 %
  of the image side), composed into **one** affine map per image and applied
  with a single bilinear resample, so the image is interpolated (blurred)
  once rather than once per transform. Pixels that come from outside the
  image are filled with -1, the background (air) value of the [-1, 1]
  convention;
- optional brightness (additive offset) and contrast (scaling about the image
  mean) jitter, off by default;
- additive Gaussian noise (std 0.02 in [-1, 1] units).

Every example in a batch gets its own random parameters, drawn from a
``jax.random`` key; the per-example resample is ``vmap``-ed. :func:`augment`
compiles itself per (shape, config) and is jit-able with the config as a
static argument::

    augment_jit = jax.jit(augment, static_argnames="config")
    images = augment_jit(key, images, config)

Images are NHWC floating-point arrays in [-1, 1]; the output has the same
shape and dtype and is clipped to [-1, 1].
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers

import jax
import jax.numpy as jnp

__all__ = ["AugmentConfig", "affine_resample", "augment"]

# Value written where a geometric transform looks outside the image: -1 is air
# (the darkest value) in the [-1, 1] convention of every jaxmed data source.
BACKGROUND = -1.0

# All randomness of a batch comes from ONE standard-normal draw of shape
# (B, _NUM_PARAMS + H*W*C): per example, the first _NUM_PARAMS columns become
# the transform parameters (mapped to uniform [0, 1] by the normal CDF) and the
# rest is the pixel noise. Why one draw:
# - The layout is fixed, not "one column per enabled transform", so switching a
#   transform on or off does not change the draws of the others: a study arm
#   that adds noise sees the very same flips and rotations as the arm without.
# - Each PRNG call (and each key split) is a threefry block that takes XLA:CPU
#   over a second to compile; one call instead of three halves the compile time
#   of the whole augmentation. The unused noise columns cost B*H*W*C normals,
#   nothing next to a training step.
_FLIP_H, _FLIP_V, _ANGLE, _SCALE, _SHIFT_Y, _SHIFT_X, _BRIGHTNESS, _CONTRAST = range(8)
_NUM_PARAMS = 8


def _is_real(value: object) -> bool:
    # bool is an int subclass; a True where a number belongs is a typo, not 1.0.
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations to apply and how strongly.

    Frozen and hashable so it can be a static argument of ``jax.jit``; a
    transform whose strength is zero (or whose flag is False) is left out of
    the traced computation entirely.

    Attributes:
        horizontal_flip: Mirror left/right with probability ``flip_probability``.
        vertical_flip: Mirror top/bottom with probability ``flip_probability``
            (drawn independently of the horizontal flip).
        flip_probability: Probability of each enabled flip, in [0, 1].
        max_rotation_degrees: Rotation angle drawn uniformly from
            ``[-max, max]`` degrees, in [0, 180]. Positive angles turn the
            image counter-clockwise as displayed (like ``jnp.rot90``).
        scale_range: ``(low, high)`` isotropic zoom factor drawn uniformly;
            > 1 enlarges the content. ``(1.0, 1.0)`` disables scaling.
        max_translation: Shift along each axis drawn uniformly from
            ``[-max, max]`` as a fraction of that axis' length, in [0, 1).
        noise_std: Standard deviation of additive Gaussian noise in [-1, 1]
            units, >= 0.
        brightness: Additive offset drawn uniformly from ``[-b, b]`` in
            [-1, 1] units, in [0, 1].
        contrast: Factor drawn uniformly from ``[1 - c, 1 + c]`` by which each
            image's deviation from its own mean is scaled, in [0, 1).
    """

    horizontal_flip: bool = True
    vertical_flip: bool = False
    max_rotation_degrees: float = 10.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    max_translation: float = 0.04
    noise_std: float = 0.02
    brightness: float = 0.0
    contrast: float = 0.0
    flip_probability: float = 0.5

    def __post_init__(self) -> None:
        for name in ("horizontal_flip", "vertical_flip"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"AugmentConfig.{name} must be a bool, got {getattr(self, name)!r}")
        bounds = {
            # name: (low, high, high_inclusive)
            "flip_probability": (0.0, 1.0, True),
            "max_rotation_degrees": (0.0, 180.0, True),
            "max_translation": (0.0, 1.0, False),
            "noise_std": (0.0, math.inf, False),
            "brightness": (0.0, 1.0, True),
            # contrast = 1 could draw a factor of 0 (a flat image); keep it strictly below.
            "contrast": (0.0, 1.0, False),
        }
        for name, (low, high, inclusive) in bounds.items():
            value = getattr(self, name)
            in_range = _is_real(value) and low <= value and (value <= high if inclusive else value < high)
            if not in_range:
                interval = f"[{low}, {high}]" if inclusive else f"[{low}, {high})"
                raise ValueError(f"AugmentConfig.{name} must be a finite number in {interval}, got {value!r}")
        scale = self.scale_range
        if (
            not isinstance(scale, tuple | list)
            or len(scale) != 2
            or not all(_is_real(s) for s in scale)
            or not 0.0 < scale[0] <= scale[1]
        ):
            raise ValueError(f"AugmentConfig.scale_range must be (low, high) with 0 < low <= high, got {scale!r}")
        # A list would make the config unhashable (unusable as a static jit
        # argument); normalise to a tuple of floats so equal configs hash equal.
        object.__setattr__(self, "scale_range", (float(scale[0]), float(scale[1])))

    @property
    def flips(self) -> bool:
        """Whether any flip can happen."""
        return (self.horizontal_flip or self.vertical_flip) and self.flip_probability > 0.0

    @property
    def geometric(self) -> bool:
        """Whether the affine resample (rotation, scaling, translation) is needed."""
        return self.max_rotation_degrees > 0.0 or self.scale_range != (1.0, 1.0) or self.max_translation > 0.0

    @property
    def is_identity(self) -> bool:
        """Whether the config changes nothing at all."""
        return not (
            self.flips or self.geometric or self.noise_std > 0.0 or self.brightness > 0.0 or self.contrast > 0.0
        )


def affine_resample(
    image_HxWxC: jax.Array,
    angle_rad: jax.Array | float,
    scale: jax.Array | float,
    shift_yx: jax.Array | tuple[float, float],
) -> jax.Array:
    """Rotates, scales and shifts one image about its centre with one bilinear resample.

    The forward map takes an input point ``p`` (row, column) to
    ``c + scale * R(angle) (p - c) + shift_yx`` with ``c`` the image centre
    ``((H - 1) / 2, (W - 1) / 2)``. Each output pixel is read from the input
    at the inverse image of its position, interpolated bilinearly
    (``map_coordinates`` order 1); positions outside the input read -1, so the
    corners uncovered by a rotation or zoom-out become background. A positive
    angle turns the content counter-clockwise as displayed (row axis pointing
    down), so ``angle = pi/2`` reproduces ``jnp.rot90(image)`` on a square
    image (up to float rounding of ``cos(pi/2)``).

    Args:
        image_HxWxC: One image, shape (H, W, C), floating point.
        angle_rad: Rotation angle in radians (scalar).
        scale: Isotropic zoom factor (scalar, > 0); > 1 enlarges the content.
        shift_yx: Translation ``(rows, columns)`` in pixels, applied after
            rotation and scaling; positive moves the content down / right.

    Returns:
        The resampled image, same shape and dtype as ``image_HxWxC`` (not clipped).

    Raises:
        ValueError: If the image is not rank 3 or not floating point.
    """
    if image_HxWxC.ndim != 3:
        raise ValueError(f"image_HxWxC must have rank 3 (H, W, C), got shape {image_HxWxC.shape}")
    if not jnp.issubdtype(image_HxWxC.dtype, jnp.floating):
        raise ValueError(f"image_HxWxC must be floating point, got dtype {image_HxWxC.dtype}")
    height, width, _ = image_HxWxC.shape
    # Coordinates in float32 even for bf16/f16 images: at 128+ pixels a 16-bit
    # coordinate is off by whole pixels.
    angle = jnp.asarray(angle_rad, jnp.float32)
    inv_scale = 1.0 / jnp.asarray(scale, jnp.float32)
    shift = jnp.asarray(shift_yx, jnp.float32)
    cos, sin = jnp.cos(angle), jnp.sin(angle)

    center_y, center_x = (height - 1) / 2.0, (width - 1) / 2.0
    out_y, out_x = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij"
    )
    # Inverse map: undo the shift, then the zoom, then rotate by -angle. In
    # (row, column) coordinates with rows pointing down, R(-angle) applied to an
    # offset (dy, dx) is (cos dy + sin dx, -sin dy + cos dx).
    dy = (out_y - center_y - shift[0]) * inv_scale
    dx = (out_x - center_x - shift[1]) * inv_scale
    src_y = center_y + cos * dy + sin * dx
    src_x = center_x - sin * dy + cos * dx

    def resample_channel(channel_HxW: jax.Array) -> jax.Array:
        return jax.scipy.ndimage.map_coordinates(
            channel_HxW.astype(jnp.float32), [src_y, src_x], order=1, mode="constant", cval=BACKGROUND
        )

    # The sampling grid is shared by all channels; vmap only the gather.
    resampled = jax.vmap(resample_channel, in_axes=2, out_axes=2)(image_HxWxC)
    return resampled.astype(image_HxWxC.dtype)


def _between(u: jax.Array, low: float, high: float) -> jax.Array:
    """Maps uniform [0, 1] draws to uniform [low, high]."""
    return low + (high - low) * u


# Jitted so that eager callers compile one program per (shape, config) instead
# of dispatching (and compiling) dozens of small ops one by one; inside a
# caller's jitted step the nested jit is simply inlined.
@functools.partial(jax.jit, static_argnames="config")
def _augment_batch(key: jax.Array, images: jax.Array, config: AugmentConfig) -> jax.Array:
    """Augments a float32 batch; ``config`` is static, so disabled steps are not traced."""
    batch, height, width, channels = images.shape
    draws = jax.random.normal(key, (batch, _NUM_PARAMS + height * width * channels), jnp.float32)
    # Probability integral transform: Phi(z) of a standard normal z is uniform on [0, 1].
    u = jax.scipy.special.ndtr(draws[:, :_NUM_PARAMS])

    def per_example(column: jax.Array) -> jax.Array:
        # (B,) -> (B, 1, 1, 1), so it combines with (B, H, W, C) without rank promotion.
        return column.reshape(batch, 1, 1, 1)

    # Flips are exact permutations, done by indexing rather than folded into
    # the affine map: a flip-only config then involves no interpolation at all.
    if config.flips and config.horizontal_flip:
        flip = per_example(u[:, _FLIP_H] < config.flip_probability)
        images = jnp.where(flip, jnp.flip(images, axis=2), images)
    if config.flips and config.vertical_flip:
        flip = per_example(u[:, _FLIP_V] < config.flip_probability)
        images = jnp.where(flip, jnp.flip(images, axis=1), images)

    if config.geometric:
        max_angle = math.radians(config.max_rotation_degrees)
        angle = _between(u[:, _ANGLE], -max_angle, max_angle)
        scale = _between(u[:, _SCALE], *config.scale_range)
        fraction = _between(u[:, _SHIFT_Y : _SHIFT_X + 1], -config.max_translation, config.max_translation)
        shift = fraction * jnp.array([[height, width]], jnp.float32)
        images = jax.vmap(affine_resample)(images, angle, scale, shift)

    if config.contrast > 0.0:
        factor = per_example(_between(u[:, _CONTRAST], 1.0 - config.contrast, 1.0 + config.contrast))
        mean = jnp.mean(images, axis=(1, 2, 3), keepdims=True)
        images = mean + (images - mean) * factor
    if config.brightness > 0.0:
        images = images + per_example(_between(u[:, _BRIGHTNESS], -config.brightness, config.brightness))
    if config.noise_std > 0.0:
        # Noise last, so it is not smoothed by the bilinear resample or scaled by contrast.
        images = images + config.noise_std * draws[:, _NUM_PARAMS:].reshape(images.shape)
    return jnp.clip(images, -1.0, 1.0)


def augment(key: jax.Array, images_BxHxWxC: jax.Array, config: AugmentConfig = AugmentConfig()) -> jax.Array:
    """Applies random classic augmentation to a batch, independently per example.

    Order: flips, then one affine resample (rotation, scaling, translation
    about the centre, background -1 outside), then contrast, brightness and
    Gaussian noise, then clipping to [-1, 1]. Each example gets its own
    parameters and its own noise (all from one ``jax.random.normal`` draw
    from ``key``); the result is a deterministic function of ``key``.
    Computation is in float32 and cast back to the input dtype.

    The work is jit-compiled once per (shape, dtype, config), so eager calls
    are fast after the first; inside a jitted train step it is inlined. To jit
    it yourself, make the config static:
    ``jax.jit(augment, static_argnames="config")``.

    Args:
        key: A ``jax.random`` key (raw uint32 or typed).
        images_BxHxWxC: Batch of images, shape (B, H, W, C), floating point,
            values in [-1, 1].
        config: Which augmentations to apply; see :class:`AugmentConfig`.

    Returns:
        Augmented images, same shape and dtype, in [-1, 1]. If ``config``
        enables nothing, ``images_BxHxWxC`` itself is returned unchanged.

    Raises:
        ValueError: If the images are not rank 4 or not floating point, or
            ``config`` is not an :class:`AugmentConfig`.
    """
    if not isinstance(config, AugmentConfig):
        raise ValueError(f"config must be an AugmentConfig, got {type(config).__name__}")
    images = jnp.asarray(images_BxHxWxC)
    if images.ndim != 4:
        raise ValueError(f"images_BxHxWxC must have rank 4 (B, H, W, C), got shape {images.shape}")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"images_BxHxWxC must be floating point, got dtype {images.dtype}")
    if config.is_identity:
        # Nothing to do, so do nothing: not even a clip or a dtype round trip.
        return images_BxHxWxC
    return _augment_batch(key, images.astype(jnp.float32), config).astype(images.dtype)
