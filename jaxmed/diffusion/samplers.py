"""Samplers from a trained denoiser: ancestral DDPM, DDIM and DPM-Solver++ (2M), and classifier-free guidance.

All take `model_fn(x_t_BxHxWxC, t_B, labels_B) -> output` (an "eps" or "v" prediction, as trained;
t_B in [0, 1] as `jaxmed.diffusion.schedule.model_time` gives it), start from x ~ N(0, I) drawn
from `key`, and end on the clean image: the last update of each is "x = predicted x0". They are
pure and loop with `lax.fori_loop`, so `jax.jit` (with `shape`, `num_steps` and the keyword
options static) compiles one step body whatever the step count, and a key fixes the result.

- `ddpm_sample` (Ho et al. 2020): all T steps, x_{i-1} ~ q(x_{i-1} | x_i, x0_hat), the true
  posterior given the predicted x0, with its variance beta_tilde ("fixed small").
- `ddim_sample` (Song et al. 2021): any K <= T steps, evenly spaced ("trailing", `sampling_timesteps`);
  eta = 0 is the deterministic probability-flow path, eta = 1 on the full grid is DDPM again
  (and draws the same noise, so with one key the two agree; the tests check this).
- `dpm_solver_2m_sample` (Lu et al. 2022, DPM-Solver++ "2M", as diffusers'
  `DPMSolverMultistepScheduler`): a second-order multistep solver of the same deterministic ODE
  in data (x0) prediction form; with 10-25 steps it is much closer to the ODE's solution than
  DDIM with as many (the tests check this on a Gaussian whose solution is known). The first
  step is first order (no history yet) and so is the last (onto sigma = 0, where the update is
  exactly "x = predicted x0").

`clip_x0` (default on) clips each predicted x0 to the data range [-1, 1] and re-derives the
noise from it, as improved-diffusion does; turn it off to integrate the ODE exactly.

Guidance (`guided`, Ho & Salimans 2022): output = uncond + s * (cond - uncond). So s = 0 is the
unconditional model, s = 1 the conditional one, s > 1 sharpens towards the class (Ho &
Salimans' w is s - 1). Both halves run in one batched call of the network.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxmed.diffusion.objective import ModelFn
from jaxmed.diffusion.schedule import NoiseSchedule, Prediction, alpha_bar, eps_from_x0, model_time, x0_and_eps

SamplerName = Literal["ddpm", "ddim", "dpm_solver_2m"]
SAMPLERS = ("ddpm", "ddim", "dpm_solver_2m")
DATA_RANGE = (-1.0, 1.0)


def guidance_combine(cond_BxHxWxC: jax.Array, uncond_BxHxWxC: jax.Array, scale: float | jax.Array) -> jax.Array:
    """Classifier-free guidance: uncond + scale * (cond - uncond) (scale 0: unconditional, 1: conditional)."""
    return uncond_BxHxWxC + scale * (cond_BxHxWxC - uncond_BxHxWxC)


def guided(model_fn: ModelFn, scale: float | jax.Array, null_label: int) -> ModelFn:
    """`model_fn` with classifier-free guidance at `scale`, for the labels it is called with.

    Args:
      model_fn: a conditional model trained with label dropout to `null_label`.
      scale: guidance scale s (see the module docstring).
      null_label: the null class index (`UNet.null_label`).

    Returns:
      `(x_t, t, labels) -> guidance_combine(model(labels), model(null), scale)`, one network call
      on the doubled batch.
    """
    def guided_fn(x_t_BxHxWxC: jax.Array, t_B: jax.Array, labels_B: jax.Array | None) -> jax.Array:
        if labels_B is None:
            raise ValueError("guided sampling needs labels")
        batch = x_t_BxHxWxC.shape[0]
        null_B = jnp.full_like(labels_B, null_label)
        both = model_fn(jnp.concatenate([x_t_BxHxWxC, x_t_BxHxWxC]), jnp.concatenate([t_B, t_B]),
                        jnp.concatenate([labels_B, null_B]))
        return guidance_combine(both[:batch], both[batch:], scale)

    return guided_fn


def sampling_timesteps(num_train_steps: int, num_steps: int) -> np.ndarray:
    """K integer steps from T - 1 down, evenly spaced, the last about T / K - 1 (all T steps when K = T).

    "Trailing" spacing (Lin et al. 2024): the samplers then go from the last of these straight to
    the clean image, rather than spending an evaluation on step 0 (alpha_bar ~ 1), which would
    leave one tiny step after a long one and throw a multistep solver's extrapolation off.

    Raises:
      ValueError: K outside [1, T].
    """
    if not 1 <= num_steps <= num_train_steps:
        raise ValueError(f"num_steps must be in [1, {num_train_steps}] (the schedule's steps), got {num_steps}")
    return (np.round(np.linspace(num_train_steps, 0, num_steps + 1))[:-1] - 1).astype(np.int32)


def _denoise(model_fn: ModelFn, schedule: NoiseSchedule, prediction: Prediction, clip_x0: bool,
             x_BxHxWxC: jax.Array, timestep: jax.Array, labels_B: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """(x0_hat, eps_hat) from one network call at integer step `timestep` (a scalar)."""
    batch = x_BxHxWxC.shape[0]
    timesteps_B = jnp.full((batch,), timestep, jnp.int32)
    alpha_bar_B = alpha_bar(schedule, timesteps_B)
    output = model_fn(x_BxHxWxC, model_time(schedule, timesteps_B), labels_B).astype(jnp.float32)
    x0_hat, eps_hat = x0_and_eps(prediction, x_BxHxWxC, output, alpha_bar_B)
    if clip_x0:
        x0_hat = jnp.clip(x0_hat, *DATA_RANGE)
        eps_hat = eps_from_x0(x_BxHxWxC, x0_hat, alpha_bar_B)
    return x0_hat, eps_hat


def _start(key: jax.Array, shape: tuple[int, ...], x_T: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """(x_T, the key of the per-step noise): x_T ~ N(0, I) from `key` unless given; shared so DDPM and DDIM agree."""
    start_key, noise_key = jax.random.split(key)
    if x_T is None:
        return jax.random.normal(start_key, shape, jnp.float32), noise_key
    if x_T.shape != tuple(shape):
        raise ValueError(f"x_T has shape {x_T.shape}, the samples {tuple(shape)}")
    return x_T.astype(jnp.float32), noise_key


def ddpm_sample(model_fn: ModelFn, schedule: NoiseSchedule, shape: tuple[int, ...], key: jax.Array,
                labels_B: jax.Array | None = None, *, prediction: Prediction = "v",
                clip_x0: bool = True, x_T: jax.Array | None = None) -> jax.Array:
    """Ancestral sampling over all T steps of the schedule.

    Args:
      model_fn: the denoiser.
      schedule: the schedule it was trained with.
      shape: (B, H, W, C) of the samples.
      key: PRNG key (fixes the result).
      labels_B: labels for a conditional model (or None).
      prediction: what `model_fn` predicts, "v" or "eps".
      clip_x0: clip predicted x0 to [-1, 1].
      x_T: the start noise, of `shape` (None: drawn from `key`). `key` always draws the
        per-step noise, so a deterministic sampler given x_T does not depend on `key`.

    Returns:
      float32 samples of `shape`.
    """
    x, noise_key = _start(key, shape, x_T)
    num_steps = schedule.num_steps

    def step(index, x):
        timestep = num_steps - 1 - index
        x0_hat, _ = _denoise(model_fn, schedule, prediction, clip_x0, x, timestep, labels_B)
        alpha_bar_t = alpha_bar(schedule, timestep)
        alpha_bar_prev = alpha_bar(schedule, timestep - 1)
        beta = 1.0 - alpha_bar_t / alpha_bar_prev
        # q(x_{t-1} | x_t, x0): Ho et al. eq. 7.
        mean = (jnp.sqrt(alpha_bar_prev) * beta / (1.0 - alpha_bar_t) * x0_hat
                + jnp.sqrt(1.0 - beta) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t) * x)
        variance = beta * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t)  # 0 on the last step (alpha_bar_prev = 1)
        return mean + jnp.sqrt(variance) * jax.random.normal(jax.random.fold_in(noise_key, timestep), shape)

    return lax.fori_loop(0, num_steps, step, x)


def ddim_sample(model_fn: ModelFn, schedule: NoiseSchedule, shape: tuple[int, ...], key: jax.Array,
                num_steps: int, labels_B: jax.Array | None = None, *, eta: float = 0.0, prediction: Prediction = "v",
                clip_x0: bool = True, x_T: jax.Array | None = None) -> jax.Array:
    """DDIM over `num_steps` evenly spaced steps; eta 0 is deterministic, eta 1 is ancestral.

    Args:
      num_steps: K in [1, T].
      eta: the fraction of the posterior's noise added per step (Song et al.'s eta).
      model_fn, schedule, shape, key, labels_B, prediction, clip_x0, x_T: as `ddpm_sample`.

    Returns:
      float32 samples of `shape`.
    """
    timesteps_K = jnp.asarray(sampling_timesteps(schedule.num_steps, num_steps))
    previous_K = jnp.concatenate([timesteps_K[1:], jnp.array([-1], jnp.int32)])  # -1: the clean image
    x, noise_key = _start(key, shape, x_T)

    def step(index, x):
        timestep, previous = timesteps_K[index], previous_K[index]
        x0_hat, eps_hat = _denoise(model_fn, schedule, prediction, clip_x0, x, timestep, labels_B)
        alpha_bar_t = alpha_bar(schedule, timestep)
        alpha_bar_prev = alpha_bar(schedule, previous)
        sigma = eta * jnp.sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t) * (1.0 - alpha_bar_t / alpha_bar_prev))
        direction = jnp.sqrt(jnp.maximum(1.0 - alpha_bar_prev - sigma ** 2, 0.0)) * eps_hat
        noise = jax.random.normal(jax.random.fold_in(noise_key, timestep), shape)
        return jnp.sqrt(alpha_bar_prev) * x0_hat + direction + sigma * noise

    return lax.fori_loop(0, num_steps, step, x)


def dpm_solver_2m_sample(model_fn: ModelFn, schedule: NoiseSchedule, shape: tuple[int, ...], key: jax.Array,
                         num_steps: int, labels_B: jax.Array | None = None, *, prediction: Prediction = "v",
                         clip_x0: bool = True, x_T: jax.Array | None = None) -> jax.Array:
    """DPM-Solver++ (2M) over `num_steps` evenly spaced steps; deterministic given the key's start noise.

    With lambda = log(sqrt(alpha_bar) / sqrt(1 - alpha_bar)), h_k = lambda_{k+1} - lambda_k and
    D_k = (1 + 1 / (2 r_k)) x0_k - 1 / (2 r_k) x0_{k-1}, r_k = h_{k-1} / h_k (Lu et al., algorithm 2):

        x_{k+1} = (sigma_{k+1} / sigma_k) x_k - alpha_{k+1} (exp(-h_k) - 1) D_k

    Args:
      num_steps: K in [1, T] network evaluations.
      model_fn, schedule, shape, key, labels_B, prediction, clip_x0, x_T: as `ddpm_sample`.

    Returns:
      float32 samples of `shape`.
    """
    timesteps_K = jnp.asarray(sampling_timesteps(schedule.num_steps, num_steps))
    x, _ = _start(key, shape, x_T)

    def log_snr_half(alpha_bar_value):  # lambda = log(alpha / sigma)
        return 0.5 * (jnp.log(alpha_bar_value) - jnp.log1p(-alpha_bar_value))

    def step(index, carry):
        x, previous_x0, previous_h = carry
        timestep = timesteps_K[index]
        last = index == num_steps - 1
        # On the last step the next point is the clean image (sigma 0, lambda infinite); the update
        # is then x0_hat, so the formula below only needs finite stand-in values there.
        following = timesteps_K[jnp.minimum(index + 1, num_steps - 1)]
        x0_hat, _ = _denoise(model_fn, schedule, prediction, clip_x0, x, timestep, labels_B)
        alpha_bar_t = alpha_bar(schedule, timestep)
        alpha_bar_next = jnp.where(last, alpha_bar_t, alpha_bar(schedule, following))
        h = log_snr_half(alpha_bar_next) - log_snr_half(alpha_bar_t)
        ratio = jnp.where(index == 0, 1.0, previous_h / jnp.where(last, 1.0, h))
        corrected = (1.0 + 0.5 / ratio) * x0_hat - (0.5 / ratio) * previous_x0
        data_term = jnp.where(index == 0, x0_hat, corrected)
        updated = (jnp.sqrt((1.0 - alpha_bar_next) / (1.0 - alpha_bar_t)) * x
                   - jnp.sqrt(alpha_bar_next) * jnp.expm1(-h) * data_term)
        return jnp.where(last, x0_hat, updated), x0_hat, h

    x, _, _ = lax.fori_loop(0, num_steps, step, (x, jnp.zeros(shape, jnp.float32), jnp.ones((), jnp.float32)))
    return x


def sample(sampler: SamplerName, model_fn: ModelFn, schedule: NoiseSchedule, shape: tuple[int, ...],
           key: jax.Array, num_steps: int | None = None, labels_B: jax.Array | None = None, *, eta: float = 0.0,
           prediction: Prediction = "v", clip_x0: bool = True, x_T: jax.Array | None = None) -> jax.Array:
    """Samples with the sampler named `sampler`; `num_steps` is ignored by "ddpm", `eta` by all but "ddim".

    Args:
      sampler: one of `SAMPLERS`.
      num_steps: steps for "ddim" and "dpm_solver_2m" (None: all T).
      eta: DDIM's eta (see `ddim_sample`).
      model_fn, schedule, shape, key, labels_B, prediction, clip_x0, x_T: as `ddpm_sample`.

    Raises:
      ValueError: unknown sampler name.
    """
    options = dict(prediction=prediction, clip_x0=clip_x0, x_T=x_T)
    steps = schedule.num_steps if num_steps is None else num_steps
    if sampler == "ddpm":
        return ddpm_sample(model_fn, schedule, shape, key, labels_B, **options)
    if sampler == "ddim":
        return ddim_sample(model_fn, schedule, shape, key, steps, labels_B, eta=eta, **options)
    if sampler == "dpm_solver_2m":
        return dpm_solver_2m_sample(model_fn, schedule, shape, key, steps, labels_B, **options)
    raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")

