"""Preprocessing: raw image arrays to the model's input convention.

Every model in jaxmed consumes NHWC ``float32`` arrays with values in
``[-1, 1]`` (the range of a ``tanh`` generator output). The functions here get
images of the usual on-disk kinds -- 8/16-bit integers, floats with an
arbitrary intensity scale, grayscale, RGB or RGBA -- into that convention, and
back to ``[0, 1]`` for display. :func:`preprocess` runs the whole chain.

All functions are NumPy-only and run on the host; they are meant to be applied
once to an in-memory data set before batching, not inside a jitted step.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# ITU-R BT.601 luma weights. They are the weights Pillow uses for
# ``Image.convert("L")`` (L = R*299/1000 + G*587/1000 + B*114/1000), so a
# data set converted here matches one converted on load with Pillow, which is
# how most published grayscale versions of RGB medical data sets were made.
# They sum to 1, so the conversion commutes with the affine map to [-1, 1].
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)


def _check_images(images: np.ndarray, name: str, ranks: tuple[int, ...] | None = None) -> np.ndarray:
    """Returns `images` as an array after checking it is non-empty, of an allowed rank and finite."""
    images = np.asarray(images)
    if ranks is not None and images.ndim not in ranks:
        allowed = " or ".join(str(r) for r in ranks)
        raise ValueError(f"{name}: expected an array of rank {allowed}, got shape {images.shape}")
    if images.size == 0:
        raise ValueError(f"{name}: got an empty array of shape {images.shape}")
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"{name}: expected an integer or float array, got dtype {images.dtype}")
    if np.issubdtype(images.dtype, np.floating) and not np.all(np.isfinite(images)):
        raise ValueError(f"{name}: images contain NaN or infinite values")
    return images


def _check_channels(images: np.ndarray, name: str, allowed: tuple[int, ...]) -> None:
    """Raises ValueError unless a rank-3 array or a rank-4 array with an allowed channel count."""
    if images.ndim == 4 and images.shape[-1] not in allowed:
        raise ValueError(
            f"{name}: unsupported channel count {images.shape[-1]} in shape {images.shape}; "
            f"expected one of {allowed}"
        )


def to_grayscale(images: np.ndarray) -> np.ndarray:
    """Converts images to single-channel grayscale.

    RGB is reduced with the ITU-R BT.601 luma weights (0.299, 0.587, 0.114),
    the same weights as Pillow's ``convert("L")`` (without its rounding to
    integers). An alpha channel is dropped, not composited: medical images
    stored as RGBA are in practice fully opaque exports.

    Args:
        images: ``(N, H, W)``, ``(N, H, W, 1)``, ``(N, H, W, 3)`` RGB or
            ``(N, H, W, 4)`` RGBA array, integer or float.

    Returns:
        ``(N, H, W, 1)`` float32 array, on the same intensity scale as the input.

    Raises:
        ValueError: on a wrong rank, an unsupported channel count, an empty
            array or non-finite values.
    """
    images = _check_images(images, "to_grayscale", ranks=(3, 4))
    _check_channels(images, "to_grayscale", allowed=(1, 3, 4))
    if images.ndim == 3:
        return images.astype(np.float32)[..., None]
    if images.shape[-1] == 1:
        return images.astype(np.float32)
    luma = images[..., :3].astype(np.float32) @ np.asarray(LUMA_WEIGHTS, dtype=np.float32)
    return luma[..., None]


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """Resizes images to ``size x size`` with Pillow's bicubic filter.

    The filter is pinned so results do not depend on the library version of
    some other resampler: each channel is resized as a float32 ``"F"``-mode
    Pillow image with ``Image.Resampling.BICUBIC``, which antialiases when
    downscaling. Non-square inputs are stretched to a square -- the aspect
    ratio is not preserved, as in the seed paper's preprocessing. Bicubic
    interpolation can overshoot near sharp edges, so outputs may slightly
    exceed the input's value range (:func:`preprocess` clips afterwards).

    Args:
        images: ``(N, H, W, C)`` array.
        size: Output height and width, at least 1.

    Returns:
        ``(N, size, size, C)`` float32 array; a float32 copy of the input when
        it already has that size.

    Raises:
        ValueError: on a wrong rank, an empty array, non-finite values or
            ``size < 1``.
    """
    images = _check_images(images, "resize", ranks=(4,))
    if size < 1:
        raise ValueError(f"resize: size must be at least 1, got {size}")
    n, height, width, channels = images.shape
    if height == size and width == size:
        return images.astype(np.float32, copy=True)
    images = images.astype(np.float32, copy=False)
    out = np.empty((n, size, size, channels), dtype=np.float32)
    for i in range(n):
        for c in range(channels):
            # Contiguous 2-D float32 gives an "F"-mode image (no 8-bit quantisation).
            plane = Image.fromarray(np.ascontiguousarray(images[i, :, :, c]))
            out[i, :, :, c] = np.asarray(plane.resize((size, size), Image.Resampling.BICUBIC))
    return out


def to_model_range(
    images: np.ndarray, intensity_range: tuple[float, float] | None = None
) -> np.ndarray:
    """Scales images to float32 in ``[-1, 1]``.

    The source range is taken from, in order: `intensity_range` when given
    (values are clipped to it -- e.g. a CT window in Hounsfield units, which
    also works for integer arrays such as int16 CT); otherwise the full range
    of an integer dtype (uint8 divided by 255, uint16 by 65535); otherwise a
    float array must already be in ``[0, 1]``. Floats are not rescaled by their
    own min/max, because that would give each data set (or each batch) a
    different, silent intensity mapping.

    Args:
        images: Integer or float array of any shape.
        intensity_range: Optional ``(lo, hi)`` with ``lo < hi``, mapped to
            ``-1`` and ``1``.

    Returns:
        float32 array of the same shape with values in ``[-1, 1]``.

    Raises:
        ValueError: on an empty array, non-finite values, an invalid
            `intensity_range`, or float values outside ``[0, 1]`` without an
            `intensity_range`.
    """
    images = _check_images(images, "to_model_range")
    if intensity_range is not None:
        lo, hi = (float(v) for v in intensity_range)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(
                "to_model_range: intensity_range must be finite (lo, hi) with lo < hi, "
                f"got {intensity_range}"
            )
        unit = (np.clip(images.astype(np.float32), lo, hi) - np.float32(lo)) / np.float32(hi - lo)
    elif np.issubdtype(images.dtype, np.integer):
        info = np.iinfo(images.dtype)
        unit = (images.astype(np.float32) - np.float32(info.min)) / np.float32(info.max - info.min)
    else:
        lo, hi = float(images.min()), float(images.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"to_model_range: float images must be in [0, 1] but span [{lo:g}, {hi:g}]; "
                f"pass intensity_range=(lo, hi) to say how to scale them"
            )
        unit = images.astype(np.float32)
    # Clip guards against float32 rounding putting a value just outside [-1, 1].
    return np.clip(unit * np.float32(2.0) - np.float32(1.0), -1.0, 1.0).astype(np.float32, copy=False)


def from_model_range(images: np.ndarray) -> np.ndarray:
    """Maps model-range images back to ``[0, 1]`` for display or export.

    Args:
        images: Array (NumPy or JAX) with values nominally in ``[-1, 1]``;
            generator outputs slightly outside are clipped.

    Returns:
        float32 NumPy array of the same shape with values in ``[0, 1]``.
    """
    images = np.asarray(images, dtype=np.float32)
    return np.clip((images + np.float32(1.0)) * np.float32(0.5), 0.0, 1.0)


def preprocess(
    images: np.ndarray,
    *,
    image_size: int,
    channels: int = 1,
    intensity_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Runs the whole chain: range, channels, size.

    Order: :func:`to_model_range`, then the channel conversion (grayscale for
    ``channels=1``; gray replicated to 3 or RGBA's alpha dropped for
    ``channels=3``), then :func:`resize`. Resizing last means fewer planes go
    through the Python loop when RGB is reduced to gray. The result is clipped
    to ``[-1, 1]`` because bicubic interpolation can overshoot at edges.

    Args:
        images: ``(N, H, W)`` or ``(N, H, W, C)`` array with ``C`` in 1, 3, 4.
        image_size: Output height and width, at least 1.
        channels: Output channels, 1 (grayscale) or 3 (RGB).
        intensity_range: See :func:`to_model_range`.

    Returns:
        ``(N, image_size, image_size, channels)`` float32 array in ``[-1, 1]``.

    Raises:
        ValueError: on any invalid input (rank, channel count, empty array,
            non-finite values, sizes, intensity range).
    """
    # Validate shape up front so a bad input fails before any expensive work.
    images = _check_images(images, "preprocess", ranks=(3, 4))
    _check_channels(images, "preprocess", allowed=(1, 3, 4))
    if channels not in (1, 3):
        raise ValueError(f"preprocess: channels must be 1 or 3, got {channels}")
    if image_size < 1:
        raise ValueError(f"preprocess: image_size must be at least 1, got {image_size}")

    images = to_model_range(images, intensity_range)
    if images.ndim == 3:
        images = images[..., None]
    if channels == 1:
        images = to_grayscale(images)
    elif images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    else:
        images = images[..., :3]
    return np.clip(resize(images, image_size), -1.0, 1.0)
