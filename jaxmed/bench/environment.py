"""The record every JAX benchmark result carries: host, devices, library versions, XLA settings."""

from __future__ import annotations

import importlib.metadata
import os

import jax

from jaxmed import host_memory
from jaxmed.bench.host import host_record
from jaxmed.nn import onednn, resolve_conv_backend

LIBRARIES = ("jax", "jaxlib", "flax", "optax", "numpy", "onednn-cpu-gomp")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment_record() -> dict:
    """Host (CPU, cores, load, relevant env vars), devices, library versions, XLA and convolution settings.

    `conv_backend` is what "auto" resolves to on one device here (see `jaxmed.nn.conv_backend`),
    with the reason when oneDNN is unavailable.

    The compilation cache directory is recorded because a warm persistent cache turns
    `compile_s` into a cache read.
    """
    devices = jax.devices()
    return {
        **host_record(),
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "versions": {package: _version(package) for package in LIBRARIES},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "compilation_cache_dir": jax.config.jax_compilation_cache_dir,
        "default_matmul_precision": jax.config.jax_default_matmul_precision,
        "conv_backend": resolve_conv_backend("auto"),
        "onednn_unavailable": onednn.unavailable_reason() if jax.default_backend() == "cpu" else None,
        "keeps_freed_memory": host_memory.keeps_freed_memory(),
    }
