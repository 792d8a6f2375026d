"""Spectral normalisation (Miyato et al. 2018) as a wrapper of a Linear or Conv layer.

`SpectralNorm(layer)` computes `layer` with its kernel divided by the kernel's
largest singular value sigma, so the layer is 1-Lipschitz: the constraint that keeps
SNGAN and BigGAN discriminators stable. sigma is estimated by power iteration on the
kernel reshaped to (fan_in, out), one step per training call from the previous
estimate of the right singular vector u, as in `torch.nn.utils.spectral_norm`.
No gradient flows through u (nor the left vector): the kernel's gradient is that of
W / sigma(W) with the vectors held fixed.

u lives in the module as a `SpectralVector`, a subclass of `nnx.BatchStat`. Why that
type: the GAN state splits networks with `nnx.split(model, nnx.Param, nnx.BatchStat)`
and carries the second part through the step like BatchNorm's running statistics,
so u is saved in checkpoints, updated by training steps and never seen by the
optimizer, with no change to the state; code that must tell u from the statistics
(e.g. to skip it when averaging) filters on `SpectralVector`. u is updated in
training mode only (`model.train()`); `model.eval()` freezes it, and the estimate
then comes from the stored u alone.

The kernel itself is not rewritten (unlike `nnx.SpectralNorm`, which writes W / sigma
back into the parameter): because Linear and Conv layers are linear in their input,
with zero padding, `layer(x / sigma)` equals the layer computed with W / sigma.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class SpectralVector(nnx.BatchStat):
    """The power iteration's estimate of a kernel's right singular vector (state, not a parameter)."""


def _normalize(vector: jax.Array, epsilon: float) -> jax.Array:
    return vector * jax.lax.rsqrt(jnp.sum(jnp.square(vector)) + epsilon)


class SpectralNorm(nnx.Module):
    """Applies `layer` with its kernel divided by the kernel's spectral norm.

    Args:
      layer: a module with a `kernel` parameter of shape (..., out) whose output is
        linear in its input: `nnx.Linear`, `nnx.Conv` (zero padding), `nnx.ConvTranspose`.
      rngs: draws the initial u.
      n_steps: power iterations per training call (1 as in SNGAN; u carries over calls).
      epsilon: added under the square roots of the normalisations.
    """

    def __init__(self, layer: nnx.Module, *, rngs: nnx.Rngs, n_steps: int = 1, epsilon: float = 1e-12):
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            raise TypeError(f"SpectralNorm wraps layers with a kernel, not {type(layer).__name__}")
        self.layer = layer
        self.n_steps = n_steps
        self.epsilon = epsilon
        self.use_running_average = False  # nnx's train()/eval() switch this, as for BatchNorm
        initial = jax.random.normal(rngs.params(), (kernel.shape[-1],), jnp.float32)
        self.u = SpectralVector(_normalize(initial, epsilon))

    def sigma(self, update: bool = False) -> jax.Array:
        """The kernel's estimated largest singular value (float32 scalar, differentiable w.r.t. the kernel).

        Args:
          update: run `n_steps` power iterations and store the new u (training mode);
            else estimate from the stored u.
        """
        kernel = self.layer.kernel[...].astype(jnp.float32)
        matrix = kernel.reshape(-1, kernel.shape[-1])
        u = self.u[...]
        v = _normalize(matrix @ u, self.epsilon)
        if update:
            for _ in range(self.n_steps):
                u = _normalize(matrix.T @ v, self.epsilon)
                v = _normalize(matrix @ u, self.epsilon)
            self.u[...] = jax.lax.stop_gradient(u)
        u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
        return v @ matrix @ u

    def __call__(self, x: jax.Array, *args, use_running_average: bool | None = None, **kwargs) -> jax.Array:
        """`layer(x, *args, **kwargs)` with the normalised kernel; u is updated unless in eval mode."""
        running = self.use_running_average if use_running_average is None else use_running_average
        sigma = self.sigma(update=not running)
        return self.layer(x / sigma.astype(x.dtype), *args, **kwargs)
