"""What machine a benchmark ran on, how loaded it was, and how much memory the process used.

Standard library only, like `jaxmed.bench.stats`, so the peers in `benchmarks/peers/`
record their host the same way. Linux-first: where /proc is missing the fields are None.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from pathlib import Path

# Environment variables that change how fast numerical code runs (thread pools, kernels, XLA).
RELEVANT_ENV_PREFIXES = ("XLA_", "JAX_", "TF_", "OMP_", "MKL_", "OPENBLAS_", "KMP_", "DNNL_", "ONEDNN_",
                         "TORCH_", "CUDA_VISIBLE_DEVICES", "TPU_", "MALLOC_", "JAXMED_")


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (or `platform.processor()`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _cpu_flags() -> list[str]:
    """The vector / matrix instruction sets the CPU reports (those that matter to conv kernels)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    except OSError:
        pass
    return []


def memory_total_gb() -> float | None:
    """Physical memory in GB from /proc/meminfo."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (runnable processes; compare with `usable_cores`)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def relevant_environment() -> dict[str, str]:
    """The environment variables that affect numerical speed (XLA_FLAGS, thread counts, ...)."""
    return {key: value for key, value in sorted(os.environ.items()) if key.startswith(RELEVANT_ENV_PREFIXES)}


def current_rss_mb() -> float | None:
    """This process's resident set size now, in MB (from /proc/self/statm)."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 1024**2


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (`getrusage` max RSS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KB on Linux


def host_record() -> dict:
    """The host a benchmark ran on, and its load at the time of the call."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cpu_flags": _cpu_flags(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gb": memory_total_gb(),
        "load_average": load_average(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "env": relevant_environment(),
    }
