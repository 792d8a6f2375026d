"""Test-wide settings: CPU only, strict rank promotion, caches kept out of the user's home.

Many tests compile the same small programs (a tiny DCGAN or classifier step) from
different jit objects; XLA's persistent cache, keyed by the program itself (and the
jax version and flags), lets them compile once, and keeps them for the next session
(compiling is most of the fast tier's time).

Every cache that jaxmed, JAX or matplotlib would otherwise keep under ~/.cache is
pointed elsewhere through environment variables, set here before
any test imports jaxmed, so the `jaxmed` subprocesses that some tests start inherit
them too: the XLA compilation cache ($JAXMED_XLA_CACHE, which the CLI reads), the
data cache ($JAXMED_DATA_CACHE) and matplotlib's font cache ($MPLCONFIGDIR). The data
and font caches live in this session's folders; the compiled programs and the oneDNN
kernels' build outlive the session, see `_environment_cache`.

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


def _environment_cache(name: str) -> str:
    """A cache that outlives the session: inside the Python environment running the tests.

    Building the oneDNN kernels takes 30-60 s and compiling the tests' programs a few
    minutes, so fresh folders would redo both on every run; the environment's own folder
    persists, belongs to the user, and is what both depend on (its oneDNN, jax and
    compiler; the kernels' build name includes the environment's path), so deleting the
    environment deletes them with it. XLA never evicts, so its cache starts over once it
    passes 2 GB. Where the environment is read-only, a session folder is used instead.
    """
    environment = Path(sys.prefix)
    if not os.access(environment, os.W_OK):
        return _session_folder(f"jaxmed-test-{name}-cache-")
    folder = environment / "var" / "cache" / "jaxmed-tests" / name
    if folder.is_dir() and sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) > 2 << 30:
        shutil.rmtree(folder, ignore_errors=True)
    return str(folder)


os.environ.setdefault("JAX_PLATFORMS", "cpu")
_XLA_CACHE = _environment_cache("xla")
os.environ["JAXMED_XLA_CACHE"] = _XLA_CACHE  # never the user's caches, also in subprocesses
os.environ["JAXMED_DATA_CACHE"] = _session_folder("jaxmed-test-data-cache-")
os.environ["MPLCONFIGDIR"] = _session_folder("jaxmed-test-matplotlib-")
# An explicit choice (e.g. a CI cache folder) is kept.
os.environ.setdefault("JAXMED_BUILD_CACHE", _environment_cache("onednn"))

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
