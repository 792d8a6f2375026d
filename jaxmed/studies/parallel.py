"""Independent runs at once, each on its own group of devices: the study's arms on a machine with several.

A classifier arm is small next to a GPU or TPU, and the arms of one seed and scarcity do not depend on
each other (but for the filtered arms, which wait for their baseline), nor do the generator families
of a cell, so on several devices the study trains them side by side rather than splitting every
batch across all devices. Each job runs in a thread inside `sharding.device_group`, which makes
its runs build their mesh from that group only.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

import jax

from jaxmed.errors import UsageError
from jaxmed.training import sharding

T = TypeVar("T")


def arm_device_groups(devices_per_arm: int) -> list[list[jax.Device]]:
    """The device groups arms run on: `devices_per_arm` devices each (0: all), one group in a multi-process run.

    Raises:
      UsageError: more devices per arm than this process has.
    """
    if jax.process_count() > 1:
        return [jax.devices()]
    if devices_per_arm > jax.device_count():
        raise UsageError(f"devices_per_arm={devices_per_arm} but only {jax.device_count()} devices are available")
    return sharding.split_devices(devices_per_arm)


def run_all(jobs: Sequence[Callable[[], T]], groups: Sequence[Sequence[jax.Device]]) -> list[T]:
    """Each job's result, in order; with several groups, up to one job per group at a time.

    With one group the jobs run here, one after another (their meshes then take the first devices of
    the process, which is that group). When a job raises, the jobs not yet started are cancelled, the
    running ones finish (each run is resumable), and the first failure in job order is raised.
    """
    if len(groups) <= 1 or len(jobs) <= 1:
        return [job() for job in jobs]
    free: queue.Queue = queue.Queue()
    for group in groups:
        free.put(group)

    def on_a_free_group(job: Callable[[], T]) -> T:
        group = free.get()
        try:
            with sharding.device_group(group):
                return job()
        finally:
            free.put(group)

    with ThreadPoolExecutor(max_workers=min(len(groups), len(jobs)), thread_name_prefix="arm") as pool:
        futures = [pool.submit(on_a_free_group, job) for job in jobs]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
    failures = [future.exception() for future in futures if not future.cancelled() and future.exception()]
    if failures:
        raise failures[0]
    return [future.result() for future in futures]
