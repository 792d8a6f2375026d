"""Fast 4x4 stride-2 "SAME" transposed convolution (2x up-sampling), computed sub-pixel.

`upsample_conv(x, kernel)` equals

    lax.conv_transpose(x, kernel, strides=(2, 2), padding="SAME",
                       dimension_numbers=("NHWC", "HWIO", "NHWC"))

for a (4, 4, C_in, C_out) kernel (the layout of `nnx.ConvTranspose` with
`transpose_kernel=False`), but is built from ordinary stride-1 operations. On
XLA:CPU the gradient of `lax.conv_transpose` lowers to a base-dilated
convolution with no fast kernel (about 1-2 s per wide DCGAN layer at batch
32 on 2 cores); the gradients of the forms below are plain matrix products or
convolutions (4-40x faster on the dcgan128 layers, see
`benchmarks/upsample_conv.py`).

Derivation (one spatial axis; the two axes are independent). For kernel size
k=4 and stride s=2, `lax.conv_transpose` with "SAME" pads the input, dilated by
2 (x[i] at position 2i, zeros between), by k + s - 2 = 4 in total, 2 on each
side, and correlates it with the *unflipped* kernel K (no flip because
`transpose_kernel=False`). Output o therefore reads dilated position
o + t - 2 with tap K[t], t = 0..3, which holds x[i] iff o + t - 2 = 2i:

    y[2m]     = x[m-1] K[0] + x[m]   K[2]      (even outputs: taps 0, 2)
    y[2m + 1] = x[m]   K[1] + x[m+1] K[3]      (odd outputs:  taps 1, 3)

with x[-1] = x[H] = 0. With xp = x zero-padded by one on each side
(xp[j] = x[j-1]) both phases a in {0, 1} read a 2-tap window of xp:

    y[2m + a] = xp[m + a] K[a] + xp[m + a + 1] K[a + 2],

i.e. phase a is a stride-1 correlation of xp with the sub-kernel K[a::2] (no
flip), read at window start p = m + a. All H + 1 window starts p = 0..H of
one 2x2 correlation therefore serve both phases, and nothing depends on the
parity of H or W. In 2-D the four phases (a, b) use K[a::2, b::2].

Two formulations of that fact are implemented (`method`):

- "matmul" (im2col): gather the 2x2 windows of xp into (B, H+1, W+1, 4 C_in)
  patches and multiply by a (4 C_in, 4 C_out) matrix holding all four
  sub-kernels, giving every phase at every window start. Its gradients are
  two more matrix products and slice/pad sums. Storing phase a at channel
  slot a' = 1 - a makes depth-to-space a single reshape: on the flattened
  (window start, slot) axis, output o = 2m + a sits at element
  2p + a' = 2(m + a) + 1 - a = o + 1, so the output is that axis shifted by one.
- "conv3x3": one 3x3 stride-1 "SAME" convolution with 4 C_out outputs, phase
  (a, b) getting its 2x2 sub-kernel at offset (a, b) of the 3x3 window and
  zeros elsewhere (5 of 9 taps are zero), then depth-to-space. Its extra
  arithmetic is irrelevant when C_out is tiny and it streams the input once,
  where im2col would copy it 4x.

"auto" picks conv3x3 for C_out <= 4 (image-output layers) and matmul
otherwise; measured forward+backward at batch 32 on a shared 2-core XLA:CPU
(ms, matmul vs conv3x3): 64px 32->1: 101 vs 57; 32->4: 112 vs 104; 32->8: 119
vs 182; 32->16: 144 vs 581; 8px 256->128: 60 vs 118. Also measured and
rejected: four separate 2x2 convolutions (one per phase; 1-2x slower than
matmul on the wide layers) and one 2x2 convolution over the (H+1)x(W+1)
window starts with 4 C_out outputs (fastest forward, but XLA:CPU computes its
kernel gradient 2-100x slower than the matrix product, depending on how the
padding is expressed).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import dtypes as nnx_dtypes
from jax import lax

from jaxmed.nn import onednn
from jaxmed.nn.subpixel import interleave_phases, phase_kernel

__all__ = ["upsample_conv", "UpsampleConv", "UpsampleMethod", "CONV3X3_MAX_OUT_FEATURES"]

UpsampleMethod = Literal["auto", "matmul", "conv3x3", "onednn"]

#: "auto" uses the 3x3-conv form up to this many output channels (measured crossover, see module docstring).
CONV3X3_MAX_OUT_FEATURES = 4

_KERNEL_SIZE = (4, 4)
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def _check_shapes(x: jax.Array, kernel: jax.Array, bias: jax.Array | None) -> None:
    if x.ndim != 4:
        raise ValueError(f"upsample_conv expects NHWC input of rank 4, got shape {x.shape}")
    if kernel.ndim != 4 or tuple(kernel.shape[:2]) != _KERNEL_SIZE:
        raise ValueError(f"upsample_conv expects a (4, 4, C_in, C_out) kernel, got shape {kernel.shape}")
    if kernel.shape[2] != x.shape[3]:
        raise ValueError(f"input has {x.shape[3]} channels but the kernel expects {kernel.shape[2]}")
    if bias is not None and tuple(bias.shape) != (kernel.shape[3],):
        raise ValueError(f"bias must have shape ({kernel.shape[3]},), got {bias.shape}")


def _upsample_matmul(x: jax.Array, kernel: jax.Array, precision: lax.PrecisionLike,
                     preferred_element_type) -> jax.Array:
    """im2col form: one (B(H+1)(W+1), 4 C_in) x (4 C_in, 4 C_out) matrix product."""
    batch, height, width, in_features = x.shape
    out_features = kernel.shape[3]
    x_padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    # Patch channel order (t, u, C_in): window tap (t, u) at window start (p, q) is xp[p + t, q + u].
    patches = jnp.concatenate(
        [x_padded[:, t:t + height + 1, u:u + width + 1] for t in (0, 1) for u in (0, 1)], axis=-1)
    weight = phase_kernel(kernel).reshape(4 * in_features, 4 * out_features)  # (t, u, I) x (a', b', O)
    # A 2-D product (rather than einsum over 4-D operands) gets the fastest GEMM layout on XLA:CPU.
    phases = jnp.matmul(patches.reshape(-1, 4 * in_features), weight, precision=precision,
                        preferred_element_type=preferred_element_type)
    return interleave_phases(phases.reshape(batch, height + 1, width + 1, 4 * out_features), 2 * height, 2 * width)


def _upsample_conv3x3(x: jax.Array, kernel: jax.Array, precision: lax.PrecisionLike,
                      preferred_element_type) -> jax.Array:
    """Packed form: one 3x3 "SAME" convolution with 4 C_out outputs, then depth-to-space."""
    batch, height, width, in_features = x.shape
    out_features = kernel.shape[3]
    taps = kernel.reshape(2, 2, 2, 2, in_features, out_features)  # (t, a, u, b, I, O)
    # With the input padded by one, phase a at output row m reads padded rows m + a + t:
    # sub-kernel (a, b) sits at offset (a, b) of the 3x3 window.
    packed = jnp.stack([
        jnp.stack([jnp.pad(taps[:, a, :, b], ((a, 1 - a), (b, 1 - b), (0, 0), (0, 0))) for b in (0, 1)], axis=3)
        for a in (0, 1)
    ], axis=3)  # (3, 3, I, a, b, O)
    packed = packed.reshape(3, 3, in_features, 4 * out_features)
    phases = lax.conv_general_dilated(x, packed, (1, 1), ((1, 1), (1, 1)),
                                      dimension_numbers=_DIMENSION_NUMBERS, precision=precision,
                                      preferred_element_type=preferred_element_type)
    phases = phases.reshape(batch, height, width, 2, 2, out_features).transpose(0, 1, 3, 2, 4, 5)
    return phases.reshape(batch, 2 * height, 2 * width, out_features)


def _upsample_onednn(x: jax.Array, kernel: jax.Array, preferred_element_type) -> jax.Array:
    """oneDNN form: the input gradient of the 2x down-sampling convolution this layer transposes.

    By the derivation above, output o reads x[i] with tap K[t] where o + t - 2 = 2i;
    the 4x4 stride-2 convolution with padding 1 from 2H x 2W to H x W sends input o to
    output i through tap t' = o + 1 - 2i = 3 - t. So this layer is that convolution's
    input gradient for the kernel flipped in space, input and output channels swapped.
    """
    batch, height, width, _ = x.shape
    conv_kernel = jnp.flip(kernel, axis=(0, 1)).transpose(0, 1, 3, 2)
    return onednn.conv2d_transpose(x, conv_kernel, (batch, 2 * height, 2 * width, kernel.shape[3]), (2, 2),
                                   ((1, 1), (1, 1)), preferred_element_type)


def upsample_conv(x_BxHxWxCin: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, *,
                  method: UpsampleMethod = "auto", precision: lax.PrecisionLike = None,
                  preferred_element_type=None) -> jax.Array:
    """2x up-sampling 4x4 transposed convolution with "SAME" padding, in sub-pixel form.

    Equal (to float rounding) to `lax.conv_transpose(x, kernel, (2, 2), "SAME",
    dimension_numbers=("NHWC", "HWIO", "NHWC"))` plus `bias`, for any H, W >= 1,
    but differentiated through ordinary matrix products / convolutions.

    Args:
      x_BxHxWxCin: input, NHWC.
      kernel: (4, 4, C_in, C_out) kernel in `nnx.ConvTranspose` layout (`transpose_kernel=False`).
      bias: optional (C_out,) bias added to every output position.
      method: "matmul" (im2col matrix product), "conv3x3" (one packed 3x3 convolution),
        "auto" (conv3x3 when C_out <= `CONV3X3_MAX_OUT_FEATURES`, else matmul; the faster one
        measured on XLA) or "onednn" (`jaxmed.nn.onednn.upsample_conv`, XLA:CPU only; the
        operands must share one dtype, float32 or bfloat16).
      precision: passed to the matrix product / convolution (matters on GPU/TPU only).
      preferred_element_type: the result's dtype if not the inputs' (e.g. float32 from
        bfloat16 inputs), as in `lax.conv_general_dilated`.

    Returns:
      (B, 2H, 2W, C_out) array in the promoted dtype of the inputs, or `preferred_element_type`.

    Raises:
      ValueError: on shapes that are not NHWC / (4, 4, C_in, C_out) / (C_out,) or an unknown method.
    """
    _check_shapes(x_BxHxWxCin, kernel, bias)
    if method == "auto":
        method = "conv3x3" if kernel.shape[3] <= CONV3X3_MAX_OUT_FEATURES else "matmul"
    if method == "matmul":
        y = _upsample_matmul(x_BxHxWxCin, kernel, precision, preferred_element_type)
    elif method == "conv3x3":
        y = _upsample_conv3x3(x_BxHxWxCin, kernel, precision, preferred_element_type)
    elif method == "onednn":
        y = _upsample_onednn(x_BxHxWxCin, kernel, preferred_element_type)
    else:
        raise ValueError(f"method must be 'auto', 'matmul', 'conv3x3' or 'onednn', got {method!r}")
    if bias is not None:
        y = y + bias.reshape(1, 1, 1, -1)  # explicit rank: the project runs with strict rank promotion
    return y


class UpsampleConv(nnx.Module):
    """Drop-in for `nnx.ConvTranspose(in, out, kernel_size=(4, 4), strides=(2, 2), padding="SAME")`.

    Same parameters (`kernel` (4, 4, in, out), `bias` (out,) or None), same default
    initialisers, same function; computed by `upsample_conv`, whose gradients are fast.
    Weights therefore move between the two layers unchanged in both directions.

    Args:
      in_features: input channels.
      out_features: output channels.
      use_bias: whether to add a learned bias.
      kernel_init: kernel initialiser (default lecun_normal, as `nnx.ConvTranspose`).
      bias_init: bias initialiser (default zeros, as `nnx.ConvTranspose`).
      dtype: computation dtype (None: promote input and parameters, as flax does).
      param_dtype: parameter dtype.
      precision: matrix-product / convolution precision (GPU/TPU).
      preferred_element_type: output dtype if not the computation dtype (as `nnx.ConvTranspose`).
      method: see `upsample_conv`.
      rngs: parameter initialisation keys.
    """

    def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True,
                 kernel_init: nnx.Initializer = nnx.initializers.lecun_normal(),
                 bias_init: nnx.Initializer = nnx.initializers.zeros_init(),
                 dtype: jnp.dtype | None = None, param_dtype: jnp.dtype = jnp.float32,
                 precision: lax.PrecisionLike = None, preferred_element_type=None, method: UpsampleMethod = "auto",
                 rngs: nnx.Rngs):
        self.in_features = in_features
        self.out_features = out_features
        self.use_bias = use_bias
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.preferred_element_type = preferred_element_type
        self.method = method
        # Kernel first, then bias: the same key order as nnx.ConvTranspose, so equal seeds give equal weights.
        self.kernel = nnx.Param(kernel_init(rngs.params(), _KERNEL_SIZE + (in_features, out_features), param_dtype))
        self.bias: nnx.Param | None
        if use_bias:
            self.bias = nnx.Param(bias_init(rngs.params(), (out_features,), param_dtype))
        else:
            self.bias = nnx.data(None)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Up-samples `x` of shape (*batch, H, W, in_features) to (*batch, 2H, 2W, out_features).

        Like `nnx.ConvTranspose`, any number of leading batch dimensions (including none) is accepted.
        """
        kernel = self.kernel[...]
        bias = self.bias[...] if self.bias is not None else None
        x, kernel, bias = nnx_dtypes.promote_dtype((x, kernel, bias), dtype=self.dtype)
        batch_shape = x.shape[:-3]
        y = upsample_conv(x.reshape((-1,) + x.shape[-3:]), kernel, bias, method=self.method,
                          precision=self.precision, preferred_element_type=self.preferred_element_type)
        return y.reshape(batch_shape + y.shape[1:])
