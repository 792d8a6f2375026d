"""The one place that builds the device mesh and says where arrays live.

Data parallelism over a 1-D mesh with axis `data`: batches are split along their
first dimension across devices, the train state is replicated, and the steps are
jitted with these shardings as explicit `in_shardings` / `out_shardings`. jit's
sharding propagation inserts the collectives: the gradient all-reduce, and the
reductions that make BatchNorm normalise with the statistics of the *global* batch
(a mean over a sharded batch axis is a mean over every device's rows). So a step on
8 devices computes the same function as on 1. Nothing in the models knows about
devices.

The mesh spans the devices of every process in a multi-host run
(`jaxmed.training.distributed`). Each process then places its own rows of a batch with
`place_global`: batch k is a pure function of (seed, k), so every process can compute
it, and each transfers only the rows that belong to its own devices.

Independent runs may share a machine's devices: inside `device_group(devices)` (per thread)
the mesh is built from that group instead of every device, so several runs can train at
once, each on its own devices (the augmentation study's parallel arms).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxmed.errors import UsageError

DATA_AXIS = "data"

_GROUP = threading.local()


@contextlib.contextmanager
def device_group(devices: Sequence[jax.Device]) -> Iterator[None]:
    """Within this block (in this thread), meshes and restores use `devices` only; the first is the default device.

    Raises:
      UsageError: in a multi-process run (its mesh must span every process) or for an empty group.
    """
    if jax.process_count() > 1:
        raise UsageError("device groups are for one process; a multi-process run uses every device")
    if not devices:
        raise UsageError("a device group needs at least one device")
    previous = getattr(_GROUP, "devices", None)
    _GROUP.devices = tuple(devices)
    try:
        with jax.default_device(devices[0]):
            yield
    finally:
        _GROUP.devices = previous


def group_devices() -> list[jax.Device]:
    """The devices runs may use here: the current `device_group`'s, or every device of every process."""
    group = getattr(_GROUP, "devices", None)
    return list(group) if group else jax.devices()


def split_devices(per_group: int) -> list[list[jax.Device]]:
    """This process's devices in consecutive groups of `per_group` (0: one group of all); a remainder is left out.

    Raises:
      UsageError: `per_group` larger than the device count.
    """
    devices = jax.devices()
    size = per_group or len(devices)
    if size > len(devices):
        raise UsageError(f"groups of {size} devices asked for, but only {len(devices)} are available")
    return [devices[start:start + size] for start in range(0, len(devices) - size + 1, size)]


def make_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D `data` mesh over the first `num_devices` devices of all processes (0 = all), or of the `device_group`.

    Args:
      num_devices: devices on the `data` axis (`mesh.data`); 0 for every device.

    Raises:
      UsageError: if more devices are asked for than exist, or, in a multi-process
        run, fewer than all (every process must own part of the mesh).
    """
    devices = group_devices()
    available = len(devices)
    count = num_devices or available
    if count > available:
        raise UsageError(f"mesh.data={count} but only {available} devices are available")
    if jax.process_count() > 1 and count != available:
        raise UsageError(f"mesh.data={count}: a run of {jax.process_count()} processes uses all {available} "
                         "devices (set mesh.data=0)")
    return jax.make_mesh((count,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices[:count])


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Split the leading (batch) dimension across the `data` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def jit_train_step(step: Callable, mesh: Mesh | None, arguments: Sequence[str] = ("rows",)) -> Callable:
    """`jax.jit(step)` for `step(state, *arguments) -> (state, metrics)`, the state donated.

    Args:
      step: the pure step function.
      mesh: a `make_mesh` mesh: the step compiles for it with the state and the outputs
        replicated and each further argument "rows" (split along `data`) or "whole"
        (replicated); place the inputs that way (`place_global`), since unplaced ones
        are moved at the cost of a second compilation. None: jit places everything on
        the default device.
      arguments: the placement of each argument after the state.
    """
    if mesh is None:
        return jax.jit(step, donate_argnums=0)
    placements = {"rows": batch_sharding(mesh), "whole": replicated(mesh)}
    whole = replicated(mesh)
    return jax.jit(step, in_shardings=(whole, *(placements[kind] for kind in arguments)), out_shardings=(whole, whole),
                   donate_argnums=0)


def check_batch_size(batch_size: int, mesh: Mesh, accumulate_steps: int = 1) -> None:
    """Raises UsageError unless every device gets the same whole number of rows of every microbatch.

    Args:
      batch_size: the global batch of one train step.
      mesh: the device mesh.
      accumulate_steps: microbatches per step (`jaxmed.training.accumulation`).
    """
    devices = mesh.shape[DATA_AXIS]
    if batch_size % (devices * accumulate_steps):
        raise UsageError(f"batch size {batch_size} is not divisible by {devices} devices x {accumulate_steps} "
                         "accumulation steps")


def place_global(host_array: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """Places a host array that every process holds in full as one global array on `sharding`.

    Each process transfers only the slices its own devices hold (for a batch sharding:
    its own rows), and no process checks the others' data, so unlike `jax.device_put`
    this needs no cross-process communication and may run on a background thread.

    Args:
      host_array: the whole global value (e.g. batch k of a `BatchStream`), identical
        on every process.
      sharding: where it goes, e.g. `batch_sharding(mesh)` or `replicated(mesh)`.
    """
    host_array = np.asarray(host_array)
    return jax.make_array_from_process_local_data(sharding, host_array, host_array.shape)


def placed_batches(batches: Iterator[Mapping[str, np.ndarray]], sharding: jax.sharding.Sharding
                   ) -> Iterator[dict[str, jax.Array]]:
    """`place_global` applied to every array of every batch.

    Feed the result to `jaxmed.data.pipeline.prefetch_to_device(..., sharding=sharding)`:
    the arrays already have that sharding, so its `device_put` passes them through and
    the placement runs on the prefetch thread.
    """
    for batch in batches:
        yield {key: place_global(value, sharding) for key, value in batch.items()}


def to_host(array: jax.Array) -> np.ndarray:
    """The whole value of `array` as a numpy array on every process.

    A batch-sharded result of a multi-host run is gathered first (a collective: every
    process must call this); anything a process holds in full is just copied.
    """
    if array.is_fully_addressable:
        return np.asarray(array)
    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def map_in_fixed_batches(fn: Callable[[jax.Array], jax.Array], images: np.ndarray, batch_size: int,
                         placement: jax.sharding.Sharding | None = None) -> np.ndarray:
    """`fn` over `images` in batches of `batch_size` (the last padded with zeros, so one compilation), on the host.

    Args:
      fn: a jitted function of one batch; its output's leading axis is the batch.
      images: host array (N, ...).
      batch_size: rows per call.
      placement: where each batch goes, e.g. `batch_sharding(mesh)` (required when the mesh
        spans several processes); None lets jit decide.
    """
    outputs = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        if placement is not None:
            padded = place_global(padded, placement)
        outputs.append(to_host(fn(padded))[:len(chunk)])
    return np.concatenate(outputs)
