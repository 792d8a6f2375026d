"""2-D convolutions computed by oneDNN on XLA:CPU, differentiable like their `lax` twins.

Three oneDNN primitives (forward, backward data, backward weights; `conv2d.cc`)
make two differentiable functions:

- `conv2d(x, kernel, strides, padding)`: `lax.conv_general_dilated` for NHWC
  inputs and HWIO kernels (no dilation, one feature group). Its input gradient is
  the backward-data primitive, its kernel gradient the backward-weights one.
- `conv2d_transpose(y, kernel, input_shape, strides, padding)`: the input gradient
  of `conv2d` as a function in its own right, i.e. a transposed convolution. Its
  gradients are again the forward and backward-weights primitives.

`conv_general_dilated` is a drop-in for `lax.conv_general_dilated` (the hook of
`nnx.Conv`) that uses `conv2d` where it applies and `lax` elsewhere.

Both take `preferred_element_type=jnp.float32` for bfloat16 operands: the result is
then float32 (oneDNN's bfloat16 kernels accumulate in float32 and can store it), so
mixed-precision models hand float32 activations to their normalisation without a
conversion pass, as `lax.conv_general_dilated` does with the same argument.

These run only on the CPU backend. Inside a jit over several devices XLA
replicates a custom call's operands (correct, but each device computes the whole
batch), which is why `jaxmed.nn.conv_backend` picks them only for one device.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxmed.nn.onednn.library import load, target_name

Pads = tuple[tuple[int, int], tuple[int, int]]

_NHWC_HWIO = ("NHWC", "HWIO", "NHWC")

_SUPPORTED_DTYPES = (jnp.float32, jnp.bfloat16)


def _call(direction: str, result_shape: Sequence[int], dtype, a: jax.Array, b: jax.Array,
          strides: tuple[int, int], pads: Pads) -> jax.Array:
    load()
    return jax.ffi.ffi_call(target_name(direction), jax.ShapeDtypeStruct(tuple(result_shape), dtype))(
        a, b, stride_h=np.int64(strides[0]), stride_w=np.int64(strides[1]),
        pad_top=np.int64(pads[0][0]), pad_left=np.int64(pads[1][0]))


def output_shape(input_shape: Sequence[int], kernel_shape: Sequence[int], strides: tuple[int, int],
                 pads: Pads) -> tuple[int, int, int, int]:
    """NHWC output shape of a convolution of an NHWC input with an HWIO kernel."""
    batch, height, width, _ = input_shape
    spatial = [(size + low + high - k) // s + 1
               for size, (low, high), k, s in zip((height, width), pads, kernel_shape[:2], strides)]
    return (batch, spatial[0], spatial[1], kernel_shape[3])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv2d(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], pads: Pads, out_dtype) -> jax.Array:
    return _call("forward", output_shape(x.shape, kernel.shape, strides, pads), out_dtype, x, kernel, strides, pads)


def _conv2d_fwd(x, kernel, strides, pads, out_dtype):
    return _conv2d(x, kernel, strides, pads, out_dtype), (x, kernel)


def _conv2d_bwd(strides, pads, out_dtype, residuals, dy):
    x, kernel = residuals
    dy = dy.astype(x.dtype)  # the gradients are computed in the operands' dtype
    dx = _conv2d_transpose(dy, kernel, x.shape, strides, pads, x.dtype)
    dkernel = _call("backward_weights", kernel.shape, kernel.dtype, x, dy, strides, pads)
    return dx, dkernel


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _conv2d_transpose(y: jax.Array, kernel: jax.Array, input_shape: tuple[int, ...], strides: tuple[int, int],
                      pads: Pads, out_dtype) -> jax.Array:
    return _call("backward_data", input_shape, out_dtype, y, kernel, strides, pads)


def _conv2d_transpose_fwd(y, kernel, input_shape, strides, pads, out_dtype):
    return _conv2d_transpose(y, kernel, input_shape, strides, pads, out_dtype), (y, kernel)


def _conv2d_transpose_bwd(input_shape, strides, pads, out_dtype, residuals, g):
    # <conv2d_transpose(y, K), g> = <y, conv2d(g, K)>: bilinear, so each gradient is the other primitive.
    y, kernel = residuals
    g = g.astype(y.dtype)
    dy = _call("forward", y.shape, y.dtype, g, kernel, strides, pads)
    dkernel = _call("backward_weights", kernel.shape, kernel.dtype, g, y, strides, pads)
    return dy, dkernel


_conv2d_transpose.defvjp(_conv2d_transpose_fwd, _conv2d_transpose_bwd)


def _high_pads(input_shape: Sequence[int], kernel_shape: Sequence[int], strides: tuple[int, int],
               pads: Pads) -> tuple[int, int]:
    """The high padding oneDNN implies from the shapes (the kernel recomputes it): last window end - size."""
    out = output_shape(input_shape, kernel_shape, strides, pads)
    return tuple((o - 1) * s + k - size - low  # type: ignore[return-value]
                 for o, s, k, size, (low, _) in zip(out[1:3], strides, kernel_shape[:2], input_shape[1:3], pads))


def _trim(x: jax.Array, kernel_shape: Sequence[int], strides: tuple[int, int], pads: Pads) -> tuple[jax.Array, Pads]:
    """Drops input rows/columns no window reaches (possible with "VALID"), so no implied padding is negative."""
    high = _high_pads(x.shape, kernel_shape, strides, pads)
    x = x[:, :x.shape[1] + min(0, high[0]), :x.shape[2] + min(0, high[1])]
    return x, ((pads[0][0], max(0, high[0])), (pads[1][0], max(0, high[1])))


def _pads(padding, input_shape: Sequence[int], kernel_shape: Sequence[int], strides: tuple[int, int]) -> Pads:
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(input_shape[1:3], kernel_shape[:2], strides, padding)
    (top, bottom), (left, right) = padding
    return (int(top), int(bottom)), (int(left), int(right))


def conv2d(x_BxHxWxCin: jax.Array, kernel_HxWxIxO: jax.Array, strides: tuple[int, int] = (1, 1),
           padding: str | Sequence[tuple[int, int]] = "SAME", preferred_element_type=None) -> jax.Array:
    """`lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))`.

    Args:
      x_BxHxWxCin: input, float32 or bfloat16.
      kernel_HxWxIxO: kernel of the same dtype.
      strides: (s_h, s_w).
      padding: "SAME", "VALID" or ((top, bottom), (left, right)), non-negative.
      preferred_element_type: the result's dtype: None (the operands'), or float32.

    Raises:
      OneDnnUnavailable: the kernels cannot be built or loaded here.
      ValueError: unsupported ranks, channel counts, dtypes or negative padding.
    """
    out_dtype = _check(x_BxHxWxCin, kernel_HxWxIxO, preferred_element_type)
    strides = (int(strides[0]), int(strides[1]))
    pads = _pads(padding, x_BxHxWxCin.shape, kernel_HxWxIxO.shape, strides)
    if min(pads[0] + pads[1]) < 0:
        raise ValueError(f"negative padding {pads} is not supported")
    x, pads = _trim(x_BxHxWxCin, kernel_HxWxIxO.shape, strides, pads)
    return _conv2d(x, kernel_HxWxIxO, strides, pads, out_dtype)


def conv2d_transpose(y_BxOHxOWxO: jax.Array, kernel_HxWxIxO: jax.Array, input_shape: Sequence[int],
                     strides: tuple[int, int], pads: Pads, preferred_element_type=None) -> jax.Array:
    """The input gradient of `conv2d(x, kernel, strides, pads)` at cotangent `y`, as a function of (y, kernel).

    Returns an array of `input_shape` (the NHWC shape of the convolution's input), of
    `preferred_element_type` (None: the operands' dtype, or float32).

    Raises:
      ValueError: `y` is not that convolution's output shape, or the windows leave
        input rows or columns unread at the high end.
    """
    out_dtype = _check(y_BxOHxOWxO, kernel_HxWxIxO, preferred_element_type)
    strides = (int(strides[0]), int(strides[1]))
    expected = output_shape(input_shape, kernel_HxWxIxO.shape, strides, pads)
    if tuple(y_BxOHxOWxO.shape) != expected:
        raise ValueError(f"y has shape {y_BxOHxOWxO.shape}, but a convolution of {tuple(input_shape)} gives {expected}")
    if min(_high_pads(input_shape, kernel_HxWxIxO.shape, strides, pads)) < 0:
        raise ValueError(f"padding {pads} leaves the last input rows or columns of {tuple(input_shape)} unread")
    return _conv2d_transpose(y_BxOHxOWxO, kernel_HxWxIxO, tuple(int(d) for d in input_shape), strides, pads,
                             out_dtype)


def _check(x: jax.Array, kernel: jax.Array, preferred_element_type) -> jnp.dtype:
    """Validates the operands; returns the result dtype."""
    if x.ndim != 4 or kernel.ndim != 4:
        raise ValueError(f"oneDNN conv2d expects NHWC input and HWIO kernel, got shapes {x.shape} and {kernel.shape}")
    if x.dtype != kernel.dtype or x.dtype not in _SUPPORTED_DTYPES:
        raise ValueError(f"oneDNN conv2d needs float32 or bfloat16 operands of one dtype, got {x.dtype} and "
                         f"{kernel.dtype}")
    if not _computes_into(x.dtype, preferred_element_type):
        raise ValueError(f"oneDNN conv2d computes {x.dtype} operands into {x.dtype} or float32, not "
                         f"{jnp.dtype(preferred_element_type)}")
    return x.dtype if preferred_element_type is None else jnp.dtype(preferred_element_type)


def _computes_into(operand_dtype, preferred_element_type) -> bool:
    """Whether the kernels can store a result of `preferred_element_type` (None: the operands' dtype)."""
    return preferred_element_type is None or jnp.dtype(preferred_element_type) in (operand_dtype, jnp.float32)


def supports(lhs: jax.Array, rhs: jax.Array, lhs_dilation, rhs_dilation, dimension_numbers,
             feature_group_count: int, batch_group_count: int = 1, preferred_element_type=None) -> bool:
    """Whether a `lax.conv_general_dilated` call is one `conv2d` computes."""
    if lhs.ndim != 4 or rhs.ndim != 4 or lhs.dtype != rhs.dtype or lhs.dtype not in _SUPPORTED_DTYPES:
        return False
    if any(d != 1 for d in tuple(lhs_dilation or (1, 1)) + tuple(rhs_dilation or (1, 1))):
        return False
    if feature_group_count != 1 or batch_group_count != 1:
        return False
    if not _computes_into(lhs.dtype, preferred_element_type):
        return False
    wanted = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC_HWIO)
    return lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == wanted


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None, **kwargs):
    """`lax.conv_general_dilated`, computed by `conv2d` when `supports` says it can (else by lax itself)."""
    if supports(lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count, batch_group_count,
                preferred_element_type) and not kwargs.get("out_sharding"):
        pads = _pads(padding, lhs.shape, rhs.shape, tuple(window_strides))
        if min(pads[0] + pads[1]) >= 0:
            return conv2d(lhs, rhs, tuple(window_strides), pads, preferred_element_type)
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                    dimension_numbers, feature_group_count, batch_group_count, precision,
                                    preferred_element_type, **kwargs)
