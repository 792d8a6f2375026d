"""The one optimizer builder: optax AdamW with an optional warm-up + cosine schedule and clipping.

AdamW with weight_decay 0 and a constant rate is exactly Adam (the DCGAN setting).
"""

from __future__ import annotations

import optax

from jaxmed.config import OptimizerConfig


def build_optimizer(config: OptimizerConfig, total_steps: int) -> optax.GradientTransformation:
    """An optax transformation for `config` over a run of `total_steps` updates.

    Args:
      config: learning rate, betas, weight decay, schedule, warm-up share, clipping.
      total_steps: the run's length (the cosine schedule decays to 0 over it).
    """
    learning_rate: optax.ScalarOrSchedule = config.lr
    if config.schedule == "cosine":
        learning_rate = optax.warmup_cosine_decay_schedule(
            init_value=0.0, peak_value=config.lr, warmup_steps=int(config.warmup_fraction * total_steps),
            decay_steps=max(total_steps, 1))
    optimizer = optax.adamw(learning_rate, b1=config.b1, b2=config.b2, weight_decay=config.weight_decay)
    if config.clip_norm > 0:
        optimizer = optax.chain(optax.clip_by_global_norm(config.clip_norm), optimizer)
    return optimizer
