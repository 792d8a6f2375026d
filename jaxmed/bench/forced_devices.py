"""Run a benchmark command on N forced CPU devices, in a child process.

XLA fixes the number of host (CPU) devices when the backend starts, from
`XLA_FLAGS=--xla_force_host_platform_device_count=N`, so a process that sees fewer
devices than a benchmark asks for cannot add them: it starts itself again with that
flag and reads the child's single JSON object from its stdout. The child's stderr
(progress, warnings) passes through to ours.

This applies to the CPU backend only: on a GPU or TPU machine, asking for more devices
than exist is an error rather than a silent switch to the CPU.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence

import jax

from jaxmed.errors import JaxmedError, UsageError

FORCE_FLAG = "--xla_force_host_platform_device_count"
# Set in the child, so a child that still lacks the devices fails instead of starting another child.
CHILD_MARKER = "JAXMED_BENCH_FORCED_DEVICES"


class ChildFailed(JaxmedError):
    """The child benchmark process failed; its one-line error is the message."""


def needs_child(devices: int) -> bool:
    """True if `devices` are not visible here but can be forced in a child process.

    Raises:
      UsageError: if they cannot be had: not a CPU backend, or already a forced child.
    """
    available = jax.device_count()
    if devices <= available:
        return False
    if os.environ.get(CHILD_MARKER):
        raise UsageError(f"{devices} devices requested but only {available} visible after forcing "
                         f"{FORCE_FLAG}={os.environ[CHILD_MARKER]}")
    if jax.default_backend() != "cpu":
        raise UsageError(f"{devices} devices requested but only {available} {jax.default_backend()} devices are "
                         "visible (forced devices exist on the CPU backend only)")
    return True


def forced_environment(devices: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with XLA forced to `devices` CPU devices."""
    env = dict(os.environ if base is None else base)
    flags = re.sub(rf"{FORCE_FLAG}=\S*", "", env.get("XLA_FLAGS", "")).split()
    env["XLA_FLAGS"] = " ".join([*flags, f"{FORCE_FLAG}={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    env[CHILD_MARKER] = str(devices)
    return env


def run_child(argv: Sequence[str], devices: int) -> dict:
    """Runs `python -m jaxmed *argv --json` on `devices` forced CPU devices; returns its JSON object.

    Args:
      argv: the jaxmed command line without `--json`, e.g. ["bench", "train-step", "--model", "dcgan128",
        "--devices", "4"].
      devices: forced CPU device count.

    Raises:
      ChildFailed: the child exited non-zero or did not print one JSON object.
    """
    command = [sys.executable, "-m", "jaxmed", *argv, "--json"]
    result = subprocess.run(command, env=forced_environment(devices), stdout=subprocess.PIPE, stderr=None,
                            text=True, check=False)
    if result.returncode != 0:
        raise ChildFailed(f"the {devices}-device benchmark process exited with status {result.returncode} "
                          f"(its error is above)")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise ChildFailed(f"the {devices}-device benchmark process printed no JSON object on stdout") from None
