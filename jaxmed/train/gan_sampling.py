"""A trained GAN from its workdir: its newest restorable state, and samples of its EMA generator."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from jax.sharding import SingleDeviceSharding

from jaxmed.errors import CheckpointError
from jaxmed.train import config as config_lib
from jaxmed.train.checkpoint import Checkpoints, abstract_like
from jaxmed.train.config import GanConfig
from jaxmed.train.gan_loop import sample_images
from jaxmed.train.gan_state import GanDefinition, GanState, gan_definition, init_gan_state
from jaxmed.train.workdir import Workdir


def restore_from_workdir(workdir: Path | str) -> tuple[GanConfig, GanDefinition, GanState]:
    """The config, static definition and newest restorable train state of a GAN workdir, on one device.

    Raises:
      CheckpointError: if the workdir or its config is missing, or no checkpoint restores.
    """
    paths = Workdir(Path(workdir))
    if not paths.root.is_dir():
        raise CheckpointError(f"{paths.root}: workdir does not exist")
    if not paths.config.is_file():
        raise CheckpointError(f"{paths.config}: missing; is {paths.root} a jaxmed GAN workdir?")
    config = config_lib.load(GanConfig, paths.config)
    definition = gan_definition(config)
    with Checkpoints(paths.checkpoints, keep=config.checkpoint.keep) as checkpoints:
        # The newest checkpoint that restores (a damaged one is reported and passed over).
        abstract = jax.eval_shape(lambda key: init_gan_state(config, definition, key), jax.random.key(0))
        state, _, _ = checkpoints.restore(abstract_like(abstract, SingleDeviceSharding(jax.devices()[0])))
    return config, definition, state


def sample_from_workdir(workdir: Path | str, n: int, seed: int = 0, batch_size: int = 64) -> tuple[np.ndarray, int]:
    """`n` images from the EMA generator of `workdir`'s latest checkpoint.

    The same workdir, `n` and `seed` give the same images.

    Args:
      workdir: a GAN run directory.
      n: number of images.
      seed: noise seed.
      batch_size: images generated per device call.

    Returns:
      (images (n, H, W, C) in [-1, 1], the checkpoint step used).

    Raises:
      CheckpointError: if the workdir has no GAN checkpoint.
    """
    config, definition, state = restore_from_workdir(workdir)
    z = jax.random.normal(jax.random.key(seed), (n, config.latent_dim))
    return sample_images(definition, state, z, batch_size), int(state.step)
