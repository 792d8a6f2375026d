"""oneDNN tests skip, with the reason, where the kernels cannot be built or loaded.

Tests marked `onednn` need the compiled kernels (a C++ compiler and oneDNN's headers);
where they cannot be built those tests skip and say why, instead of failing. Where the
kernels are built is set for the whole suite in tests/conftest.py (`JAXMED_BUILD_CACHE`).
"""

import pytest


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skips a test marked `onednn`, with the reason, where the kernels cannot be built or loaded."""
    if item.get_closest_marker("onednn") is None:
        return
    from jaxmed.nn import onednn  # the first onednn test pays for the build, not collection

    reason = onednn.unavailable_reason()
    if reason is not None:
        pytest.skip(f"oneDNN kernels unavailable here: {reason}")
