"""Training a VAE: `train_vae`, and images decoded from the prior.

The loop is the one GANs share (`jaxmed.train.generative_loop`); this module supplies
the VAE's parts: its state, its step (`jaxmed.train.vae_steps`), its sampler (the
decoder on z ~ N(0, I), BatchNorm in evaluation mode) and its own figure, real images
above their reconstructions (plots/reconstructions.png, refreshed with the other plots).
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import numpy as np

from jaxmed.export import SYNTHETIC_NOTE
from jaxmed.train import generative_loop, sharding
from jaxmed.train.config import VaeConfig
from jaxmed.train.vae_state import VaeDefinition, VaeState, init_vae_state, vae_definition
from jaxmed.train.vae_steps import decode, make_vae_train_step, reconstruct
from jaxmed.viz.figures import save_image_grid

# Images in the reconstruction figure.
RECONSTRUCTION_COLUMNS = 8


def _decode_prior(definition: VaeDefinition, state: VaeState, z_BxZ: jax.Array) -> jax.Array:
    return decode(definition.model, state.params, state.stats, z_BxZ)


def _write_reconstructions(definition: VaeDefinition, state: VaeState, real: np.ndarray, plots: Path,
                           placement: jax.sharding.Sharding | None, write: bool) -> None:
    originals = real[:RECONSTRUCTION_COLUMNS]
    placed = sharding.place_global(originals, placement) if placement is not None else originals
    reconstructions = np.asarray(reconstruct(definition.model, state.params, state.stats, placed))
    if write:
        save_image_grid(np.concatenate([originals, reconstructions]), plots / "reconstructions.png",
                            columns=len(originals), description=f"top row: real images; bottom row: {SYNTHETIC_NOTE}")


def vae_model(config: VaeConfig, definition: VaeDefinition | None = None) -> generative_loop.GenerativeModel:
    """The VAE's parts for `jaxmed.train.generative_loop`."""
    definition = definition or vae_definition(config)
    return generative_loop.GenerativeModel(
        name="vae",
        init_state=lambda key: init_vae_state(config, definition, key),
        make_train_step=functools.partial(make_vae_train_step, definition),
        generate=functools.partial(_decode_prior, definition),
        latent_dim=definition.latent_dim,
        loss_keys=("loss", "reconstruction", "kl"),
        loss_title="VAE training loss (negative ELBO) and its terms",
        write_figures=functools.partial(_write_reconstructions, definition),
    )


def train_vae(config: VaeConfig, workdir: Path | str, images: np.ndarray | None = None, *,
              progress: bool = True) -> VaeState:
    """Trains (or resumes) a VAE in `workdir` until `config.steps`; returns the final state.

    Arguments and errors: those of `generative_loop.train_generative`, less `model`.
    """
    return generative_loop.train_generative(config, vae_model(config), workdir, images, progress=progress)
