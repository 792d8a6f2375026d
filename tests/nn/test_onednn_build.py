"""Building the oneDNN kernels: once under concurrency, failures remembered per fingerprint, a time limit, a fallback.

Most tests use a stand-in compiler (a shell script that answers `--version`, logs
each compile, then fails, hangs or writes a dummy library) and a stand-in oneDNN
prefix, so they run in seconds and need neither a compiler nor oneDNN; the
fallback test runs a fresh process with no compiler on PATH. Every build goes to
a folder under `tmp_path`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxmed.errors import UsageError
from jaxmed.nn import conv_backend
from jaxmed.nn.onednn import OneDnnUnavailable, library

FAKE_COMPILER = """#!/bin/sh
if [ "$1" = "--version" ]; then echo "fake-c++ ${FAKE_CXX_VERSION:-1.0}"; exit 0; fi
echo "compile $$" >> "$FAKE_CXX_LOG"
sleep "${FAKE_CXX_SECONDS:-0}"
if [ "${FAKE_CXX_FAIL:-0}" = 1 ]; then echo "conv2d.cc:1:1: error: fake failure"; exit 1; fi
while [ "$#" -gt 1 ]; do
  if [ "$1" = "-o" ]; then echo dummy > "$2"; fi
  shift
done
"""

#: Runs in a test subprocess: builds (argv[2] == "build") or runs `python -m jaxmed.nn.onednn`
#: against the stand-in oneDNN prefix argv[1].
SCRIPT = """
import runpy, sys
from pathlib import Path
from jaxmed.nn.onednn import library
library.onednn_prefix = lambda: Path(sys.argv[1])
if sys.argv[2] == "build":
    print(library.build())
else:
    runpy.run_module("jaxmed.nn.onednn", run_name="__main__")
