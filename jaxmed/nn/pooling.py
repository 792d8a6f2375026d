"""Max pooling whose gradient is fast on every backend.

`lax.reduce_window` (what `nnx.max_pool` computes) differentiates through
`select_and_scatter`, which XLA:CPU runs at about 1 % of memory bandwidth: 2x2 pooling
of a (32, 128, 128, 32) batch took about 300 ms forward and backward on this project's
2-core CPU. `max_pool` computes the same function as the elementwise maximum of the
window's k_h * k_w strided views of the (-inf padded) input, whose gradient is a chain
of selects: 37 ms for the same batch (3x3 stride-2 pooling of (32, 64, 64, 64): 230 ms
-> 55 ms). Values are identical; gradients are identical except where two inputs of
one window tie exactly for the maximum, where `reduce_window` gives the whole gradient
to one of them and the maximum chain shares it between them (both are valid
subgradients; ties have measure zero for continuous activations).

Where the models' convolutions run on oneDNN, `use_kernel=True` sends float32 pooling to
`jaxmed.nn.onednn.max_pool`, whose forward pass also records each maximum's position, so
the backward pass reads dy and those positions once instead of the input once per window
position (ties: the first position in the window takes the whole gradient, as in
`reduce_window`).

`MaxPool` is the same as a parameter-free module, so model code reads like its other
layers and `jaxmed.bench` can find every pooling layer of a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from jaxmed.nn import onednn

Padding = str | Sequence[tuple[int, int]]


def max_pool(x_BxHxWxC: jax.Array, window: tuple[int, int], strides: tuple[int, int],
             padding: Padding = "VALID", use_kernel: bool = False) -> jax.Array:
    """Spatial max pooling of an NHWC batch; the same values as `nnx.max_pool`.

    Args:
      x_BxHxWxC: the input.
      window: (k_h, k_w).
      strides: (s_h, s_w).
      padding: "VALID", "SAME" or ((top, bottom), (left, right)); padded positions never win.
      use_kernel: compute float32 inputs with `jaxmed.nn.onednn.max_pool` (XLA:CPU on one
        device only, like the oneDNN convolutions); other dtypes stay on XLA.
    """
    batch, height, width, channels = x_BxHxWxC.shape
    (window_h, window_w), (stride_h, stride_w) = window, strides
    pads = lax.padtype_to_pads((height, width), window, strides, padding) if isinstance(padding, str) else padding
    pads = tuple(tuple(pair) for pair in pads)
    if use_kernel and onednn.max_pool.supports(x_BxHxWxC, window, pads):
        return onednn.max_pool.max_pool(x_BxHxWxC, tuple(window), tuple(strides), pads)
    padded = jnp.pad(x_BxHxWxC, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)), constant_values=-jnp.inf)
    out_h = (padded.shape[1] - window_h) // stride_h + 1
    out_w = (padded.shape[2] - window_w) // stride_w + 1
    result = None
    for row in range(window_h):
        for col in range(window_w):
            view = lax.slice(padded, (0, row, col, 0),
                             (batch, row + (out_h - 1) * stride_h + 1, col + (out_w - 1) * stride_w + 1, channels),
                             (1, stride_h, stride_w, 1))
            result = view if result is None else jnp.maximum(result, view)
    return result


class MaxPool(nnx.Module):
    """`max_pool` as a layer (no parameters).

    Args:
      window, strides, padding, use_kernel: as in `max_pool`.
    """

    def __init__(self, window: tuple[int, int], strides: tuple[int, int], padding: Padding = "VALID",
                 use_kernel: bool = False):
        self.use_kernel = use_kernel
        self.window = tuple(window)
        self.strides = tuple(strides)
        self.padding = padding if isinstance(padding, str) else tuple(tuple(pair) for pair in padding)

    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        return max_pool(x_BxHxWxC, self.window, self.strides, self.padding, self.use_kernel)
