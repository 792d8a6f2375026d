"""Which kernels compute the models' convolutions: XLA's own, or oneDNN's on the CPU.

The choice is made once, when a model is built, and lives in the model's static
structure (so a jitted step never silently keeps a stale choice):

- "xla": `lax.conv_general_dilated` and `jaxmed.nn.upsample_conv`'s sub-pixel forms;
  what every backend can run.
- "onednn": `jaxmed.nn.onednn` (XLA:CPU custom calls). Same functions and
  parameters, 2-5x faster per convolution on the dcgan128 shapes on this
  project's 2-core CPU (`jaxmed bench conv-pool`).
- "auto" (the default): "onednn" when JAX runs on the CPU over one device and the
  kernels build here; else "xla". Over several devices XLA would replicate each
  custom call's operands and compute the whole batch on every device, so the
  sharded path stays on XLA; on a GPU XLA calls cuDNN anyway.

Switching backends changes no parameter, so a checkpoint trained with one
resumes with the other.

Reduced precision differs by backend (`mixed_precision_dtypes`): on oneDNN, bfloat16
convolutions return float32 and the normalisation after them runs in float32, as
PyTorch's autocast leaves it. Why: oneDNN's bfloat16 kernels accumulate in float32
anyway, while XLA:CPU's bfloat16 elementwise and reduction work cost the dcgan128
bf16 step more thread time than all its convolutions (241 against 163 ms per step);
with float32 outputs the step ran at 185-196 instead of 141-145 images/s. On XLA's
backend (GPU, TPU, several devices) everything stays in the computation dtype.
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
    if backend == "xla" or jax.default_backend() != "cpu" or num_devices != 1:
        return "xla"
    reason = onednn.unavailable_reason()
    if reason is not None:
        _warn_unavailable(reason)
        return "xla"
    return "onednn"


def conv_general_dilated_for(backend: Literal["xla", "onednn"]) -> Callable:
    """The `conv_general_dilated` hook of `nnx.Conv` for a resolved backend."""
    return onednn.conv_general_dilated if backend == "onednn" else lax.conv_general_dilated


def mixed_precision_dtypes(dtype, backend: Literal["xla", "onednn"]) -> tuple:
    """(convolution `preferred_element_type`, BatchNorm `dtype`) for convolutions computing in `dtype`.

    (float32, None) for a reduced `dtype` on oneDNN (see the module docstring); else
    (None, dtype): outputs and normalisation in the computation dtype.
    """
    if dtype is not None and backend == "onednn":
        return jnp.float32, None
    return None, dtype
