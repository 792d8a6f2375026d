"""The cosine noise schedule (Nichol & Dhariwal 2021), the forward process, and eps / x0 / v conversions.

A schedule of T discrete steps holds alpha_bar for steps 0..T-1 (`alphas_cumprod`, as in
improved-diffusion and diffusers):

    f(t) = cos(((t + s) / (1 + s)) * pi / 2)^2,   alpha_bar(t) = f(t) / f(0),   s = 0.008
    beta_i = min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), 0.999),  alphas_cumprod[i] = prod_{j<=i} (1 - beta_j)

so step i sits at continuous time t = (i + 1) / T (`model_time`), which is what the U-Net is
given. The clip at 0.999 only bites at the last step(s), where alpha_bar would reach exactly zero
and x0 could no longer be recovered from the noise.

The forward process and the parameterisations, with a = sqrt(alpha_bar), sigma = sqrt(1 - alpha_bar):

    x_t = a x0 + sigma eps                   (`q_sample`)
    v   = a eps - sigma x0                   (Salimans & Ho 2022, "v-prediction")
    x0  = a x_t - sigma v,   eps = sigma x_t + a v
    SNR = alpha_bar / (1 - alpha_bar)

Every function takes per-example alpha_bar values `alpha_bar_B` (look them up with `alpha_bar`)
and broadcasts them over the image axes explicitly (the tests raise on implicit rank promotion).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

COSINE_OFFSET = 0.008  # s: keeps beta_1 from being vanishingly small (Nichol & Dhariwal, section 3.2)
MAX_BETA = 0.999  # Nichol & Dhariwal's clip, against a singular last step

Prediction = Literal["eps", "v"]
PREDICTIONS = ("eps", "v")


class NoiseSchedule(NamedTuple):
    """A discrete noise schedule; a pytree, so it passes through `jit` as an argument.

    Attributes:
      alphas_cumprod_T: float32 alpha_bar of steps 0..T-1 (decreasing from about 1 to about 0).
    """

    alphas_cumprod_T: jax.Array

    @property
    def num_steps(self) -> int:
        """T, the number of discrete steps."""
        return self.alphas_cumprod_T.shape[0]


def cosine_alpha_bar(t: jax.typing.ArrayLike, offset: float = COSINE_OFFSET) -> jax.Array:
    """The closed-form cosine alpha_bar(t) = f(t) / f(0) for continuous t in [0, 1] (no clipping).

    Args:
      t: times in [0, 1].
      offset: s in f(t) = cos(((t + s) / (1 + s)) * pi / 2)^2.
    """
    def f(time):
        return jnp.cos((time + offset) / (1.0 + offset) * math.pi / 2) ** 2

    return f(jnp.asarray(t, jnp.float32)) / f(jnp.zeros((), jnp.float32))


def cosine_schedule(num_steps: int = 1000, offset: float = COSINE_OFFSET, max_beta: float = MAX_BETA) -> NoiseSchedule:
    """The cosine schedule with `num_steps` discrete steps (formulas in the module docstring).

    Args:
      num_steps: T.
      offset: s of the cosine.
      max_beta: the clip on each step's beta.

    Raises:
      ValueError: num_steps < 1.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be positive, got {num_steps}")

    def f(time):  # in float64 on the host: the product over 1000 steps should not accumulate rounding
        return np.cos((time + offset) / (1.0 + offset) * np.pi / 2) ** 2

    times = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    betas = np.minimum(1.0 - f(times[1:]) / f(times[:-1]), max_beta)
    return NoiseSchedule(jnp.asarray(np.cumprod(1.0 - betas), jnp.float32))


def model_time(schedule: NoiseSchedule, timesteps_B: jax.Array) -> jax.Array:
    """The continuous time t = (i + 1) / T in (0, 1] of integer steps i, as the U-Net takes it."""
    return (timesteps_B.astype(jnp.float32) + 1.0) / schedule.num_steps


def alpha_bar(schedule: NoiseSchedule, timesteps_B: jax.Array) -> jax.Array:
    """alpha_bar of integer steps i; step -1 is the clean image (alpha_bar 1), which samplers end on."""
    clean_B = timesteps_B < 0
    return jnp.where(clean_B, 1.0, schedule.alphas_cumprod_T[jnp.maximum(timesteps_B, 0)])


