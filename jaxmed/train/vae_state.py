"""The VAE train state (a pytree of arrays) and its static definition.

As for the GAN (`jaxmed.train.gan_state`): `VaeState` is what a step changes and a
checkpoint saves; `VaeDefinition` is rebuilt from the saved config.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from jaxmed.models.vae import VAE
from jaxmed.train.config import VaeConfig, compute_dtype, model_conv_backend
from jaxmed.train.optimizer import build_optimizer


@struct.dataclass
class VaeState:
    """Everything a VAE step changes.

    Attributes:
      step: number of completed train steps (int32 scalar).
      key: raw uint32[2] PRNG key for the reparameterisation noise.
      params, stats: the model's parameters and BatchNorm running statistics.
      opt: the optax state.
    """

    step: jax.Array
    key: jax.Array
    params: nnx.State
    stats: nnx.State
    opt: optax.OptState


@dataclasses.dataclass(frozen=True)
class VaeDefinition:
    """The static structure of a VAE run, derived from its config."""

    model: nnx.GraphDef
    optimizer: optax.GradientTransformation
    latent_dim: int
    kl_weight: float
    kl_warmup_steps: int
    accumulate_steps: int = 1


def build_vae(config: VaeConfig, key: jax.Array) -> VAE:
    """The config's VAE with parameters from `key`."""
    return VAE(config.image_size, config.channels, config.latent_dim, dtype=compute_dtype(config.precision),
               conv_backend=model_conv_backend(config), rngs=nnx.Rngs(params=key))


def vae_definition(config: VaeConfig) -> VaeDefinition:
    """Builds the static structure for `config` without allocating parameters."""
    model = nnx.eval_shape(lambda: build_vae(config, jax.random.key(0)))
    return VaeDefinition(model=nnx.graphdef(model), optimizer=build_optimizer(config.optimizer, config.steps),
                         latent_dim=config.latent_dim, kl_weight=config.kl_weight,
                         kl_warmup_steps=config.kl_warmup_steps, accumulate_steps=config.accumulate_steps)


def init_vae_state(config: VaeConfig, definition: VaeDefinition, key: jax.Array) -> VaeState:
    """Fresh parameters and optimizer state from `key` (normally `jax.random.key(config.seed)`)."""
    init_key, noise_key = jax.random.split(key)
    _, params, stats = nnx.split(build_vae(config, init_key), nnx.Param, nnx.BatchStat)
    return VaeState(step=jnp.zeros((), jnp.int32), key=jax.random.key_data(noise_key), params=params, stats=stats,
                    opt=definition.optimizer.init(params))
