"""The one place that builds the device mesh and says where arrays live.

Data parallelism over a 1-D mesh with axis `data`: batches are split along their
first dimension across devices, the train state is replicated, and jit's sharding
propagation inserts the gradient all-reduce. Nothing in the models knows about devices.
"""

from __future__ import annotations

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxmed.errors import UsageError

DATA_AXIS = "data"


def make_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D `data` mesh over the first `num_devices` devices (0 = all).

    Raises:
      UsageError: if more devices are asked for than exist.
    """
    available = jax.device_count()
    count = num_devices or available
    if count > available:
        raise UsageError(f"mesh.data={count} but only {available} devices are available")
    return jax.make_mesh((count,), (DATA_AXIS,), (AxisType.Auto,), devices=jax.devices()[:count])


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Split the leading (batch) dimension across the `data` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raises UsageError unless the batch divides evenly across the mesh."""
    devices = mesh.shape[DATA_AXIS]
    if batch_size % devices:
        raise UsageError(f"batch size {batch_size} is not divisible by the {devices} devices of the mesh")
