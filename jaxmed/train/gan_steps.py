"""Pure GAN step functions: (state, batch) -> (new state, metrics), and sampling.

One train step is one discriminator update and one generator update computed from
the same forward pass (the TensorFlow DCGAN tutorial's form): G(z) is evaluated
once, D sees the real and the generated batch, and one reverse pass per loss gives
D's gradient of its loss and G's gradient of its own. XLA removes the parts of each
reverse pass that the other network's update does not need.

With `accumulate_steps=K` the batch and its noise are split into K microbatches and
the gradients summed over them before the one update (`jaxmed.train.accumulation`;
it explains what that means for BatchNorm). K=1 is the plain step.

`make_gan_train_step` closes over the static `GanDefinition` and jits once, donating
the state's buffers so parameters update in place; given a mesh, it compiles with
explicit shardings (`jaxmed.train.sharding`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from jaxmed.losses import discriminator_loss, generator_loss
from jaxmed.train import sharding
from jaxmed.train.accumulation import sum_over_microbatches
from jaxmed.train.gan_state import GanDefinition, GanState

# The EMA warms up like tf.train.ExponentialMovingAverage(num_updates=step): early
# samples follow the live generator instead of averaging in the random initialisation.
EMA_WARMUP = 10.0


def gan_train_step(definition: GanDefinition, state: GanState,
                   real_BxHxWxC: jax.Array) -> tuple[GanState, dict[str, jax.Array]]:
    """One discriminator and one generator update on a batch of real images.

    Args:
      definition: the static structure (graph definitions, optimizers, loss, EMA decay,
        microbatches per step).
      state: the current train state.
      real_BxHxWxC: real images in [-1, 1].

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


def make_gan_train_step(definition: GanDefinition, mesh: Mesh | None = None):
    """`gan_train_step` for `definition`, jitted once with the state donated.

    Args:
      definition: the run's static structure.
      mesh: a `jaxmed.train.sharding.make_mesh` mesh. With one, the step is compiled
        for it: state replicated, images sharded along `data`, metrics replicated.
        Place the inputs that way (`jax.device_put(state, sharding.replicated(mesh))`,
        `sharding.place_global(images, sharding.batch_sharding(mesh))`, as the loop
        does): unplaced inputs are moved, but cost a second compilation. Without a
        mesh, jit places everything on the default device.

    Returns:
      `step(state, real_BxHxWxC) -> (state, metrics)`.
    """
    return sharding.jit_train_step(functools.partial(gan_train_step, definition), mesh)


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
