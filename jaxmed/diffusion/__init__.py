"""Denoising diffusion: the noise schedule, the training loss and the samplers, independent of the network.

The pieces a diffusion family's train step and sampling command combine:

- `schedule`: the cosine noise schedule (`cosine_schedule`), the forward process (`q_sample`)
  and the conversions between eps, x0 and v predictions.
- `objective`: `diffusion_loss`, v- (default) or eps-prediction with min-SNR-gamma weighting and
  label dropout for classifier-free guidance.
- `samplers`: ancestral DDPM, DDIM and DPM-Solver++ (2M), and classifier-free guidance (`guided`).

The network is any `model_fn(x_t_BxHxWxC, t_B, labels_B) -> output` with t in [0, 1]; the
project's is `jaxmed.models.unet.UNet`.
"""

from jaxmed.diffusion.objective import DEFAULT_LABEL_DROPOUT, DEFAULT_MIN_SNR_GAMMA, DEFAULT_PREDICTION, diffusion_loss
from jaxmed.diffusion.samplers import (SAMPLERS, ddim_sample, ddpm_sample, dpm_solver_2m_sample, guidance_combine,
                                       guided, sample)
from jaxmed.diffusion.schedule import PREDICTIONS, NoiseSchedule, cosine_schedule, model_time, q_sample

__all__ = ["DEFAULT_LABEL_DROPOUT", "DEFAULT_MIN_SNR_GAMMA", "DEFAULT_PREDICTION", "NoiseSchedule", "PREDICTIONS",
           "SAMPLERS", "cosine_schedule", "ddim_sample", "ddpm_sample", "diffusion_loss", "dpm_solver_2m_sample",
           "guidance_combine", "guided", "model_time", "q_sample", "sample"]
