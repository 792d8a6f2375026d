"""Exponential moving averages of weights (Polyak averaging), for every family that keeps one.

An average of the last few hundred steps' weights generalises better and is less noisy than the
last step's weights: GAN generators and diffusion models sample from it, classifiers can be
validated and tested with it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

#: The decay starts short and grows to its target, so the random initial weights fade out of the
#: average within the first few dozen steps (TensorFlow's `num_updates` rule).
WARMUP = 10.0


def decay_at(step: jax.Array, decay: float) -> jax.Array:
    """The effective decay after `step` completed steps: min(decay, (1 + step) / (10 + step))."""
    return jnp.minimum(decay, (1.0 + step) / (WARMUP + step))


def update(average, values, step: jax.Array, decay: float):
    """The moving average of pytree `values` after `step` completed steps (float leaves only)."""
    return optax.incremental_update(values, average, 1.0 - decay_at(step, decay))
