"""Builds, caches and loads the oneDNN convolution kernels, and registers them with XLA.

The C++ source (`conv2d.cc` and the headers it includes, shipped with the package) is
compiled once per fingerprint (sources, flags, jaxlib, oneDNN, the compiler's path
and `--version`) into `$XDG_CACHE_HOME/jaxmed/onednn/<fingerprint>/` (default
`~/.cache/...`; override the folder with `JAXMED_BUILD_CACHE`). It needs a C++17
compiler (`$CXX`, else `g++`) and oneDNN's headers and library, which the Linux
x86-64 install of jaxmed brings as the PyPI packages `onednn-cpu-gomp` and
`onednn-devel-cpu-gomp` (installed into the environment's `include/` and `lib/`).

The build folder holds, besides the library:

- `build.lock`: processes starting together build once; the others wait on this
  lock (`fcntl.flock`) and then load what the first one built.
- `FAILED`: the one-line reason a build failed (full compiler output in
  `build.log`). Later processes with the same fingerprint fall back at once with
  that reason instead of compiling again; editing a source, the flags or
  upgrading the compiler, oneDNN or jaxlib changes the fingerprint and so
  forgets it. `python -m jaxmed.nn.onednn` (the explicit build the setup script
  runs) retries a remembered failure: it is where someone who fixed the cause
  asks again.

The compiler gets `JAXMED_BUILD_TIMEOUT` seconds (default 300); a build that takes
longer is stopped and remembered as failed, like a compile error.

Nothing is compiled or loaded at import; `load()` does it on first use.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import jax
import jaxlib

from jaxmed.errors import UsageError

SOURCE = Path(__file__).with_name("conv2d.cc")
LIBRARY_NAME = "libjaxmed_onednn.so"
FAILURE_NAME = "FAILED"
LOG_NAME = "build.log"
LOCK_NAME = "build.lock"
TARGETS = ("forward", "backward_data", "backward_weights")
#: The per-channel sums kernel BatchNorm and GroupNorm use beside the convolutions (`jaxmed.nn.onednn.sums`).
SUMS_TARGET = "jaxmed_channel_sums"
#: Max pooling and its gradient (`jaxmed.nn.onednn.max_pool`).
MAX_POOL_TARGETS = ("jaxmed_max_pool_forward", "jaxmed_max_pool_backward")
DEFAULT_TIMEOUT_S = 300.0
#: How long `$CXX --version` may take: it only prints, so a compiler that hangs here is broken.
VERSION_TIMEOUT_S = 60.0

#: -O3 because GCC 12 at -O2 keeps narrow_conv.h's register sums in memory. jaxlib's and
#: oneDNN's headers are included as system headers (`-isystem`), so that -Werror=return-type
#: holds jaxmed's own code to it without failing on XLA's switch-only `operator<<`s.
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-fopenmp", "-Werror=return-type")


class OneDnnUnavailable(RuntimeError):
    """oneDNN kernels cannot be built or loaded here; the message says why, in one line."""


def target_name(direction: str) -> str:
    """The XLA custom-call target of one convolution direction (see `TARGETS`)."""
    return f"jaxmed_onednn_conv2d_{direction}"


def onednn_prefix() -> Path:
    """The environment holding oneDNN's `include/` and `lib/` (where its PyPI wheels put them).

    Raises:
      OneDnnUnavailable: the headers or the library are missing.
    """
    prefix = Path(sys.prefix)
    if not (prefix / "include" / "oneapi" / "dnnl" / "dnnl.hpp").is_file():
        raise OneDnnUnavailable(f"oneDNN headers not found under {prefix}/include "
                                "(pip install onednn-devel-cpu-gomp)")
    if not (prefix / "lib" / "libdnnl.so").exists():
        raise OneDnnUnavailable(f"oneDNN library not found in {prefix}/lib (pip install onednn-cpu-gomp)")
    return prefix


def _onednn_version(prefix: Path) -> str:
    header = (prefix / "include" / "oneapi" / "dnnl" / "dnnl_version.h").read_text()
    parts = [re.search(rf"#define DNNL_VERSION_{part}\s+(\d+)", header) for part in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(match.group(1) if match else "?" for match in parts)


def _compiler() -> str:
    compiler = os.environ.get("CXX", "g++")
    path = shutil.which(compiler)
    if path is None:
        raise OneDnnUnavailable(f"no C++ compiler: {compiler!r} is not on PATH (set CXX)")
    return path


def _compiler_version(compiler: str) -> str:
    """The first line of `compiler --version`: an upgrade in place keeps the path, not this."""
    try:
        result = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise OneDnnUnavailable(f"{compiler} --version failed: {error}") from None
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise OneDnnUnavailable(f"{compiler} --version failed (exit status {result.returncode})")
    return lines[0]


def _timeout_s() -> float:
    """The compiler's time limit: `JAXMED_BUILD_TIMEOUT` seconds, else `DEFAULT_TIMEOUT_S`.

    Raises:
      UsageError: the variable is not a positive number.
    """
    text = os.environ.get("JAXMED_BUILD_TIMEOUT", "")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise UsageError(f"JAXMED_BUILD_TIMEOUT must be a positive number of seconds, got {text!r}")
    return seconds


def _sources() -> list[Path]:
    """The compiled file and the headers beside it that it includes: all of them make the build."""
    return [SOURCE, *sorted(SOURCE.parent.glob("*.h"))]


def _fingerprint(prefix: Path, compiler: str, compiler_version: str) -> str:
    """Names the build: changes with any source or header, the flags, jaxlib, oneDNN or the compiler."""
    parts = [*(path.read_text() for path in _sources()), *FLAGS, jaxlib.__version__, _onednn_version(prefix),
             str(prefix), compiler, compiler_version]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def cache_root() -> Path:
    """The folder holding one build folder per fingerprint (`JAXMED_BUILD_CACHE` overrides it)."""
    if "JAXMED_BUILD_CACHE" in os.environ:
        return Path(os.environ["JAXMED_BUILD_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jaxmed" / "onednn"


def _build_folder() -> tuple[Path, str, Path]:
    """(oneDNN prefix, compiler path, this fingerprint's build folder)."""
    prefix = onednn_prefix()
    compiler = _compiler()
    return prefix, compiler, cache_root() / _fingerprint(prefix, compiler, _compiler_version(compiler))


def remembered_failure() -> str | None:
    """The reason an earlier build with today's fingerprint failed, None if none did.

    Raises:
      OneDnnUnavailable: no compiler or no oneDNN (nothing to fingerprint).
    """
    failure = _build_folder()[2] / FAILURE_NAME
    return failure.read_text().strip() if failure.is_file() else None


def _raise_if_remembered(folder: Path) -> None:
    failure = folder / FAILURE_NAME
    if failure.is_file():
        reason = failure.read_text().strip()
        raise OneDnnUnavailable(f"{reason} (remembered in {failure}; `python -m jaxmed.nn.onednn` retries)")


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Holds an exclusive lock on `lock_path`; the kernel drops it if this process dies."""
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_compiler(command: list[str], timeout_s: float) -> str | None:
    """Runs the compiler; None when it succeeded, else its whole output (the one-line reason first)."""
    try:
        # Its own session, so a timeout stops the driver's children (cc1plus, ld) too.
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
    except OSError as error:
        return f"cannot run the compiler: {error}"
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return (f"the compiler took longer than {timeout_s:g} s (set JAXMED_BUILD_TIMEOUT to allow more)\n"
                f"{output}")
    if process.returncode == 0:
        return None
    first_error = next((line for line in output.splitlines() if "error" in line), output.strip()[:300])
    return f"compiler exit status {process.returncode}: {first_error}\n{output}"


def _compile(compiler: str, prefix: Path, folder: Path) -> None:
    """Compiles into `folder`; on failure remembers the reason beside it and raises it."""
    library = folder / LIBRARY_NAME
    # Compile to a private name, then rename: a process that reads the cache without the
    # lock never loads a half-written file.
    fd, partial = tempfile.mkstemp(suffix=".so.partial", dir=folder)
    os.close(fd)
    command = [compiler, *FLAGS, "-isystem", jax.ffi.include_dir(), "-isystem", str(prefix / "include"),
               str(SOURCE), f"-L{prefix / 'lib'}", "-ldnnl", f"-Wl,-rpath,{prefix / 'lib'}", "-o", partial]
    try:
        failure = _run_compiler(command, _timeout_s())
        if failure is None:
            os.replace(partial, library)
            for stale in (FAILURE_NAME, LOG_NAME):  # an earlier failure's, now fixed
                (folder / stale).unlink(missing_ok=True)
            return
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    reason_line, _, output = failure.partition("\n")
    reason = f"compiling {SOURCE.name} failed: {reason_line}"
    (folder / LOG_NAME).write_text(f"{' '.join(command)}\n{output}")
    (folder / FAILURE_NAME).write_text(reason + "\n")
    raise OneDnnUnavailable(f"{reason} (compiler output in {folder / LOG_NAME})")


def build(*, retry_failed: bool = False) -> Path:
    """Compiles the kernels unless a matching build is cached; returns the shared library's path.

    Concurrent callers build once: the others wait for the first one's result.

    Args:
      retry_failed: compile again even if a build with this fingerprint failed before
        (by default that failure is raised again at once).

    Returns:
      The path of the shared library.

    Raises:
      OneDnnUnavailable: no compiler, no oneDNN, or the compiler failed (now or, remembered, before).
      UsageError: `JAXMED_BUILD_TIMEOUT` is not a positive number.
    """
    prefix, compiler, folder = _build_folder()
    library = folder / LIBRARY_NAME
    if library.is_file():
        return library
    if not retry_failed:
        _raise_if_remembered(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder / LOCK_NAME):
        if library.is_file():  # built while this process waited for the lock
            return library
        if not retry_failed:
            _raise_if_remembered(folder)  # failed while this process waited for the lock
        _compile(compiler, prefix, folder)
    return library


@functools.cache
def _load_once() -> Path | OneDnnUnavailable:
    try:
        path = build()
        library = ctypes.CDLL(str(path))
    except OneDnnUnavailable as error:
        return error
    except OSError as error:
        return OneDnnUnavailable(f"cannot load the oneDNN kernels: {error}")
    for name in [*map(target_name, TARGETS), SUMS_TARGET, *MAX_POOL_TARGETS]:
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(library, name)), platform="cpu")
    return path


def load() -> Path:
    """Builds (if needed) and loads the kernels, and registers them as XLA:CPU custom calls.

    Done once per process; later calls return the library's path at once, or raise
    the first call's error again without trying a second time.

    Returns:
      The path of the loaded shared library.

    Raises:
      OneDnnUnavailable: see `build`, or the library does not load.
      UsageError: `JAXMED_BUILD_TIMEOUT` is not a positive number (a setting to fix, not a fallback).
    """
    result = _load_once()
    if isinstance(result, OneDnnUnavailable):
        raise OneDnnUnavailable(str(result))
    return result


def unavailable_reason() -> str | None:
    """None if the kernels load here, else the one-line reason they do not (see `load`)."""
    try:
        load()
    except OneDnnUnavailable as error:
        return str(error)
    return None


def winograd_3x3_tile(batch: int, height: int, width: int, channels: int, outputs: int, direction: int) -> int:
    """The side m of the F(m x m, 3x3) kernels that run a float32 3x3 stride-1 "SAME" call, 0 where oneDNN does.

    The library's own rule (`winograd_3x3.h`), for `batch` images of height x width x channels
    into `outputs` channels; `direction` is 0 forward, 1 input gradient, 2 kernel gradient.

    Raises:
      OneDnnUnavailable: the kernels cannot be built or loaded here.
    """
    function = ctypes.CDLL(str(load())).jaxmed_winograd_3x3_tile
    function.argtypes = [ctypes.c_int64] * 5 + [ctypes.c_int]
    function.restype = ctypes.c_int
    return function(batch, height, width, channels, outputs, direction)


# The most channels (on either side) of a bfloat16 3x3 stride-1 layer that runs faster on the
# float32 Winograd kernels than on oneDNN's bfloat16 ones without AMX (see below).
WINOGRAD_OVER_BFLOAT16_MAX_CHANNELS = 128


@functools.cache  # asked once per layer when models are built; the answer is fixed for the process
def widens_to_winograd_3x3(in_features: int, out_features: int) -> bool:
    """Whether a bfloat16 3x3 stride-1 "SAME" layer of these channels runs faster in float32 here.

    True where `winograd_3x3_tile` takes every direction of the layer, the CPU has no AMX
    and neither channel count exceeds `WINOGRAD_OVER_BFLOAT16_MAX_CHANNELS`: there F(4x4, 3x3)'s
    quarter of the products beats oneDNN's bfloat16 kernels (AVX512-BF16 dot products, at most
    twice the float32 rate), and widening bfloat16 operands is exact. From 256 channels, on
    the small maps such layers see (resnet18's 8x8 and 4x4), oneDNN's bfloat16 kernels win
    (measured forward plus both gradients at batch 32).

    Raises:
      OneDnnUnavailable: the kernels cannot be built or loaded here.
    """
    if "amx" in (cpu_isa() or "") or max(in_features, out_features) > WINOGRAD_OVER_BFLOAT16_MAX_CHANNELS:
        return False
    return all(winograd_3x3_tile(1, 8, 8, in_features, out_features, direction) for direction in range(3))


def cpu_isa() -> str | None:
    """The instruction set oneDNN's kernels use here (e.g. "avx512_core"), None if oneDNN is not loaded.

    It honours `ONEDNN_MAX_CPU_ISA`, as jaxmed's own kernels do (`simd.h`).
    """
    if not isinstance(_load_once(), Path):
        return None
    prefix = onednn_prefix()
    value = ctypes.CDLL(str(prefix / "lib" / "libdnnl.so")).dnnl_get_effective_cpu_isa()
    header = (prefix / "include" / "oneapi" / "dnnl" / "dnnl_types.h").read_text()
    names: dict[int, str] = {}
    for name, number in re.findall(r"\bdnnl_cpu_isa_(\w+)\s*=\s*(0x[0-9a-fA-F]+|\d+)", header):
        names.setdefault(int(number, 0), name)  # the ISAs come first, then the hints that reuse their numbers
    return names.get(value, hex(value))
