"""The GAN family: a DCGAN (the seed paper's network), its config, state, pure step and sampler.

One train step is one discriminator update and one generator update computed from the
same forward pass (the TensorFlow DCGAN tutorial's form): G(z) is evaluated once, D sees
the real and the generated batch, and one reverse pass per loss gives D's gradient of its
loss and G's gradient of its own. XLA removes the parts of each reverse pass that the
other network's update does not need.

With `accumulate_steps=K` the batch and its noise are split into K microbatches and the
gradients summed over them before the one update (`jaxmed.training.accumulation`, which
explains what that means for BatchNorm). Samples come from an exponential moving average
of the generator.

Example (about 5 minutes on a 2-core CPU):

    jaxmed train gan --data phantom:brain --image-size 64 --batch-size 16 --steps 300 --workdir runs/gan
"""

from __future__ import annotations

import dataclasses
import functools
import typing

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from jaxmed.config import GenerativeConfig, require
from jaxmed.families.base import Generator, Task, compute_dtype, conv_backend, parameter_count
from jaxmed.families.generative import GenerativeFamily
from jaxmed.losses import GAN_LOSSES, discriminator_loss, generator_loss
from jaxmed.models.dcgan import Discriminator, Generator as DcganGenerator
from jaxmed.training.accumulation import sum_over_microbatches
from jaxmed.training.optimizer import build_optimizer

# The EMA warms up like tf.train.ExponentialMovingAverage(num_updates=step): early
# samples follow the live generator instead of averaging in the random initialisation.
EMA_WARMUP = 10.0


@dataclasses.dataclass(frozen=True)
class GanConfig(GenerativeConfig):
    """A DCGAN run (the seed experiment: 128x128 brain MRI, batch 32, Adam 2e-4/0.5).

    Attributes:
      model: architecture ("dcgan").
      loss: "minimax", "non_saturating" or "hinge" (see `jaxmed.losses`).
      ema_decay: decay of the generator's exponential moving average (used for sampling).
      (the rest: `jaxmed.config.GenerativeConfig`)
    """

    model: str = "dcgan"
    loss: str = "non_saturating"
    ema_decay: float = 0.999

    MODELS: typing.ClassVar[tuple[str, ...]] = ("dcgan",)

    def __post_init__(self):
        super().__post_init__()
        require(self.loss in GAN_LOSSES, f"loss must be one of {', '.join(GAN_LOSSES)}, got {self.loss!r}")
        require(0.0 <= self.ema_decay < 1.0, "ema_decay must be in [0, 1)")


