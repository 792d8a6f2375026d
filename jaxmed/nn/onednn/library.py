"""Builds, caches and loads the oneDNN convolution kernels, and registers them with XLA.

The C++ source (`conv2d.cc` and the headers it includes, shipped with the package) is
compiled once per (sources, flags, jaxlib, oneDNN, compiler) combination into
`$XDG_CACHE_HOME/jaxmed/onednn/<hash>/` (default `~/.cache/...`; override the
folder with `JAXMED_BUILD_CACHE`). It needs a C++17 compiler (`$CXX`, else
`g++`) and oneDNN's headers and library, which the Linux x86-64 install of
jaxmed brings as the PyPI packages `onednn-cpu-gomp` and `onednn-devel-cpu-gomp`
(installed into the environment's `include/` and `lib/`). Building takes a few
seconds; `python -m jaxmed.nn.onednn` does it ahead of time (the setup script
runs it) and reports what it found.

Nothing is compiled or loaded at import; `load()` does it on first use.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import jaxlib

SOURCE = Path(__file__).with_name("conv2d.cc")
LIBRARY_NAME = "libjaxmed_onednn.so"
TARGETS = ("forward", "backward_data", "backward_weights")
#: The per-channel sums kernel BatchNorm uses beside the convolutions (`jaxmed.nn.onednn.sums`).
SUMS_TARGET = "jaxmed_channel_sums"


class OneDnnUnavailable(RuntimeError):
    """oneDNN kernels cannot be built or loaded here; the message says why, in one line."""


def target_name(direction: str) -> str:
    """The XLA custom-call target of one convolution direction (see `TARGETS`)."""
    return f"jaxmed_onednn_conv2d_{direction}"


def _onednn_prefix() -> Path:
    """The environment holding oneDNN's `include/` and `lib/` (where its PyPI wheels put them)."""
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


#: Compiler flags; -O3 because GCC 12 at -O2 keeps narrow_conv.h's register sums in memory (2x slower).
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-fopenmp", "-Wno-return-type")


def _sources() -> list[Path]:
    """The compiled file and the headers beside it that it includes: all of them make the build."""
    return [SOURCE, *sorted(SOURCE.parent.glob("*.h"))]


def _fingerprint(prefix: Path, compiler: str) -> str:
    """Names the build: changes with any source or header, the flags, jaxlib, oneDNN or the compiler."""
    parts = [*(path.read_text() for path in _sources()), *FLAGS, jaxlib.__version__, _onednn_version(prefix),
             str(prefix), compiler]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _cache_root() -> Path:
    if "JAXMED_BUILD_CACHE" in os.environ:
        return Path(os.environ["JAXMED_BUILD_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jaxmed" / "onednn"


def build() -> Path:
    """Compiles the kernels if no matching build is cached; returns the shared library's path.

    Raises:
      OneDnnUnavailable: no compiler, no oneDNN, or the compiler failed.
    """
    prefix = _onednn_prefix()
    compiler = _compiler()
    library = _cache_root() / _fingerprint(prefix, compiler) / LIBRARY_NAME
    if library.is_file():
        return library
    library.parent.mkdir(parents=True, exist_ok=True)
    # Compile to a private name, then rename: concurrent builders never load a half-written file.
    fd, partial = tempfile.mkstemp(suffix=".so.partial", dir=library.parent)
    os.close(fd)
    command = [compiler, *FLAGS, f"-I{jax.ffi.include_dir()}", f"-I{prefix / 'include'}", str(SOURCE),
               f"-L{prefix / 'lib'}", "-ldnnl", f"-Wl,-rpath,{prefix / 'lib'}", "-o", partial]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            first_error = next((line for line in result.stderr.splitlines() if "error" in line), result.stderr.strip())
            raise OneDnnUnavailable(f"compiling {SOURCE.name} failed: {first_error}")
        os.replace(partial, library)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
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
    for name in [*map(target_name, TARGETS), SUMS_TARGET]:
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(library, name)), platform="cpu")
    return path


def load() -> Path:
    """Builds (if needed) and loads the kernels, and registers them as XLA:CPU custom calls.

    Done once per process; later calls return the library's path at once, or raise
    the first call's error again without trying a second time.

    Raises:
      OneDnnUnavailable: see `build`, or the library does not load.
    """
    result = _load_once()
    if isinstance(result, OneDnnUnavailable):
        raise OneDnnUnavailable(str(result))
    return result


def unavailable_reason() -> str | None:
    """None if the kernels load here, else the one-line reason they do not."""
    try:
        load()
    except OneDnnUnavailable as error:
        return str(error)
    return None
