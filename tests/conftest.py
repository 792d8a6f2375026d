"""Test-wide JAX settings: CPU only, strict rank promotion, a compilation cache.

Many tests compile the same small programs (a tiny DCGAN or classifier step) from
different jit objects; XLA's persistent cache, keyed by the program itself, lets
them compile once per session.
"""

import atexit
import os
import shutil
import tempfile


def _session_folder(prefix: str) -> str:
    """A temporary folder removed when the test process exits."""
    folder = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["JAXMED_DATA_CACHE"] = _session_folder("jaxmed-test-data-cache-")  # never the user's cache

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_compilation_cache_dir", _session_folder("jaxmed-test-xla-cache-"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
