"""Pure VAE step functions: (state, batch) -> (new state, metrics), sampling and reconstruction.

One train step draws the reparameterisation noise from the state's key, computes the
negative ELBO (`jaxmed.losses.vae_loss`) and its gradient in one reverse pass, and
applies one optimizer update. With `accumulate_steps=K` the batch and its noise are
split into K microbatches as in the GAN step (`jaxmed.train.accumulation`).
`make_vae_train_step` jits it once with the state donated, optionally for a mesh.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from jaxmed.losses import vae_loss
from jaxmed.train import sharding
from jaxmed.train.accumulation import sum_over_microbatches
from jaxmed.train.vae_state import VaeDefinition, VaeState


def kl_weight_at(definition: VaeDefinition, step: jax.Array) -> jax.Array:
    """The KL weight of train step `step` (0-based): linear warm-up to `kl_weight`, then constant."""
    if definition.kl_warmup_steps == 0:
        return jnp.asarray(definition.kl_weight, jnp.float32)
    ramp = jnp.minimum(1.0, (step.astype(jnp.float32) + 1.0) / definition.kl_warmup_steps)
    return definition.kl_weight * ramp


def vae_train_step(definition: VaeDefinition, state: VaeState,
                   images_BxHxWxC: jax.Array) -> tuple[VaeState, dict[str, jax.Array]]:
    """One optimizer update on a batch of images.

    Args:
      definition: the static structure.
      state: the current train state.
      images_BxHxWxC: training images in [-1, 1].

    Returns:
      The new state, and float32 scalar metrics averaged over the microbatches: `loss`
      (the weighted negative ELBO), `reconstruction` (summed squared error per image),
      `kl` (per image) and `kl_weight`.
    """
    key, noise_key = jax.random.split(jax.random.wrap_key_data(state.key))
    noise_BxZ = jax.random.normal(noise_key, (images_BxHxWxC.shape[0], definition.latent_dim))
    kl_weight = kl_weight_at(definition, state.step)

    def microbatch_gradients(stats, microbatch):
        images_bxHxWxC, noise_bxZ = microbatch

        def loss(params):
            # copy=True: BatchNorm's updated running statistics leave through the auxiliary output.
            model = nnx.merge(definition.model, params, stats, copy=True)
            reconstructions, mean_bxZ, log_var_bxZ = model(images_bxHxWxC, noise_bxZ)
            total, (reconstruction, kl) = vae_loss(images_bxHxWxC, reconstructions, mean_bxZ, log_var_bxZ, kl_weight)
            return total, (nnx.state(model, nnx.BatchStat), reconstruction, kl)

        (total, (updated_stats, reconstruction, kl)), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
        return updated_stats, (grads, {"loss": total, "reconstruction": reconstruction, "kl": kl})

    microbatches = definition.accumulate_steps
    stats, sums = sum_over_microbatches(microbatch_gradients, state.stats, (images_BxHxWxC, noise_BxZ), microbatches)
    grads, metrics = jax.tree.map(lambda total: total / microbatches, sums)
    updates, opt = definition.optimizer.update(grads, state.opt, state.params)
    new_state = state.replace(step=state.step + 1, key=jax.random.key_data(key),
                              params=optax.apply_updates(state.params, updates), stats=stats, opt=opt)
    return new_state, {**metrics, "kl_weight": kl_weight}


def make_vae_train_step(definition: VaeDefinition, mesh: Mesh | None = None):
    """`vae_train_step` for `definition`, jitted once with the state donated.

    Args:
      definition: the run's static structure.
      mesh: a `jaxmed.train.sharding.make_mesh` mesh: state replicated, images sharded
        along `data` (place the inputs that way, as for `make_gan_train_step`); None lets
        jit place everything on the default device.

    Returns:
      `step(state, images_BxHxWxC) -> (state, metrics)`.
    """
    return sharding.jit_train_step(functools.partial(vae_train_step, definition), mesh)


@functools.partial(jax.jit, static_argnums=0)
def decode(model_def: nnx.GraphDef, params: nnx.State, stats: nnx.State, z_BxZ: jax.Array) -> jax.Array:
    """Images in [-1, 1] decoded from latent vectors in evaluation mode (BatchNorm running statistics)."""
    model = nnx.merge(model_def, params, stats, copy=True)
    model.eval()
    return model.decoder(z_BxZ)


@functools.partial(jax.jit, static_argnums=0)
def reconstruct(model_def: nnx.GraphDef, params: nnx.State, stats: nnx.State, images_BxHxWxC: jax.Array) -> jax.Array:
    """Each image's decoded posterior mean, in evaluation mode."""
    model = nnx.merge(model_def, params, stats, copy=True)
    model.eval()
    return model.reconstruct(images_BxHxWxC)
