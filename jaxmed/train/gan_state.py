"""The GAN train state: one pytree holding everything a step reads or writes.

`GanState` is data only (arrays), so it can be jitted, donated, sharded and saved by
Orbax as it is. `GanDefinition` is the static rest: the NNX graph definitions of the
two networks, the optax transformations and the step's settings, fixed by the
config. A checkpoint holds the state; the definition is rebuilt from the saved config.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from jaxmed.models.dcgan import Discriminator, Generator
from jaxmed.train.config import GanConfig, compute_dtype, model_conv_backend
from jaxmed.train.optimizer import build_optimizer


@struct.dataclass
class GanState:
    """Everything a GAN step changes.

    Attributes:
      step: number of completed train steps (int32 scalar).
      key: raw uint32[2] PRNG key for the generator's noise; raw so it saves as a plain array.
      generator_params, generator_stats: generator parameters and BatchNorm running statistics.
      discriminator_params, discriminator_stats: the same for the discriminator.
      ema_params, ema_stats: exponential moving average of the generator (used for sampling).
      generator_opt, discriminator_opt: optax states.
    """

    step: jax.Array
    key: jax.Array
    generator_params: nnx.State
    generator_stats: nnx.State
    discriminator_params: nnx.State
    discriminator_stats: nnx.State
    ema_params: nnx.State
    ema_stats: nnx.State
    generator_opt: optax.OptState
    discriminator_opt: optax.OptState


@dataclasses.dataclass(frozen=True)
class GanDefinition:
    """The static structure of a GAN run, derived from its config."""

    generator: nnx.GraphDef
    discriminator: nnx.GraphDef
    generator_optimizer: optax.GradientTransformation
    discriminator_optimizer: optax.GradientTransformation
    latent_dim: int
    loss: str
    ema_decay: float
    accumulate_steps: int = 1


def _build_networks(config: GanConfig, key: jax.Array) -> tuple[Generator, Discriminator]:
    generator_key, discriminator_key = jax.random.split(key)
    dtype = compute_dtype(config.precision)
    conv_backend = model_conv_backend(config)
    generator = Generator(config.image_size, config.channels, config.latent_dim, dtype=dtype,
                          conv_backend=conv_backend, rngs=nnx.Rngs(params=generator_key))
    discriminator = Discriminator(config.image_size, config.channels, dtype=dtype, conv_backend=conv_backend,
                                  rngs=nnx.Rngs(params=discriminator_key))
    return generator, discriminator


def gan_definition(config: GanConfig) -> GanDefinition:
    """Builds the static structure for `config` without allocating parameters."""
    generator, discriminator = nnx.eval_shape(lambda: _build_networks(config, jax.random.key(0)))
    return GanDefinition(
        generator=nnx.graphdef(generator),
        discriminator=nnx.graphdef(discriminator),
        generator_optimizer=build_optimizer(config.optimizer, config.steps),
        discriminator_optimizer=build_optimizer(config.optimizer, config.steps),
        latent_dim=config.latent_dim,
        loss=config.loss,
        ema_decay=config.ema_decay,
        accumulate_steps=config.accumulate_steps,
    )


def init_gan_state(config: GanConfig, definition: GanDefinition, key: jax.Array) -> GanState:
    """Fresh parameters and optimizer states from `key` (normally `jax.random.key(config.seed)`)."""
    init_key, noise_key = jax.random.split(key)
    generator, discriminator = _build_networks(config, init_key)
    _, generator_params, generator_stats = nnx.split(generator, nnx.Param, nnx.BatchStat)
    _, discriminator_params, discriminator_stats = nnx.split(discriminator, nnx.Param, nnx.BatchStat)
    return GanState(
        step=jnp.zeros((), jnp.int32),
        key=jax.random.key_data(noise_key),
        generator_params=generator_params,
        generator_stats=generator_stats,
        discriminator_params=discriminator_params,
        discriminator_stats=discriminator_stats,
        # Copies: the EMA must not share buffers with the live generator, which steps donate.
        ema_params=jax.tree.map(jnp.copy, generator_params),
        ema_stats=jax.tree.map(jnp.copy, generator_stats),
        generator_opt=definition.generator_optimizer.init(generator_params),
        discriminator_opt=definition.discriminator_optimizer.init(discriminator_params),
    )
