"""Per-channel sums for BatchNorm and GroupNorm in one read of the activations (`conv2d.cc`'s `ChannelSums`).

BatchNorm needs two sums per channel in each direction: of x and x*x for its statistics,
of dy and dy*x for its gradient; GroupNorm needs the same per image. XLA:CPU makes each
its own reduction, a full read of the activations apiece (1.4-1.6 ms for a (32, 64, 64, 32)
batch inside the dcgan128 step); the custom call reads each operand once, split over XLA's
threads. Same placement rule as the convolutions: one CPU device only
(`jaxmed.nn.conv_backend`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmed.nn.onednn.library import SUMS_TARGET, load


def channel_sums(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sum of a, sum of a * b) over every axis but the last, for float32 arrays of one shape."""
    load()
    channels = a.shape[-1]
    sums = jax.ffi.ffi_call(SUMS_TARGET, jax.ShapeDtypeStruct((2, channels), jnp.float32))(
        a.reshape(-1, channels), b.reshape(-1, channels))
    return sums[0], sums[1]


def image_channel_sums(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sum of a, sum of a * b) per image and channel, (B, C) each, over the axes between the first and the last."""
    load()
    images, channels = a.shape[0], a.shape[-1]
    sums = jax.ffi.ffi_call(SUMS_TARGET, jax.ShapeDtypeStruct((2, images, channels), jnp.float32))(
        a.reshape(images, -1, channels), b.reshape(images, -1, channels))
    return sums[0], sums[1]
