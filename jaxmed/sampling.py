"""Images from a trained generative model's workdir, whatever its family.

The family (from config.json, through the registry) supplies the sampler: a GAN its EMA
generator, a VAE its decoder on draws from the prior, a diffusion model its EMA U-Net with the
configured sampler. `settings` override the restored config's keys that only change how images
are drawn (e.g. a diffusion run's `sampling.steps`), without retraining.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxmed import config as config_lib
from jaxmed import families
from jaxmed.errors import CheckpointError, UsageError
from jaxmed.families.base import Generator
from jaxmed.families.generative import sample_images
from jaxmed.training.restore import RestoredRun, restore_run

WANTED = "a generative (e.g. GAN or VAE) workdir"


def _check_settings(workdir: Path | str, settings: Mapping[str, Any]) -> None:
    """Refuses a setting the workdir's config does not have, in one line, before anything is restored."""
    _, config = families.of_workdir(workdir, WANTED)
    known = config_lib.flat_items(config)
    for key in settings:
        if key not in known:
            raise UsageError(f"{Path(workdir) / 'config.json'}: a {config.model!r} run has no {key!r} setting")


def restore_generator(workdir: Path | str, settings: Mapping[str, Any] | None = None
                      ) -> tuple[RestoredRun, Generator]:
    """The restored run of a generative workdir and its sampler.

    Args:
      workdir: a generative run directory.
      settings: config overrides for drawing, e.g. {"sampling.steps": 10} (validated like `--set`).

    Raises:
      CheckpointError: the workdir is missing, holds a family that does not generate, or no checkpoint restores.
      UsageError: a setting the run's config does not have, or an invalid value.
    """
    settings = dict(settings or {})
    if settings:
        _check_settings(workdir, settings)
    run = restore_run(workdir, WANTED)
    config = config_lib.apply_overrides(run.config, settings) if settings else run.config
    generator = run.family.generator(config, run.definition)
    if generator is None:
        raise CheckpointError(f"{run.workdir.config}: a {run.config.model!r} run does not generate images; this "
                              f"needs {WANTED}")
    return run, generator


def sample_from_workdir(workdir: Path | str, n: int, seed: int = 0, batch_size: int = 64,
                        settings: Mapping[str, Any] | None = None) -> tuple[np.ndarray, int]:
    """`n` images from the model of `workdir`'s latest checkpoint; the same workdir, `n` and `seed` give the same.

    Args:
      workdir: a generative run directory.
      n: number of images.
      seed: noise seed.
      batch_size: images generated per device call.
      settings: config overrides for drawing (see `restore_generator`).

    Returns:
      (images (n, H, W, C) in [-1, 1], the checkpoint step used).

    Raises:
      CheckpointError: if the workdir has no generative checkpoint.
      UsageError: a setting the run does not have.
    """
    run, generator = restore_generator(workdir, settings)
    z = jax.random.normal(jax.random.key(seed), (n, generator.latent_dim))
    return sample_images(generator.generate, run.state, z, batch_size), int(run.state.step)
