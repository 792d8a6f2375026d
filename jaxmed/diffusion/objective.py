"""The diffusion training loss: eps- or v-prediction, min-SNR-gamma weighting, label dropout for guidance.

One loss evaluation draws, per example, a uniform step i in [0, T), noise eps ~ N(0, I), forms
x_t = sqrt(alpha_bar_i) x0 + sqrt(1 - alpha_bar_i) eps, and regresses the network output at
(x_t, t = (i + 1) / T, label) onto the target:

    loss = mean_b [ w(SNR_b) * mean_pixels (output - target)^2 ]

Defaults, and why:
- v-prediction (Salimans & Ho 2022), target v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0.
  Near pure noise (alpha_bar -> 0, where the cosine schedule spends many steps) an
  eps-predicting network must recover x0 = (x_t - sigma eps) / sqrt(alpha_bar), which magnifies
  its errors without bound; x0 = sqrt(alpha_bar) x_t - sigma v never does. Samplers with few
  steps (DDIM, DPM-Solver++ with 10-50 steps) start at and cross that high-noise end, so they
  benefit most. "eps" (Ho et al. 2020) remains available.
- min-SNR-gamma weighting (Hang et al. 2023) with gamma = 5, their recommended value: clamping
  the per-step weight stops the many nearly-clean, easy steps from dominating the gradient and
  converged 3.4x faster in their experiments. The weight is min(SNR, gamma) expressed for
  the chosen target: min(SNR, gamma) / SNR for eps, min(SNR, gamma) / (SNR + 1) for v (both
  equal min(SNR, gamma) times the x0 error). gamma None gives the plain unweighted MSE.
- Label dropout (Ho & Salimans 2022): with probability p each label becomes the null class, so
  one network learns the conditional and the unconditional model that classifier-free guidance
  combines. 0.1 is their (and most follow-ups') choice.

Everything is a pure function of a PRNG key and `model_fn(x_t_BxHxWxC, t_B, labels_B) -> output`,
so a train step closes `model_fn` over merged parameters and differentiates this loss.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxmed.diffusion.schedule import (PREDICTIONS, NoiseSchedule, Prediction, alpha_bar, model_time, q_sample, snr,
                                       velocity)

ModelFn = Callable[[jax.Array, jax.Array, jax.Array | None], jax.Array]

DEFAULT_PREDICTION: Prediction = "v"
DEFAULT_MIN_SNR_GAMMA = 5.0
DEFAULT_LABEL_DROPOUT = 0.1


def training_target(prediction: Prediction, x0_BxHxWxC: jax.Array, noise_BxHxWxC: jax.Array,
                    alpha_bar_B: jax.Array) -> jax.Array:
    """What the network should output: the noise ("eps") or v ("v").

    Raises:
      ValueError: unknown prediction kind.
    """
    if prediction == "eps":
        return noise_BxHxWxC
    if prediction == "v":
        return velocity(x0_BxHxWxC, noise_BxHxWxC, alpha_bar_B)
    raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")


def loss_weight(prediction: Prediction, snr_B: jax.Array, min_snr_gamma: float | None) -> jax.Array:
    """Per-example min-SNR-gamma weight for a target of kind `prediction` (ones when gamma is None).

    Args:
      prediction: "eps" or "v".
      snr_B: SNR of each example's step.
      min_snr_gamma: gamma (None: no weighting).

    Returns:
      min(SNR, gamma) / SNR for "eps", min(SNR, gamma) / (SNR + 1) for "v".
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")
    if min_snr_gamma is None:
        return jnp.ones_like(snr_B)
    clamped_B = jnp.minimum(snr_B, min_snr_gamma)
    return clamped_B / snr_B if prediction == "eps" else clamped_B / (snr_B + 1.0)


def drop_labels(labels_B: jax.Array, key: jax.Array, probability: float, null_label: int) -> jax.Array:
    """Labels with each replaced by `null_label` independently with `probability` (classifier-free guidance).

    Args:
      labels_B: integer class labels.
      key: PRNG key.
      probability: p in [0, 1].
      null_label: the null class index (`UNet.null_label`, i.e. num_classes).
    """
    drop_B = jax.random.bernoulli(key, probability, labels_B.shape)
    return jnp.where(drop_B, jnp.asarray(null_label, labels_B.dtype), labels_B)


def diffusion_loss(model_fn: ModelFn, schedule: NoiseSchedule, x0_BxHxWxC: jax.Array, key: jax.Array,
                   labels_B: jax.Array | None = None, *, prediction: Prediction = DEFAULT_PREDICTION,
                   min_snr_gamma: float | None = DEFAULT_MIN_SNR_GAMMA, label_dropout: float = 0.0,
                   null_label: int | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The weighted denoising loss on a batch of clean images, at random steps and noise.

    Args:
      model_fn: `(x_t, t_B in [0, 1], labels_B or None) -> output` of the target's shape.
      schedule: the noise schedule.
      x0_BxHxWxC: clean images in [-1, 1].
      key: PRNG key for the steps, the noise and the label dropout.
      labels_B: integer labels for a conditional model, else None.
      prediction: the network's target, "v" (default) or "eps".
      min_snr_gamma: min-SNR-gamma weighting (None: unweighted).
      label_dropout: probability of replacing a label by `null_label` (used only with labels);
        DEFAULT_LABEL_DROPOUT for a model that will sample with guidance.
      null_label: the null class index; required when label_dropout > 0.

    Returns:
      The float32 scalar loss, and metrics: `mse` (unweighted mean squared error of the output).

    Raises:
      ValueError: label_dropout > 0 with labels but no null_label.
    """
    step_key, noise_key, label_key = jax.random.split(key, 3)
    batch = x0_BxHxWxC.shape[0]
    timesteps_B = jax.random.randint(step_key, (batch,), 0, schedule.num_steps)
    noise_BxHxWxC = jax.random.normal(noise_key, x0_BxHxWxC.shape, jnp.float32)
    x0_BxHxWxC = x0_BxHxWxC.astype(jnp.float32)
    alpha_bar_B = alpha_bar(schedule, timesteps_B)
    x_t_BxHxWxC = q_sample(x0_BxHxWxC, alpha_bar_B, noise_BxHxWxC)
    if labels_B is not None and label_dropout > 0:
        if null_label is None:
            raise ValueError("label_dropout > 0 needs the model's null_label")
        labels_B = drop_labels(labels_B, label_key, label_dropout, null_label)
    output_BxHxWxC = model_fn(x_t_BxHxWxC, model_time(schedule, timesteps_B), labels_B).astype(jnp.float32)
    target_BxHxWxC = training_target(prediction, x0_BxHxWxC, noise_BxHxWxC, alpha_bar_B)
    squared_error_B = jnp.mean(jnp.square(output_BxHxWxC - target_BxHxWxC), axis=tuple(range(1, x0_BxHxWxC.ndim)))
    weight_B = loss_weight(prediction, snr(alpha_bar_B), min_snr_gamma)
    return jnp.mean(weight_B * squared_error_B), {"mse": jnp.mean(squared_error_B)}
