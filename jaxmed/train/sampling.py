"""A trained generative model from its workdir: its newest restorable state, and samples.

Works for GAN and VAE workdirs alike (the saved config's `model` says which): a GAN
samples its EMA generator, a VAE decodes draws from its prior.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import SingleDeviceSharding

from jaxmed.errors import CheckpointError
from jaxmed.train import config as config_lib
from jaxmed.train.checkpoint import Checkpoints, abstract_like
from jaxmed.train.config import GanConfig, VaeConfig
from jaxmed.train.gan_loop import gan_model
from jaxmed.train.generative_loop import GenerativeModel, sample_images
from jaxmed.train.vae_loop import vae_model
from jaxmed.train.workdir import Workdir

# config.json's "model" -> (config type, the family's parts).
_FAMILIES = {model: (config_type, family) for config_type, family in ((GanConfig, gan_model), (VaeConfig, vae_model))
             for model in config_type.MODELS}


def restore_from_workdir(workdir: Path | str) -> tuple[GanConfig | VaeConfig, GenerativeModel, Any]:
    """The config, the family's parts and the newest restorable train state of a GAN or VAE workdir, on one device.

    Raises:
      CheckpointError: if the workdir or its config is missing, it is not a GAN or VAE run, or
        no checkpoint restores.
    """
    paths = Workdir(Path(workdir))
    model_name = paths.saved_model("a jaxmed GAN or VAE workdir")
    if model_name not in _FAMILIES:
        raise CheckpointError(f"{paths.config}: a {model_name!r} run; this needs a GAN (dcgan) or VAE workdir")
    config_type, family = _FAMILIES[model_name]
    config = config_lib.load(config_type, paths.config)
    model = family(config)
    with Checkpoints(paths.checkpoints, keep=config.checkpoint.keep) as checkpoints:
        # The newest checkpoint that restores (a damaged one is reported and passed over).
        abstract = jax.eval_shape(model.init_state, jax.random.key(0))
        state, _, _ = checkpoints.restore(abstract_like(abstract, SingleDeviceSharding(jax.devices()[0])))
    return config, model, state


def sample_from_workdir(workdir: Path | str, n: int, seed: int = 0, batch_size: int = 64) -> tuple[np.ndarray, int]:
    """`n` images from the model of `workdir`'s latest checkpoint (a GAN's EMA generator, a VAE's decoder).

    The same workdir, `n` and `seed` give the same images.

    Args:
      workdir: a GAN or VAE run directory.
      n: number of images.
      seed: noise seed.
      batch_size: images generated per device call.

    Returns:
      (images (n, H, W, C) in [-1, 1], the checkpoint step used).

    Raises:
      CheckpointError: if the workdir has no GAN or VAE checkpoint.
    """
    config, model, state = restore_from_workdir(workdir)
    z = jax.random.normal(jax.random.key(seed), (n, model.latent_dim))
    return sample_images(model.generate, state, z, batch_size), int(state.step)
