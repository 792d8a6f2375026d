"""The timing method every jaxmed benchmark and peer uses: warm up, then repeat and take the median.

Standard library only: the PyTorch and TensorFlow peers (`benchmarks/peers/`) run in
an environment without JAX and load this file by its path, so all three frameworks
are timed by the same code.

A *sample* is one timed run of `calls_per_sample` back-to-back calls followed by one
synchronisation; its time divided by the call count is one observation. Fast calls are
grouped (like `timeit.Timer.autorange`) so that timer resolution and dispatch jitter do
not dominate; slow calls are timed one by one.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation (numpy's default method)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    lower, upper = math.floor(position), math.ceil(position)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def summarize_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Median and spread of per-call times, in milliseconds.

    Returns:
      {"median_ms", "p10_ms", "p90_ms", "iqr_ms", "min_ms", "max_ms", "mean_ms", "samples"}.
    """
    ms = [1e3 * s for s in seconds]
    return {
        "median_ms": statistics.median(ms),
        "p10_ms": percentile(ms, 10),
        "p90_ms": percentile(ms, 90),
        "iqr_ms": percentile(ms, 75) - percentile(ms, 25),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "mean_ms": statistics.fmean(ms),
        "samples": len(ms),
    }


def time_samples(call: Callable[[], object], synchronize: Callable[[object], object], *, warmup: int = 1,
                 repeats: int = 5, min_sample_s: float = 0.0) -> tuple[list[float], float]:
    """Times `call` after `warmup` untimed runs; returns (seconds per call of each sample, first call's seconds).

    Args:
      call: runs the work once (may return before the work is done, like an async dispatch).
      synchronize: waits until the work behind a result of `call` is done (e.g.
        `jax.block_until_ready`); for synchronous frameworks, a no-op.
      warmup: untimed runs after the first (the first call, which usually compiles, is
        always made and timed separately).
      repeats: number of timed samples.
      min_sample_s: group calls so that one sample lasts at least this long. Each call
        of a group is waited for before the next starts: with asynchronous dispatch the
        next call would otherwise start while the last one's kernels still run, and
        overlapping calls measured 23 % slower per call than one after another (a
        1-ms convolution gradient, dcgan128's image layer, on 2 cores).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    start = time.perf_counter()
    synchronize(call())
    first_s = time.perf_counter() - start
    once_s = first_s
    for _ in range(warmup):
        start = time.perf_counter()
        synchronize(call())
        once_s = time.perf_counter() - start
    calls_per_sample = max(1, math.ceil(min_sample_s / max(once_s, 1e-9))) if min_sample_s > 0 else 1
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls_per_sample):
            synchronize(call())
        samples.append((time.perf_counter() - start) / calls_per_sample)
    return samples, first_s


def step_fields(batch_size: int, timing: dict[str, float]) -> dict[str, float]:
    """The throughput fields of every train-step result (jaxmed's and the peers'), from `summarize_ms`."""
    return {
        "images_per_s": batch_size / (timing["median_ms"] / 1e3),
        "step_ms": timing["median_ms"],
        **{f"step_ms_{name}": timing[f"{name}_ms"] for name in ("p10", "p90", "iqr", "min", "max", "mean")},
    }
