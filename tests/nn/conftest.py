"""The oneDNN kernels for these tests: built once per session in a temporary folder, or skipped with the reason.

Tests marked `onednn` need the compiled kernels (a C++ compiler and oneDNN's
headers); where they cannot be built those tests skip and say why, instead of
failing. The build goes to a session folder (`JAXMED_BUILD_CACHE`), never the
user's cache; test subprocesses inherit it and so reuse the session's build.
"""

import atexit
import os
import shutil
import tempfile

import pytest


def _session_build_cache() -> str:
    """A temporary folder for the session's kernel build, removed when the test process exits."""
    folder = tempfile.mkdtemp(prefix="jaxmed-test-onednn-build-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


if "JAXMED_BUILD_CACHE" not in os.environ:  # a parent test process's folder, when there is one
    os.environ["JAXMED_BUILD_CACHE"] = _session_build_cache()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skips a test marked `onednn`, with the reason, where the kernels cannot be built or loaded."""
    if item.get_closest_marker("onednn") is None:
        return
    from jaxmed.nn import onednn  # the first onednn test pays for the build, not collection

    reason = onednn.unavailable_reason()
    if reason is not None:
        pytest.skip(f"oneDNN kernels unavailable here: {reason}")
