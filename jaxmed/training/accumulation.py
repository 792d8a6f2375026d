"""Gradient accumulation: one train step over K microbatches, one optimizer update.

A step with `accumulate_steps=K` splits its global batch of B rows into K microbatches
of B/K rows, runs the forward and backward pass on each in a `lax.scan` (so only one
microbatch's activations are alive at a time), adds up the gradients in float32, and
updates once. The data position, the step counter and the checkpoints still count
whole batches, so K only trades memory for time.

Why a scan in the step rather than `optax.MultiSteps`: with MultiSteps one jitted call
is one microbatch and the optimizer state must carry the partial sums, so a checkpoint
could fall between the microbatches of one update; here a step stays one update.

What it equals. For a loss that is a mean over independent examples, the averaged
microbatch gradient is exactly the big-batch gradient (up to float rounding), and so
is the update. BatchNorm in training mode is not such a loss: it normalises each
microbatch with that microbatch's own mean and variance ("ghost batch norm" with
ghost batches of B/K rows), and the running statistics are updated once per
microbatch, as in PyTorch's usual accumulation loop. A BatchNorm model (all of
jaxmed's DCGAN and classifiers) trained with K microbatches of B/K therefore behaves
like batch-size-B/K normalisation with batch-size-B gradient noise, not like batch B.
Use data parallelism over devices (`mesh.data`) when the global-batch statistics
matter; use accumulation when the batch does not fit.

Microbatch k takes rows k, K + k, 2K + k, ... (a reshape to (B/K, K) and a transpose),
so when the batch is sharded over D devices every microbatch is spread over all D
devices with B/(D K) rows each, and no rows move between devices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

Carry = TypeVar("Carry")


def split_microbatches(batch: Any, num_microbatches: int) -> Any:
    """Reshapes every array of `batch` from (B, ...) to (K, B/K, ...); microbatch k holds rows k, K + k, ...

    Args:
      batch: a pytree of arrays sharing their leading batch dimension B.
      num_microbatches: K; must divide B.

    Raises:
      ValueError: if K does not divide B.
    """

    def split(array: jax.Array) -> jax.Array:
        rows = array.shape[0]
        if rows % num_microbatches:
            raise ValueError(f"batch of {rows} rows does not split into {num_microbatches} microbatches")
        return jnp.swapaxes(array.reshape(rows // num_microbatches, num_microbatches, *array.shape[1:]), 0, 1)

    return jax.tree.map(split, batch)


def sum_over_microbatches(fn: Callable[[Carry, Any], tuple[Carry, Any]], carry: Carry, batch: Any,
                          num_microbatches: int) -> tuple[Carry, Any]:
    """Runs `fn(carry, microbatch) -> (carry, outputs)` over K microbatches and sums the outputs.

    Args:
      fn: one microbatch's work; `carry` threads state that changes from one microbatch
        to the next (e.g. BatchNorm running statistics), `outputs` is a pytree of arrays
        to add up (e.g. gradients and metrics).
      carry: the initial carry.
      batch: a pytree of (B, ...) arrays, split by `split_microbatches`.
      num_microbatches: K.

    Returns:
      The final carry and the elementwise sum of `outputs` over the K microbatches.
    """
    if num_microbatches == 1:
        # The plain step, compiled exactly as without accumulation (no reshape, no loop).
        return fn(carry, batch)
    microbatches = split_microbatches(batch, num_microbatches)
    first = jax.tree.map(lambda array: array[0], microbatches)
    zeros = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), jax.eval_shape(fn, carry, first)[1])

    def body(state, microbatch):
        carry, total = state
        carry, outputs = fn(carry, microbatch)
        return (carry, jax.tree.map(jnp.add, total, outputs)), None

    (carry, total), _ = jax.lax.scan(body, (carry, zeros), microbatches)
    return carry, total
