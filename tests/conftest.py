"""Test-wide JAX settings: CPU only, strict rank promotion, a compilation cache.

Many tests compile the same small programs (a tiny DCGAN or classifier step) from
different jit objects; XLA's persistent cache, keyed by the program itself, lets
them compile once per session.
"""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["JAXMED_DATA_CACHE"] = tempfile.mkdtemp(prefix="jaxmed-test-data-cache-")  # never the user's cache

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="jaxmed-test-xla-cache-"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