"""


@dataclasses.dataclass
class Toolchain:
    prefix: Path
    log: Path
    cache: Path

    def compiles(self) -> int:
        """How many times the stand-in compiler has compiled."""
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0

    def run(self, *args: str, **kwargs) -> subprocess.Popen:
        """Starts `SCRIPT` in a fresh process against this toolchain."""
        return subprocess.Popen([sys.executable, "-c", SCRIPT, str(self.prefix), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture
def toolchain(tmp_path, monkeypatch) -> Toolchain:
    """A stand-in compiler and oneDNN prefix, an empty build cache, and a process that has loaded nothing yet."""
    prefix = tmp_path / "prefix"
    (prefix / "include" / "oneapi" / "dnnl").mkdir(parents=True)
    (prefix / "include" / "oneapi" / "dnnl" / "dnnl.hpp").write_text("")
    (prefix / "include" / "oneapi" / "dnnl" / "dnnl_version.h").write_text(
        "#define DNNL_VERSION_MAJOR 3\n#define DNNL_VERSION_MINOR 1\n#define DNNL_VERSION_PATCH 0\n")
    (prefix / "lib").mkdir()
    (prefix / "lib" / "libdnnl.so").write_text("")
    compiler = tmp_path / "fake-c++"
    compiler.write_text(FAKE_COMPILER)
    compiler.chmod(0o755)
    chain = Toolchain(prefix, tmp_path / "compiles.log", tmp_path / "cache")
    monkeypatch.setenv("CXX", str(compiler))
    monkeypatch.setenv("FAKE_CXX_LOG", str(chain.log))
    monkeypatch.setenv("JAXMED_BUILD_CACHE", str(chain.cache))
    monkeypatch.delenv("JAXMED_BUILD_TIMEOUT", raising=False)
    monkeypatch.setattr(library, "onednn_prefix", lambda: prefix)
    # A fresh once-per-process memo, so `auto` asks again here; the session's own is restored after.
    monkeypatch.setattr(library, "_load_once", functools.cache(library._load_once.__wrapped__))
    conv_backend._warn_unavailable.cache_clear()
    return chain


def _blocked_on_a_lock(pid: int) -> bool:
    """Whether process `pid` waits for a file lock (Linux lists waiters as "->" in /proc/locks)."""
    return any(line.split()[1] == "->" and str(pid) in line.split() for line in Path("/proc/locks").read_text()
               .splitlines())


@pytest.mark.slow
def test_processes_starting_together_build_once(toolchain, monkeypatch):
    monkeypatch.setenv("FAKE_CXX_SECONDS", "3")  # long enough for both to reach the lock while one compiles
    processes = [toolchain.run("build") for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    paths = {stdout.strip() for stdout, _ in outputs}
    assert len(paths) == 1 and Path(paths.pop()).read_text() == "dummy\n"
    assert toolchain.compiles() == 1


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux's /proc/locks to see a process wait")
def test_a_second_process_waits_for_the_first_build_then_loads_it(toolchain):
    _, _, folder = library._build_folder()
    folder.mkdir(parents=True)
    with library._exclusive(folder / library.LOCK_NAME):  # this test plays the first builder
        waiting = toolchain.run("build")
        deadline = time.monotonic() + 120
        while not _blocked_on_a_lock(waiting.pid):
            assert waiting.poll() is None, waiting.communicate()
            assert time.monotonic() < deadline, "the second process never waited for the lock"
            time.sleep(0.1)
        (folder / library.LIBRARY_NAME).write_text("built by the first\n")
    stdout, stderr = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, stderr
    assert Path(stdout.strip()) == folder / library.LIBRARY_NAME
    assert toolchain.compiles() == 0  # it loaded the first build instead of compiling


def test_missing_compiler_falls_back_to_xla_with_the_reason(toolchain, monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.warns(RuntimeWarning, match=r"falls back to XLA.*no C\+\+ compiler: 'no-such-compiler'"):
        assert conv_backend.resolve_conv_backend("auto") == "xla"
    described = conv_backend.describe()
    assert described["backend"] == "xla" and described["isa"] is None
    assert described["reason"] == ("oneDNN kernels unavailable: no C++ compiler: 'no-such-compiler' is not on PATH "
                                   "(set CXX)")
    # Finding no compiler is a PATH lookup: there is nothing to compile, so nothing to remember.
    assert not toolchain.cache.exists()


def test_a_failed_build_is_remembered_and_not_compiled_again(toolchain, monkeypatch):
    monkeypatch.setenv("FAKE_CXX_FAIL", "1")
    reason = "compiling conv2d.cc failed: compiler exit status 1: conv2d.cc:1:1: error: fake failure"
    with pytest.raises(OneDnnUnavailable, match=rf"^{re.escape(reason)} \(compiler output in .*build.log\)$"):
        library.build()
    (failure,) = toolchain.cache.glob(f"*/{library.FAILURE_NAME}")
    assert failure.read_text().splitlines() == [reason]
    assert "fake failure" in (failure.parent / library.LOG_NAME).read_text()
    assert [path.name for path in failure.parent.glob("*.so*")] == []  # no library, no partial file
    # A later process (build() keeps no memo of its own) and `auto` give the reason without compiling.
    remembered = r"fake failure \(remembered in .*FAILED; `python -m jaxmed.nn.onednn` retries\)"
    with pytest.raises(OneDnnUnavailable, match=remembered):
        library.build()
    with pytest.warns(RuntimeWarning, match="fake failure"):
        assert conv_backend.resolve_conv_backend("auto") == "xla"
    assert "fake failure" in conv_backend.describe()["reason"]
    assert toolchain.compiles() == 1


def test_the_explicit_build_retries_a_remembered_failure(toolchain, monkeypatch):
    monkeypatch.setenv("FAKE_CXX_FAIL", "1")
    with pytest.raises(OneDnnUnavailable):
        library.build()
    stdout, stderr = toolchain.run("main").communicate(timeout=120)
    assert "retrying a build that failed before: compiling conv2d.cc failed" in stderr
    assert "oneDNN convolution kernels unavailable: compiling conv2d.cc failed" in stderr
    assert toolchain.compiles() == 2
    # Once it succeeds the failure is forgotten.
    monkeypatch.setenv("FAKE_CXX_FAIL", "0")
    built = library.build(retry_failed=True)
    assert built.read_text() == "dummy\n"
    assert not (built.parent / library.FAILURE_NAME).exists() and not (built.parent / library.LOG_NAME).exists()
    assert toolchain.compiles() == 3
    assert library.build() == built and toolchain.compiles() == 3


def test_a_changed_fingerprint_forgets_the_failure(toolchain, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_CXX_FAIL", "1")
    with pytest.raises(OneDnnUnavailable):
        library.build()
    monkeypatch.setenv("FAKE_CXX_VERSION", "2.0")  # the compiler upgraded in place: same path
    with pytest.raises(OneDnnUnavailable, match="fake failure \\(compiler output"):  # compiled, not remembered
        library.build()
    assert toolchain.compiles() == 2
    sources = tmp_path / "sources"
    sources.mkdir()
    for path in library._sources():
        shutil.copy(path, sources / path.name)
    (sources / "narrow_conv.h").write_text((sources / "narrow_conv.h").read_text() + "// edited\n")
    monkeypatch.setattr(library, "SOURCE", sources / library.SOURCE.name)
    monkeypatch.setenv("FAKE_CXX_FAIL", "0")
    assert library.build().read_text() == "dummy\n"
    assert toolchain.compiles() == 3


def test_fingerprint_follows_sources_flags_and_compiler(toolchain, monkeypatch, tmp_path):
    for path in library._sources():
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.setattr(library, "SOURCE", tmp_path / library.SOURCE.name)
    prefix = toolchain.prefix
    fingerprints = [library._fingerprint(prefix, "/usr/bin/g++", "g++ 12.2.0")]
    header = tmp_path / "narrow_conv.h"  # included, not compiled itself
    header.write_text(header.read_text() + "// edited\n")
    fingerprints.append(library._fingerprint(prefix, "/usr/bin/g++", "g++ 12.2.0"))
    fingerprints.append(library._fingerprint(prefix, "/usr/bin/g++", "g++ 12.3.0"))
    fingerprints.append(library._fingerprint(prefix, "/usr/bin/clang++", "g++ 12.3.0"))
    monkeypatch.setattr(library, "FLAGS", library.FLAGS + ("-DEDITED",))
    fingerprints.append(library._fingerprint(prefix, "/usr/bin/clang++", "g++ 12.3.0"))
    assert len(set(fingerprints)) == len(fingerprints)
    assert library._fingerprint(prefix, "/usr/bin/clang++", "g++ 12.3.0") == fingerprints[-1]


def test_a_compiler_past_its_time_limit_is_stopped_and_remembered(toolchain, monkeypatch):
    monkeypatch.setenv("FAKE_CXX_SECONDS", "60")
    monkeypatch.setenv("JAXMED_BUILD_TIMEOUT", "0.5")
    started = time.monotonic()
    with pytest.raises(OneDnnUnavailable, match=r"^compiling conv2d.cc failed: the compiler took longer than 0.5 s "
                                                r"\(set JAXMED_BUILD_TIMEOUT to allow more\)"):
        library.build()
    assert time.monotonic() - started < 30  # its children were stopped too: the output pipe closed
    with pytest.raises(OneDnnUnavailable, match="took longer than 0.5 s .*remembered"):
        library.build()
    assert toolchain.compiles() == 1


@pytest.mark.parametrize("value", ["soon", "0", "-5"])
def test_a_bad_time_limit_is_a_usage_error(toolchain, monkeypatch, value):
    monkeypatch.setenv("JAXMED_BUILD_TIMEOUT", value)
    with pytest.raises(UsageError, match=f"JAXMED_BUILD_TIMEOUT must be a positive number of seconds, got '{value}'"):
        library.build()
    assert toolchain.compiles() == 0


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to produce a real compile error")
def test_a_real_compile_error_gives_its_first_error_line(toolchain, monkeypatch, tmp_path):
    broken = tmp_path / "conv2d.cc"
    broken.write_text("this is not C++;\n")
    monkeypatch.setattr(library, "SOURCE", broken)
    monkeypatch.setenv("CXX", "g++")
    with pytest.raises(OneDnnUnavailable, match=r"compiling conv2d.cc failed: compiler exit status 1: .*conv2d.cc:1:1: "
                                                r"error: "):
        library.build()
    assert [path.name for path in toolchain.cache.rglob("*.so*")] == []


def test_no_compiler_on_path_falls_back_to_xla_and_convolves(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {name: value for name, value in os.environ.items() if name != "CXX"}
    env.update(PATH=str(empty), JAXMED_BUILD_CACHE=str(tmp_path / "cache"), JAX_PLATFORMS="cpu")
    script = """
