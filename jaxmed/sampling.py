"""Images from a trained generative model's workdir, whatever its family.

The family (from config.json, through the registry) supplies the sampler: a GAN its EMA
generator, a VAE its decoder on draws from the prior.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from jaxmed import families
from jaxmed.errors import CheckpointError
from jaxmed.families.base import Generator
from jaxmed.families.generative import sample_images
from jaxmed.training.restore import BEST, RestoredRun, restore_run

WANTED = "a generative (e.g. GAN or VAE) workdir"


def restore_generator(workdir: Path | str, checkpoint: str | int = BEST) -> tuple[RestoredRun, Generator]:
    """The restored run of a generative workdir and its sampler.

    Args:
      checkpoint: "best" (default: the best step by FID where the run measured it, else the
        latest), "latest" or a step number (`jaxmed.training.restore.restore_run`).

    Raises:
      CheckpointError: the workdir is missing, holds a family that does not generate, or no checkpoint restores.
    """
    family, config = families.of_workdir(workdir, WANTED)
    if not family.generates:
        raise CheckpointError(f"{Path(workdir) / 'config.json'}: a {config.model!r} run does not generate images; "
                              f"this needs {WANTED}")
    run = restore_run(workdir, WANTED, checkpoint)
    return run, family.generator(run.config, run.definition)


def sample_from_workdir(workdir: Path | str, n: int, seed: int = 0, batch_size: int = 64,
                        checkpoint: str | int = BEST, class_name: str | None = None) -> tuple[np.ndarray, int]:
    """`n` images from the model of `workdir`'s latest checkpoint; the same workdir, `n` and `seed` give the same.

    Args:
      workdir: a generative run directory.
      n: number of images.
      seed: noise seed.
      batch_size: images generated per device call.
      checkpoint: which checkpoint ("best", "latest" or a step; see `restore_generator`).
      class_name: the class to draw, for a class-conditional model (None: a conditional
        model draws its classes in turn).

    Returns:
      (images (n, H, W, C) in [-1, 1], the checkpoint step used).

    Raises:
      CheckpointError: if the workdir has no generative checkpoint, or `class_name` is
        given and its model is unconditional or has no such class.
    """
    run, generator = restore_generator(workdir, checkpoint)
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