def _per_example(values_B: jax.Array, like_BxHxWxC: jax.Array) -> jax.Array:
    """(B,) values shaped (B, 1, ..., 1) to broadcast over `like`'s trailing axes."""
    return values_B.reshape(values_B.shape + (1,) * (like_BxHxWxC.ndim - 1))


def _scales(alpha_bar_B: jax.Array, like: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sqrt(alpha_bar), sqrt(1 - alpha_bar)) shaped to broadcast over `like`."""
    alpha_bar = _per_example(alpha_bar_B, like)
    return jnp.sqrt(alpha_bar), jnp.sqrt(1.0 - alpha_bar)


def q_sample(x0_BxHxWxC: jax.Array, alpha_bar_B: jax.Array, noise_BxHxWxC: jax.Array) -> jax.Array:
    """The forward process: x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps.

    Args:
      x0_BxHxWxC: clean images.
      alpha_bar_B: alpha_bar per example (`alpha_bar(schedule, timesteps)`).
      noise_BxHxWxC: standard normal noise eps.
    """
    a, sigma = _scales(alpha_bar_B, x0_BxHxWxC)
    return a * x0_BxHxWxC + sigma * noise_BxHxWxC


def velocity(x0_BxHxWxC: jax.Array, noise_BxHxWxC: jax.Array, alpha_bar_B: jax.Array) -> jax.Array:
    """The v-prediction target v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0."""
    a, sigma = _scales(alpha_bar_B, x0_BxHxWxC)
    return a * noise_BxHxWxC - sigma * x0_BxHxWxC


def x0_from_eps(x_t_BxHxWxC: jax.Array, eps_BxHxWxC: jax.Array, alpha_bar_B: jax.Array) -> jax.Array:
    """x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar) (ill-conditioned as alpha_bar -> 0)."""
    a, sigma = _scales(alpha_bar_B, x_t_BxHxWxC)
    return (x_t_BxHxWxC - sigma * eps_BxHxWxC) / a


def eps_from_x0(x_t_BxHxWxC: jax.Array, x0_BxHxWxC: jax.Array, alpha_bar_B: jax.Array) -> jax.Array:
    """eps = (x_t - sqrt(alpha_bar) x0) / sqrt(1 - alpha_bar) (undefined at alpha_bar = 1)."""
    a, sigma = _scales(alpha_bar_B, x_t_BxHxWxC)
    return (x_t_BxHxWxC - a * x0_BxHxWxC) / sigma


def x0_from_v(x_t_BxHxWxC: jax.Array, v_BxHxWxC: jax.Array, alpha_bar_B: jax.Array) -> jax.Array:
    """x0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v (well-conditioned at every noise level)."""
    a, sigma = _scales(alpha_bar_B, x_t_BxHxWxC)
    return a * x_t_BxHxWxC - sigma * v_BxHxWxC


def eps_from_v(x_t_BxHxWxC: jax.Array, v_BxHxWxC: jax.Array, alpha_bar_B: jax.Array) -> jax.Array:
    """eps = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v."""
    a, sigma = _scales(alpha_bar_B, x_t_BxHxWxC)
    return sigma * x_t_BxHxWxC + a * v_BxHxWxC


def snr(alpha_bar_B: jax.Array) -> jax.Array:
    """The signal-to-noise ratio alpha_bar / (1 - alpha_bar)."""
    return alpha_bar_B / (1.0 - alpha_bar_B)


def x0_and_eps(prediction: Prediction, x_t_BxHxWxC: jax.Array, output_BxHxWxC: jax.Array,
               alpha_bar_B: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(x0, eps) implied by a network output of kind `prediction` ("eps" or "v") at x_t.

    Raises:
      ValueError: unknown prediction kind.
    """
    if prediction == "eps":
        return x0_from_eps(x_t_BxHxWxC, output_BxHxWxC, alpha_bar_B), output_BxHxWxC
    if prediction == "v":
        return (x0_from_v(x_t_BxHxWxC, output_BxHxWxC, alpha_bar_B),
                eps_from_v(x_t_BxHxWxC, output_BxHxWxC, alpha_bar_B))
    raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")
