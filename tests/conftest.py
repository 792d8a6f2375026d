"""Test-wide settings: CPU only, strict rank promotion, caches kept out of the user's home.

Many tests compile the same small programs (a tiny DCGAN or classifier step) from
different jit objects; XLA's persistent cache, keyed by the program itself, lets
them compile once per session.

Every cache that jaxmed, JAX or matplotlib would otherwise keep under ~/.cache is
pointed into this session's folders through environment variables, set here before
any test imports jaxmed, so the `jaxmed` subprocesses that some tests start inherit
them too: the XLA compilation cache ($JAXMED_XLA_CACHE, which the CLI reads), the
data cache ($JAXMED_DATA_CACHE) and matplotlib's font cache ($MPLCONFIGDIR). The
oneDNN kernels' build cache is the exception, see `_kernel_build_cache`.

Test tiers: `-m "not slow"` is the fast tier; the markers are registered in
pyproject.toml.
"""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path


def _session_folder(prefix: str) -> str:
    """A temporary folder removed when the test process exits."""
    folder = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _kernel_build_cache() -> str:
    """Where the oneDNN kernels are built: inside the Python environment running the tests.

    Building them takes 30-60 s, so a fresh folder per session would rebuild them on
    every run; the environment's own folder persists, belongs to the user, and is what
    the build depends on (its oneDNN, jaxlib and compiler; the build's name includes
    the environment's path), so deleting the environment deletes the build with it.
    Where the environment is read-only, the build goes to a session folder instead.
    """
    environment = Path(sys.prefix)
    if os.access(environment, os.W_OK):
        return str(environment / "var" / "cache" / "jaxmed-tests" / "onednn")
    return _session_folder("jaxmed-test-build-cache-")


os.environ.setdefault("JAX_PLATFORMS", "cpu")
_XLA_CACHE = _session_folder("jaxmed-test-xla-cache-")
os.environ["JAXMED_XLA_CACHE"] = _XLA_CACHE  # never the user's caches, also in subprocesses
os.environ["JAXMED_DATA_CACHE"] = _session_folder("jaxmed-test-data-cache-")
os.environ["MPLCONFIGDIR"] = _session_folder("jaxmed-test-matplotlib-")
# An explicit choice (e.g. a CI cache folder) is kept.
os.environ.setdefault("JAXMED_BUILD_CACHE", _kernel_build_cache())

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