@struct.dataclass
class GanState:
    """Everything a GAN step changes: one pytree of arrays, jitted, donated, sharded and saved as it is.

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
    """The static structure of a GAN run, rebuilt from its config (a checkpoint holds only the state)."""

    generator: nnx.GraphDef
    discriminator: nnx.GraphDef
    generator_optimizer: optax.GradientTransformation
    discriminator_optimizer: optax.GradientTransformation
    latent_dim: int
    loss: str
    ema_decay: float
    accumulate_steps: int = 1


def _build_networks(config: GanConfig, key: jax.Array) -> tuple[DcganGenerator, Discriminator]:
    generator_key, discriminator_key = jax.random.split(key)
    dtype, backend = compute_dtype(config), conv_backend(config)
    generator = DcganGenerator(config.image_size, config.channels, config.latent_dim, dtype=dtype,
                               conv_backend=backend, rngs=nnx.Rngs(params=generator_key))
    discriminator = Discriminator(config.image_size, config.channels, dtype=dtype, conv_backend=backend,
                                  rngs=nnx.Rngs(params=discriminator_key))
    return generator, discriminator


def gan_train_step(definition: GanDefinition, state: GanState,
                   real_BxHxWxC: jax.Array) -> tuple[GanState, dict[str, jax.Array]]:
    """One discriminator and one generator update on a batch of real images in [-1, 1].

    Returns:
      The new state, and float32 scalar metrics: `d_loss`, `g_loss`, `d_real` (mean
      D(x)) and `d_fake` (mean D(G(z))), averaged over the microbatches.
    """
    key, noise_key = jax.random.split(jax.random.wrap_key_data(state.key))
    z_BxZ = jax.random.normal(noise_key, (real_BxHxWxC.shape[0], definition.latent_dim))

    def microbatch_gradients(stats, microbatch):
        generator_stats, discriminator_stats = stats
        real_bxHxWxC, z_bxZ = microbatch

        def losses(generator_params, discriminator_params):
            # copy=True: BatchNorm updates its running statistics on fresh variables of this
            # trace; the updated statistics leave through the auxiliary output.
            generator = nnx.merge(definition.generator, generator_params, generator_stats, copy=True)
            discriminator = nnx.merge(definition.discriminator, discriminator_params, discriminator_stats,
                                      copy=True)
            real_logits_b = discriminator(real_bxHxWxC)
            fake_logits_b = discriminator(generator(z_bxZ))
            loss_pair = (discriminator_loss(real_logits_b, fake_logits_b, definition.loss),
                         generator_loss(fake_logits_b, definition.loss))
            updated_stats = (nnx.state(generator, nnx.BatchStat), nnx.state(discriminator, nnx.BatchStat))
            return loss_pair, (updated_stats, real_logits_b, fake_logits_b)

        (d_loss, g_loss), pullback, (updated_stats, real_logits_b, fake_logits_b) = jax.vjp(
            losses, state.generator_params, state.discriminator_params, has_aux=True)
        one, zero = jnp.ones((), d_loss.dtype), jnp.zeros((), d_loss.dtype)
        _, discriminator_grads = pullback((one, zero))
        generator_grads, _ = pullback((zero, one))
        metrics = {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_real": jnp.mean(jax.nn.sigmoid(real_logits_b)),
            "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits_b)),
        }
        return updated_stats, (generator_grads, discriminator_grads, metrics)

    microbatches = definition.accumulate_steps
    (generator_stats, discriminator_stats), sums = sum_over_microbatches(
        microbatch_gradients, (state.generator_stats, state.discriminator_stats), (real_BxHxWxC, z_BxZ),
        microbatches)
    # Each microbatch's losses are means over equally many rows: their mean is the batch mean.
    generator_grads, discriminator_grads, metrics = jax.tree.map(lambda total: total / microbatches, sums)

    generator_params, generator_opt = _apply(definition.generator_optimizer, generator_grads,
                                             state.generator_opt, state.generator_params)
    discriminator_params, discriminator_opt = _apply(definition.discriminator_optimizer, discriminator_grads,
                                                     state.discriminator_opt, state.discriminator_params)
    step = state.step + 1
    decay = jnp.minimum(definition.ema_decay, (1.0 + step) / (EMA_WARMUP + step))
    new_state = state.replace(
        step=step,
        key=jax.random.key_data(key),
        generator_params=generator_params,
        generator_stats=generator_stats,
        discriminator_params=discriminator_params,
        discriminator_stats=discriminator_stats,
        ema_params=optax.incremental_update(generator_params, state.ema_params, 1.0 - decay),
        ema_stats=optax.incremental_update(generator_stats, state.ema_stats, 1.0 - decay),
        generator_opt=generator_opt,
        discriminator_opt=discriminator_opt,
    )
    return new_state, metrics


def _apply(optimizer: optax.GradientTransformation, grads, opt_state, params):
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def generate(generator_def: nnx.GraphDef, params: nnx.State, stats: nnx.State, z_BxZ: jax.Array) -> jax.Array:
    """Images in [-1, 1] from a generator in evaluation mode (BatchNorm running statistics).

    Args:
      generator_def: the generator's graph definition (`GanDefinition.generator`).
      params, stats: its parameters and running statistics (e.g. the EMA copy).
      z_BxZ: latent vectors.
    """
    generator = nnx.merge(generator_def, params, stats)
    generator.eval()
    return generator(z_BxZ)


generate_jit = jax.jit(generate, static_argnums=0)


def _generate_ema(definition: GanDefinition, state: GanState, z_BxZ: jax.Array) -> jax.Array:
    return generate_jit(definition.generator, state.ema_params, state.ema_stats, z_BxZ)


class GanFamily(GenerativeFamily):
    """DCGAN: `jaxmed train gan`."""

    name = "gan"
    config_type = GanConfig
    description = "train a DCGAN"
    loss_keys = ("d_loss", "g_loss")
    loss_title = "GAN training losses"

    def definition(self, config: GanConfig, task: Task) -> GanDefinition:
        generator, discriminator = nnx.eval_shape(lambda: _build_networks(config, jax.random.key(0)))
        return GanDefinition(
            generator=nnx.graphdef(generator),
            discriminator=nnx.graphdef(discriminator),
            generator_optimizer=build_optimizer(config.optimizer, task.total_steps),
            discriminator_optimizer=build_optimizer(config.optimizer, task.total_steps),
            latent_dim=config.latent_dim,
            loss=config.loss,
            ema_decay=config.ema_decay,
            accumulate_steps=config.accumulate_steps,
        )

    def init_state(self, config: GanConfig, definition: GanDefinition, key: jax.Array) -> GanState:
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

    def train_step(self, definition: GanDefinition, state: GanState, batch) -> tuple[GanState, dict]:
        return gan_train_step(definition, state, batch["image"])

    def parameter_counts(self, state: GanState) -> dict[str, int]:
        return {"generator": parameter_count(state.generator_params),
                "discriminator": parameter_count(state.discriminator_params)}

    def networks(self, config: GanConfig) -> dict:
        generator, discriminator = nnx.eval_shape(lambda: _build_networks(config, jax.random.key(0)))
        image = (1, config.image_size, config.image_size, config.channels)
        return {"generator/": (generator, (1, config.latent_dim)), "discriminator/": (discriminator, image)}

    def generator(self, config: GanConfig, definition: GanDefinition) -> Generator:
        return Generator(latent_dim=definition.latent_dim, generate=functools.partial(_generate_ema, definition))


FAMILY = GanFamily()
