"""Timing jitted JAX functions with the suite's method (`jaxmed.bench.stats`).

JAX dispatches asynchronously, so every sample ends with `jax.block_until_ready` on
the last result; the first call (tracing and compilation) is timed on its own.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from jaxmed.bench.stats import summarize_ms, time_samples


def time_jitted(fn: Callable, *args, warmup: int = 1, repeats: int = 5, min_sample_s: float = 0.0) -> dict:
    """Median and spread of `fn(*args)` in ms, after compiling and `warmup` untimed calls.

    Args:
      fn: a jitted function (not donating its arguments: they are reused every call).
      *args: its arguments.
      warmup: untimed calls after the first.
      repeats: timed samples.
      min_sample_s: group fast calls so one sample lasts at least this long.

    Returns:
      `summarize_ms`'s fields plus "first_call_ms" (compilation included).
    """
    samples, first_s = time_samples(lambda: fn(*args), jax.block_until_ready, warmup=warmup, repeats=repeats,
                                    min_sample_s=min_sample_s)
    return {**summarize_ms(samples), "first_call_ms": 1e3 * first_s}
