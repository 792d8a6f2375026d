"""Class-conditional BatchNorm: one learned gain and bias per class around a BatchNorm without affine.

The conditional generators of SNGAN and BigGAN take the class through their
normalisation layers: activations are normalised with the batch's statistics (shared
by all classes) and then scaled and shifted by `gain[y]` and `bias[y]`, rows of
per-class tables. The gains start at 1 and the biases at 0, so a fresh layer is a
plain BatchNorm; `strength` scales the class term's departure from that (0: the class is
ignored), for conditioning phased in during training. Statistics and modes follow
`jaxmed.nn.BatchNorm`: the training-mode normalisation is `jaxmed.nn.batch_norm` (its fast
gradient, oneDNN sums with `one_pass_sums`), running averages `mean` and `var` are
`nnx.BatchStat`s updated with `momentum`, and `model.eval()` switches to them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmed.nn.batch_norm import batch_norm


class ConditionalBatchNorm(nnx.Module):
    """BatchNorm over the last axis with per-class gain and bias.

    Args:
      num_features: channels (the last axis).
      num_classes: rows of the gain and bias tables; labels are ints in [0, num_classes).
      momentum: running-average decay of the statistics.
      epsilon: added to the variance.
      dtype: computation dtype (None: the promotion of the input with float32).
      one_pass_sums: training-mode sums by oneDNN (see `jaxmed.nn.batch_norm`).
      use_running_average: start in evaluation mode.
      rngs: unused (no random initialisation); taken for the uniform layer signature.
    """

    def __init__(self, num_features: int, num_classes: int, *, momentum: float = 0.9, epsilon: float = 1e-5,
                 dtype=None, one_pass_sums: bool = False, use_running_average: bool = False, rngs: nnx.Rngs):
        del rngs
        self.momentum = momentum
        self.epsilon = epsilon
        self.dtype = dtype
        self.one_pass_sums = one_pass_sums
        self.use_running_average = use_running_average
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.class_gain = nnx.Param(jnp.ones((num_classes, num_features), jnp.float32))
        self.class_bias = nnx.Param(jnp.zeros((num_classes, num_features), jnp.float32))

    def __call__(self, x: jax.Array, labels_B: jax.Array, use_running_average: bool | None = None,
                 strength: jax.Array | float = 1.0) -> jax.Array:
        """Normalises x (B, ..., C) and applies each row's class gain and bias (labels_B: (B,) ints).

        `strength` s in [0, 1] applies 1 + s (gain - 1) and s bias: 0 is a plain BatchNorm.
        """
        running = self.use_running_average if use_running_average is None else use_running_average
        dtype = self.dtype or jnp.result_type(x.dtype, jnp.float32)
        x = x.astype(dtype)
        per_channel = (1,) * (x.ndim - 1) + (-1,)
        if running:
            rstd = jax.lax.rsqrt(self.var[...] + self.epsilon)
            y = (x - self.mean[...].reshape(per_channel).astype(dtype)) * rstd.reshape(per_channel).astype(dtype)
        else:
            features = x.shape[-1]
            y, mean, var = batch_norm(x, jnp.ones((features,), dtype), jnp.zeros((features,), dtype), self.epsilon,
                                      self.one_pass_sums)
            self.mean[...] = self.momentum * self.mean[...] + (1 - self.momentum) * mean
            self.var[...] = self.momentum * self.var[...] + (1 - self.momentum) * var
        per_row = (x.shape[0],) + (1,) * (x.ndim - 2) + (-1,)
        gain = 1 + strength * (self.class_gain[...][labels_B] - 1)
        bias = strength * self.class_bias[...][labels_B]
        gain, bias = gain.reshape(per_row).astype(dtype), bias.reshape(per_row).astype(dtype)
        return y * gain + bias
