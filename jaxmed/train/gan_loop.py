"""Training a GAN: `train_gan`, and images from its EMA generator.

The loop (resuming, logging, checkpoints, sample grids, plots, devices and hosts) is
the one VAEs share, `jaxmed.train.generative_loop`; this module supplies the GAN's
parts: its state, its step (`jaxmed.train.gan_steps`) and its sampler, the EMA
generator.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import numpy as np

from jaxmed.train import generative_loop
from jaxmed.train.config import GanConfig
from jaxmed.train.gan_state import GanDefinition, GanState, gan_definition, init_gan_state
from jaxmed.train.gan_steps import generate_jit, make_gan_train_step


def _generate_ema(definition: GanDefinition, state: GanState, z_BxZ: jax.Array) -> jax.Array:
    return generate_jit(definition.generator, state.ema_params, state.ema_stats, z_BxZ)


def gan_model(config: GanConfig, definition: GanDefinition | None = None) -> generative_loop.GenerativeModel:
    """The GAN's parts for `jaxmed.train.generative_loop` (samples come from the EMA generator)."""
    definition = definition or gan_definition(config)
    return generative_loop.GenerativeModel(
        name="gan",
        init_state=lambda key: init_gan_state(config, definition, key),
        make_train_step=functools.partial(make_gan_train_step, definition),
        generate=functools.partial(_generate_ema, definition),
        latent_dim=definition.latent_dim,
        loss_keys=("d_loss", "g_loss"),
        loss_title="GAN training losses",
    )


def sample_images(definition: GanDefinition, state: GanState, z_NxZ: jax.Array, batch_size: int,
                  placement: jax.sharding.Sharding | None = None) -> np.ndarray:
    """EMA-generator images for `z_NxZ` as a host array in [-1, 1] (see `generative_loop.sample_images`)."""
    return generative_loop.sample_images(functools.partial(_generate_ema, definition), state, z_NxZ, batch_size,
                                         placement)


def train_gan(config: GanConfig, workdir: Path | str, images: np.ndarray | None = None, *,
              progress: bool = True) -> GanState:
    """Trains (or resumes) a GAN in `workdir` until `config.steps`; returns the final state.

    Arguments and errors: those of `generative_loop.train_generative`, less `model`.
    """
    return generative_loop.train_generative(config, gan_model(config), workdir, images, progress=progress)
