"""Max pooling whose gradient reads its input once (`max_pool.h`), for XLA:CPU on one device.

The forward call also writes each maximum's position in its window (one byte per output),
so the backward call needs only dy and those positions: no re-reading of the input, no
comparisons. Same placement rule as the convolutions (`jaxmed.nn.conv_backend`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxmed.nn.onednn.library import MAX_POOL_TARGETS, load

Pads = tuple[tuple[int, int], tuple[int, int]]
#: Window positions are stored in one byte.
MAX_WINDOW_POSITIONS = 256


def supports(x: jax.Array, window: tuple[int, int], pads: Pads) -> bool:
    """Whether `max_pool` computes this case: float32 NHWC, a window of at most 256 positions,
    every window overlapping the image (each pad smaller than the window)."""
    return (x.dtype == jnp.float32 and x.ndim == 4 and window[0] * window[1] <= MAX_WINDOW_POSITIONS
            and all(0 <= low < size and 0 <= high < size for (low, high), size in zip(pads, window)))


def _attributes(window, strides, pads) -> dict:
    return {"window_h": np.int64(window[0]), "window_w": np.int64(window[1]), "stride_h": np.int64(strides[0]),
            "stride_w": np.int64(strides[1]), "pad_top": np.int64(pads[0][0]), "pad_left": np.int64(pads[1][0])}


def _output_shape(shape, window, strides, pads) -> tuple[int, int, int, int]:
    batch, height, width, channels = shape
    return (batch, (height + sum(pads[0]) - window[0]) // strides[0] + 1,
            (width + sum(pads[1]) - window[1]) // strides[1] + 1, channels)


def _forward_call(x, window, strides, pads):
    load()
    shape = _output_shape(x.shape, window, strides, pads)
    return jax.ffi.ffi_call(MAX_POOL_TARGETS[0], (jax.ShapeDtypeStruct(shape, jnp.float32),
                                                   jax.ShapeDtypeStruct(shape, jnp.uint8)))(
        x, **_attributes(window, strides, pads))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool(x_BxHxWxC: jax.Array, window: tuple[int, int], strides: tuple[int, int], pads: Pads) -> jax.Array:
    """Max pooling of a float32 NHWC batch (see `supports`); padded positions never win,
    and of tied inputs the first in the window (row-major) takes the gradient.

    Args:
      x_BxHxWxC: the input.
      window: (k_h, k_w).
      strides: (s_h, s_w).
      pads: ((top, bottom), (left, right)).
    """
    return _forward_call(x_BxHxWxC, window, strides, pads)[0]


def _max_pool_fwd(x, window, strides, pads):
    y, where = _forward_call(x, window, strides, pads)
    return y, (where, x.shape)


def _max_pool_bwd(window, strides, pads, residuals, dy):
    where, shape = residuals
    dx = jax.ffi.ffi_call(MAX_POOL_TARGETS[1], jax.ShapeDtypeStruct(shape, jnp.float32))(
        dy.astype(jnp.float32), where, **_attributes(window, strides, pads))
    return (dx,)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)
