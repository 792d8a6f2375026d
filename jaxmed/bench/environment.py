"""The record every JAX benchmark result carries: host, devices, library versions, XLA settings."""

from __future__ import annotations

import importlib.metadata
import os

import jax

from jaxmed.bench.host import host_record

LIBRARIES = ("jax", "jaxlib", "flax", "optax", "numpy")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment_record() -> dict:
    """Host (CPU, cores, load, relevant env vars), devices, library versions and XLA settings.

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
    }
