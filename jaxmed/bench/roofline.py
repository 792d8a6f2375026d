"""The ceilings layer speeds are compared with, measured in the same run on the same device.

- Compute: a large square matrix product (2 n^3 floating-point operations), the best
  the backend's dense kernels do. Convolutions are reported as a fraction of the
  float32 one (the issue's measure); the bfloat16 one is recorded alongside.
- Memory: a streaming read and write of a buffer much larger than the caches
  (x = x + 1 in place, float32; counted as 2 x size bytes), the practical copy
  bandwidth. In place (the buffer donated) because a fresh 256 MB output every call
  would measure the kernel's page faults on new memory (4-5x slower on this CPU),
  not the memory system. Pooling layers are reported as a fraction of it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmed.bench.stats import summarize_ms, time_samples
from jaxmed.bench.timing import time_jitted

MATMUL_SIZE = 2048
COPY_MEGABYTES = 256  # well above the last-level cache of current CPUs (and any GPU's L2)


def matmul_roofline(dtype: str = "float32", size: int = MATMUL_SIZE, *, warmup: int = 1, repeats: int = 5) -> dict:
    """GFLOP/s of a (size x size) @ (size x size) product in `dtype` (median of `repeats`).

    Returns:
      {"dtype", "size", "gflop", "gflops", "median_ms", ...timing spread}.
    """
    keys = jax.random.split(jax.random.key(0))
    a = jax.random.normal(keys[0], (size, size), jnp.float32).astype(dtype)
    b = jax.random.normal(keys[1], (size, size), jnp.float32).astype(dtype)
    timing = time_jitted(jax.jit(jnp.matmul), a, b, warmup=warmup, repeats=repeats)
    gflop = 2 * size**3 / 1e9
    return {"dtype": dtype, "size": size, "gflop": gflop, "gflops": gflop / (timing["median_ms"] / 1e3), **timing}


def copy_bandwidth(megabytes: int = COPY_MEGABYTES, *, warmup: int = 1, repeats: int = 5) -> dict:
    """GB/s of a streaming read + write (x = x + 1 in place over a float32 buffer of `megabytes`).

    Returns:
      {"megabytes", "bytes_moved", "gbs", "median_ms", ...timing spread}.
    """
    increment = jax.jit(lambda v: v + 1.0, donate_argnums=0)
    buffer = [jnp.zeros((megabytes * 2**20 // 4,), jnp.float32)]

    def step():
        buffer[0] = increment(buffer[0])
        return buffer[0]

    size = buffer[0].size
    samples, first_s = time_samples(step, jax.block_until_ready, warmup=warmup, repeats=repeats)
    timing = {**summarize_ms(samples), "first_call_ms": 1e3 * first_s}
    bytes_moved = 2 * size * 4
    return {"megabytes": megabytes, "bytes_moved": bytes_moved, "gbs": bytes_moved / 1e9 / (timing["median_ms"] / 1e3),
            **timing}
