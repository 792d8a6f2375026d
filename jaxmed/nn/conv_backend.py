"""Which kernels compute the models' convolutions: XLA's own, or oneDNN's on the CPU.

The choice is made once, when a model is built, and lives in the model's static
structure (so a jitted step never silently keeps a stale choice):

- "xla": `lax.conv_general_dilated` and `jaxmed.nn.upsample_conv`'s sub-pixel forms;
  what every backend can run.
- "onednn": `jaxmed.nn.onednn` (XLA:CPU custom calls). Same functions and
  parameters, several times faster per convolution than XLA:CPU's own kernels
  on the dcgan128 shapes (`jaxmed bench conv-pool` measures it).
- "auto" (the default): "onednn" when JAX runs on the CPU over one device and the
  kernels build here; else "xla". Over several devices XLA would replicate each
  custom call's operands and compute the whole batch on every device, so the
  sharded path stays on XLA; on a GPU XLA calls cuDNN anyway. `describe()` says
  which one "auto" picks here and why.

Switching backends changes no parameter, so a checkpoint trained with one
resumes with the other.

Reduced precision differs by backend (`mixed_precision_dtypes`): on oneDNN, bfloat16
convolutions return float32 and the normalisation after them runs in float32, as
PyTorch's autocast leaves it, because oneDNN's bfloat16 kernels accumulate in float32
anyway while XLA:CPU's bfloat16 elementwise and reduction work costs more than it
saves. Dense layers compute in float32 there too (`dense_dtype`): XLA:CPU runs a
bfloat16 `dot_general` in float32 anyway, so a bfloat16 dense layer would only add
conversions and a transposed bfloat16 copy of its weight gradient. On XLA's backend (GPU,
TPU, several devices) everything stays in the computation dtype.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax

from jaxmed.nn import onednn

ConvBackend = Literal["auto", "xla", "onednn"]
CONV_BACKENDS = ("auto", "xla", "onednn")


@functools.cache
def _warn_unavailable(reason: str) -> None:
    warnings.warn(f"conv_backend=auto falls back to XLA's convolutions: {reason}", RuntimeWarning, stacklevel=3)


def resolve_conv_backend(backend: ConvBackend, num_devices: int = 1) -> Literal["xla", "onednn"]:
    """The concrete backend for `backend` on a computation spanning `num_devices` devices.

    Raises:
      ValueError: unknown backend name.
      jaxmed.nn.onednn.OneDnnUnavailable: "onednn" asked for where it cannot run.
    """
    if backend not in CONV_BACKENDS:
        raise ValueError(f"conv_backend must be one of {', '.join(CONV_BACKENDS)}, got {backend!r}")
    if backend == "onednn":
        if jax.default_backend() != "cpu":
            raise onednn.OneDnnUnavailable(f"oneDNN kernels run on the CPU backend only, not {jax.default_backend()}")
        onednn.load()
        return "onednn"
    if backend == "xla":
        return "xla"
    choice, reason = _auto(num_devices)
    if choice == "xla" and jax.default_backend() == "cpu" and num_devices == 1:
        _warn_unavailable(reason)
    return choice


def _auto(num_devices: int) -> tuple[Literal["xla", "onednn"], str]:
    """What "auto" resolves to on `num_devices` devices, and why, in one line."""
    if jax.default_backend() != "cpu":
        return "xla", f"JAX runs on {jax.default_backend()}, where XLA calls the vendor's convolutions"
    if num_devices != 1:
        return "xla", f"{num_devices} devices: XLA would replicate each oneDNN custom call's operands"
    reason = onednn.unavailable_reason()
    if reason is not None:
        return "xla", f"oneDNN kernels unavailable: {reason}"
    return "onednn", "the oneDNN kernels built and loaded on the CPU"


def describe(num_devices: int = 1) -> dict:
    """Which convolutions "auto" uses here and why, for version reports and benchmark records.

    On one CPU device this loads the oneDNN kernels, building them the first time
    (see `jaxmed.nn.onednn.library`).

    Args:
      num_devices: devices the computation spans.

    Returns:
      {"backend": "onednn" or "xla", "reason": one line, "cache": the kernel library
      (or the folder it would be built in), "isa": oneDNN's instruction set, None on XLA}.
    """
    backend, reason = _auto(num_devices)
    library = onednn.load() if backend == "onednn" else onednn.cache_root()
    return {"backend": backend, "reason": reason, "cache": str(library),
            "isa": onednn.cpu_isa() if backend == "onednn" else None}


def conv_general_dilated_for(backend: Literal["xla", "onednn"]) -> Callable:
    """The `conv_general_dilated` hook of `nnx.Conv` for a resolved backend."""
    return onednn.conv_general_dilated if backend == "onednn" else lax.conv_general_dilated


def convolution_dtype(dtype, backend: Literal["xla", "onednn"], in_features: int, out_features: int, kernel: int,
                      stride: int):
    """The dtype a convolution layer (square kernel, "SAME" padding) computes in, for a model computing in `dtype`.

    float32 instead of a reduced `dtype` where oneDNN's backend would run the layer on jaxmed's
    3x3 Winograd kernels in float32 faster than on oneDNN's bfloat16 ones
    (`jaxmed.nn.onednn.widens_to_winograd_3x3`): the layer then reads the float32 activations
    the normalisation before it writes, without a conversion; else `dtype`.
    """
    if (dtype is None or jnp.dtype(dtype) == jnp.float32 or backend != "onednn" or (kernel, stride) != (3, 1)
            or not onednn.widens_to_winograd_3x3(in_features, out_features)):
        return dtype
    return jnp.float32


def dense_dtype(dtype, backend: Literal["xla", "onednn"]):
    """The dtype a dense layer computes in, for a model computing in `dtype` on the resolved `backend`.

    float32 instead of a reduced `dtype` on oneDNN's backend (XLA:CPU), which upcasts a
    bfloat16 `dot_general`'s operands to float32 and computes it in float32 anyway (see the
    module docstring); else `dtype`. Parameters are float32 either way.

    Args:
      dtype: the model's computation dtype (None: float32).
      backend: the resolved convolution backend.

    Returns:
      The `dtype` argument of the model's `nnx.Linear` layers.
    """
    if dtype is not None and backend == "onednn":
        return jnp.float32
    return dtype


def mixed_precision_dtypes(dtype, backend: Literal["xla", "onednn"]) -> tuple:
    """(convolution `preferred_element_type`, BatchNorm `dtype`) for convolutions computing in `dtype`.

    (float32, None) for a reduced `dtype` on oneDNN (see the module docstring); else
    (None, dtype): outputs and normalisation in the computation dtype.
    """
    if dtype is not None and backend == "onednn":
        return jnp.float32, None
    return None, dtype
