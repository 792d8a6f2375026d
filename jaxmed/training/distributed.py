"""Multi-host runs: starting JAX's distributed runtime (`jax.distributed.initialize`).

Every process of a multi-host run starts the same command with its own process id:

    jaxmed train gan ... --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0   # host 0
    jaxmed train gan ... --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 1   # host 1

The three settings can also come from environment variables. JAX itself reads
`JAX_COORDINATOR_ADDRESS` (and `JAX_COORDINATOR_PORT`, `JAX_LOCAL_DEVICE_IDS`); it
does not read a process count or id (jax 0.10), so jaxmed reads `JAX_NUM_PROCESSES`
and `JAX_PROCESS_ID`. Flags win over the environment. On a cluster JAX recognises
(Slurm, Open MPI, Cloud TPU, Kubernetes with the `kubernetes` package) `--distributed`
alone lets JAX detect all of them.

After initialisation `jax.devices()` lists the devices of all processes and the mesh
of `jaxmed.training.sharding` spans them. On CPU, cross-process collectives use gloo
(JAX's default `jax_cpu_collectives_implementation`); GPUs use NCCL.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import jax

from jaxmed.errors import UsageError

COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"
NUM_PROCESSES_ENV = "JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "JAX_PROCESS_ID"


@dataclasses.dataclass(frozen=True)
class DistributedSettings:
    """How to start JAX's distributed runtime; None fields are left to JAX's cluster detection.

    Attributes:
      coordinator: "HOST:PORT" of process 0's coordinator service.
      num_processes: how many processes take part.
      process_id: this process's id, 0 to num_processes - 1.
    """

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


def settings_from(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
                  detect: bool = False, environ: Mapping[str, str] = os.environ) -> DistributedSettings | None:
    """The distributed settings asked for by flags or environment variables, or None for a one-process run.

    Args:
      coordinator, num_processes, process_id: the flag values (None when not given).
      detect: `--distributed`: initialise even with nothing set, letting JAX detect the cluster.
      environ: the environment (the process's own by default).

    Raises:
      UsageError: on an ill-formed value or an inconsistent combination.
    """
    coordinator = coordinator or environ.get(COORDINATOR_ENV) or None
    num_processes = num_processes if num_processes is not None else _env_int(environ, NUM_PROCESSES_ENV)
    process_id = process_id if process_id is not None else _env_int(environ, PROCESS_ID_ENV)
    if not detect and coordinator is None and num_processes is None and process_id is None:
        return None
    if coordinator is not None:
        host, sep, port = coordinator.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise UsageError(f"--coordinator must be HOST:PORT, got {coordinator!r}")
    if num_processes is not None and num_processes < 1:
        raise UsageError(f"--num-processes must be at least 1, got {num_processes}")
    if process_id is not None and (process_id < 0 or (num_processes is not None and process_id >= num_processes)):
        raise UsageError(f"--process-id must be in [0, {num_processes}), got {process_id}")
    return DistributedSettings(coordinator, num_processes, process_id)


def initialize(settings: DistributedSettings, timeout_seconds: int = 300) -> None:
    """Starts JAX's distributed runtime; call before anything else touches JAX's devices.

    Args:
      settings: from `settings_from`.
      timeout_seconds: how long to wait for all processes to connect.

    Raises:
      UsageError: if JAX cannot start it (missing settings, devices already in use,
        coordinator unreachable), in one line.
    """
    try:
        jax.distributed.initialize(coordinator_address=settings.coordinator, num_processes=settings.num_processes,
                                   process_id=settings.process_id, initialization_timeout=timeout_seconds)
    except (RuntimeError, ValueError, TypeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"jax.distributed.initialize failed ({settings}): {reason}") from error


def is_main_process() -> bool:
    """True in process 0, the one that writes logs, plots and configs."""
    return jax.process_index() == 0


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
    text = environ.get(name, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"environment variable {name} must be an integer, got {text!r}") from None
