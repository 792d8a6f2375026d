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
from jaxmed.training.restore import BEST, RestoredRun, restore_run

WANTED = "a generative (e.g. GAN, VAE or diffusion) workdir"


def restore_generator(workdir: Path | str, checkpoint: str | int = BEST, settings: Mapping[str, Any] | None = None
                      ) -> tuple[RestoredRun, Generator]:
    """The restored run of a generative workdir and its sampler.

    Args:
      workdir: a generative run directory.
      checkpoint: "best" (default: the best step by FID where the run measured it, else the
        latest), "latest" or a step number (`jaxmed.training.restore.restore_run`).
      settings: config overrides for drawing, e.g. {"sampling.steps": 10} (validated like `--set`).

    Raises:
      CheckpointError: the workdir is missing, holds a family that does not generate, or no checkpoint restores.
      UsageError: a setting the run does not have.
    """
    family, config = families.of_workdir(workdir, WANTED)
    if not family.generates:
        raise CheckpointError(f"{Path(workdir) / 'config.json'}: a {config.model!r} run does not generate images; "
                              f"this needs {WANTED}")
    settings = dict(settings or {})
    known = config_lib.flat_items(config)
    for key in settings:  # before anything is restored
        if key not in known:
            raise UsageError(f"{Path(workdir) / 'config.json'}: a {config.model!r} run has no {key!r} setting")
    run = restore_run(workdir, WANTED, checkpoint)
    return run, family.generator(config_lib.apply_overrides(run.config, settings), run.definition)


def sample_from_workdir(workdir: Path | str, n: int, seed: int = 0, batch_size: int = 64,
                        checkpoint: str | int = BEST, class_name: str | None = None,
                        settings: Mapping[str, Any] | None = None) -> tuple[np.ndarray, int]:
    """`n` images from a generative workdir; the same workdir, `n`, `seed` and options give the same images.

    Args:
      workdir: a generative run directory.
      n: number of images.
      seed: noise seed.
      batch_size: images generated per device call.
      checkpoint: which checkpoint ("best", "latest" or a step; see `restore_generator`).
      class_name: the class to draw, for a class-conditional model (None: a conditional
        GAN draws its classes in turn).
      settings: config overrides for drawing (see `restore_generator`).

    Returns:
      (images (n, H, W, C) in [-1, 1], the checkpoint step used).

    Raises:
      CheckpointError: if the workdir has no generative checkpoint, or `class_name` is
        given and its model is unconditional or has no such class.
      UsageError: a setting the run does not have.
    """
    run, generator = restore_generator(workdir, checkpoint, settings)
    labels = None if class_name is None else np.full(n, class_index(run, generator, class_name), np.int32)
    z = jax.random.normal(jax.random.key(seed), (n, generator.latent_dim))
    return sample_images(generator.generate, run.state, z, batch_size, labels_N=labels), int(run.state.step)


def class_index(run: RestoredRun, generator: Generator, class_name: str) -> int:
    """The index of `class_name` among the classes `run`'s generator was trained on.

    Raises:
      CheckpointError: the generator is unconditional, or does not know the class.
    """
    if not generator.class_names:
        raise CheckpointError(f"{run.workdir.root}: an unconditional model has no classes to sample; "
                              "train with conditional=true to sample by class")
    if class_name not in generator.class_names:
        raise CheckpointError(f"{run.workdir.root}: unknown class {class_name!r}; the model's classes: "
                              f"{', '.join(generator.class_names)}")
    return generator.class_names.index(class_name)