import warnings
import numpy as np
from jaxmed.nn import conv_general_dilated_for, resolve_conv_backend
from jaxmed.nn.conv_backend import describe
with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    backend = resolve_conv_backend("auto")
conv = conv_general_dilated_for(backend)
y = conv(np.ones((1, 4, 4, 1), np.float32), np.ones((3, 3, 1, 1), np.float32), (1, 1), "SAME",
         dimension_numbers=("NHWC", "HWIO", "NHWC"))
print(backend)
print(describe()["reason"])
print(np.asarray(y)[0, :, :, 0].astype(int).tolist())
"""
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    backend, reason, values = result.stdout.splitlines()
    assert backend == "xla"
    assert reason == "oneDNN kernels unavailable: no C++ compiler: 'g++' is not on PATH (set CXX)"
    # Window sums of ones under "SAME" padding: 4 at the corners, 6 on the edges, 9 inside.
    assert values == "[[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]]"
    assert not (tmp_path / "cache").exists()


def test_kernel_tests_skip_with_the_reason_where_the_kernels_cannot_be_built(tmp_path):
    env = {**os.environ, "CXX": "no-such-compiler", "JAXMED_BUILD_CACHE": str(tmp_path / "cache")}
    kernel_tests = Path(__file__).with_name("test_onednn.py")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(kernel_tests),
                             "-k", "backend_resolution or transpose_rejects"], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert re.search(r"\b2 skipped\b", result.stdout) and " passed" not in result.stdout, result.stdout[-1000:]
    assert "oneDNN kernels unavailable here: no C++ compiler: 'no-such-compiler'" in result.stdout
