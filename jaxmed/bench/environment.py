"""The record every JAX benchmark result carries: host, devices, library versions, XLA settings."""

from __future__ import annotations

import importlib.metadata
import os

import jax

from jaxmed import host_memory
from jaxmed.bench.host import host_record
from jaxmed.nn.conv_backend import describe as describe_conv_backend

LIBRARIES = ("jax", "jaxlib", "flax", "optax", "numpy", "onednn-cpu-gomp")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment_record() -> dict:
    """Host (CPU, cores, load, relevant env vars), devices, library versions, XLA and convolution settings.

    `conv_backend` is what "auto" resolves to on one device here, `conv_backend_reason` why,
    and `onednn_library` / `onednn_isa` which kernel build ran (see `jaxmed.nn.conv_backend.describe`).

    The compilation cache directory is recorded because a warm persistent cache turns
    `compile_s` into a cache read.
    """
    devices = jax.devices()
    conv_backend = describe_conv_backend()
    return {
        **host_record(),
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "versions": {package: _version(package) for package in LIBRARIES},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "compilation_cache_dir": jax.config.jax_compilation_cache_dir,
        "default_matmul_precision": jax.config.jax_default_matmul_precision,
        "conv_backend": conv_backend["backend"],
        "conv_backend_reason": conv_backend["reason"],
        "onednn_library": conv_backend["cache"],
        "onednn_isa": conv_backend["isa"],
        "keeps_freed_memory": host_memory.keeps_freed_memory(),
    }
