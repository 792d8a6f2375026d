"""The VAE family: a convolutional VAE (the DCGAN's layers as encoder and decoder), config, state, step.

One train step draws the reparameterisation noise from the state's key, computes the
negative ELBO (`jaxmed.losses.vae_loss`) and its gradient in one reverse pass, and applies
one optimizer update (microbatched as in the GAN step with `accumulate_steps`). Samples
are the decoder on z ~ N(0, I); the encoder's posterior mean is jaxmed's default in-domain
feature extractor (`jaxmed.evaluation.features`). Its own figures: real images above their
reconstructions (plots/reconstructions.png), and the decoded straight lines between pairs of
real images' codes (plots/interpolation.png).

Example (a few minutes on a 2-core CPU):

    jaxmed train vae --data phantom:brain --image-size 64 --batch-size 16 --steps 300 --workdir runs/vae
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct

from jaxmed.config import EvalConfig, GenerativeConfig, OptimizerConfig, require
from jaxmed.export import SYNTHETIC_NOTE
from jaxmed.families.base import Generator, Task, compute_dtype, conv_backend, parameter_count
from jaxmed.families.generative import GenerativeFamily
from jaxmed.losses import vae_loss
from jaxmed.models.vae import VAE
from jaxmed.training import sharding
from jaxmed.training.accumulation import sum_over_microbatches
from jaxmed.training.optimizer import build_optimizer
from jaxmed.viz.figures import save_image_grid

# Images in the reconstruction figure; its first and second halves are the interpolation figure's ends.
RECONSTRUCTION_COLUMNS = 8
# Images along each row of the interpolation figure (the two ends included).
INTERPOLATION_STEPS = 8


@dataclasses.dataclass(frozen=True)
class VaeConfig(GenerativeConfig):
    """A convolutional VAE run (`jaxmed.models.vae`).

    Attributes:
      model: architecture ("vae").
      latent_dim: length of z.
      kl_weight: weight of the KL term of the loss (1: the ELBO; below 1 trades sample
        quality for sharper reconstructions, as in a beta-VAE).
      kl_warmup_steps: the KL weight rises linearly from kl_weight/kl_warmup_steps to
        kl_weight over this many steps (0: constant), which keeps the posterior from
        collapsing onto the prior early in training.
      optimizer: Adam(2e-4, 0.9); the common 1e-3 made the KL term of these layers diverge.
      (the rest: `jaxmed.config.GenerativeConfig`)
    """

    model: str = "vae"
    latent_dim: int = 128
    kl_weight: float = 1.0
    kl_warmup_steps: int = 0
    optimizer: OptimizerConfig = OptimizerConfig(lr=2e-4, b1=0.9)
    # A VAE is the default feature extractor itself: measuring its samples in another VAE's features is opt-in.
    eval: EvalConfig = EvalConfig(fid=False)

    MODELS: typing.ClassVar[tuple[str, ...]] = ("vae",)

    def __post_init__(self):
        super().__post_init__()
        require(self.kl_weight >= 0, "kl_weight must be non-negative")
        require(self.kl_warmup_steps >= 0, "kl_warmup_steps must be non-negative (0 = no warm-up)")


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
    """The static structure of a VAE run, rebuilt from its config."""

    model: nnx.GraphDef
    optimizer: optax.GradientTransformation
    latent_dim: int
    kl_weight: float
    kl_warmup_steps: int
    accumulate_steps: int = 1


def build_vae(config: VaeConfig, key: jax.Array) -> VAE:
    """The config's VAE with parameters from `key`."""
    return VAE(config.image_size, config.channels, config.latent_dim, dtype=compute_dtype(config),
               conv_backend=conv_backend(config), rngs=nnx.Rngs(params=key))


def kl_weight_at(definition: VaeDefinition, step: jax.Array) -> jax.Array:
    """The KL weight of train step `step` (0-based): linear warm-up to `kl_weight`, then constant."""
    if definition.kl_warmup_steps == 0:
        return jnp.asarray(definition.kl_weight, jnp.float32)
    ramp = jnp.minimum(1.0, (step.astype(jnp.float32) + 1.0) / definition.kl_warmup_steps)
    return definition.kl_weight * ramp


def vae_train_step(definition: VaeDefinition, state: VaeState,
                   images_BxHxWxC: jax.Array) -> tuple[VaeState, dict[str, jax.Array]]:
    """One optimizer update on a batch of images in [-1, 1].

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


@functools.partial(jax.jit, static_argnums=0)
def posterior_means(model_def: nnx.GraphDef, params: nnx.State, stats: nnx.State, images_BxHxWxC):
    """The encoder's posterior mean of each image (float32), in evaluation mode."""
    model = nnx.merge(model_def, params, stats, copy=True)
    model.eval()
    mean_BxZ, _ = model.encoder(images_BxHxWxC)
    return mean_BxZ.astype(jnp.float32)


def interpolation_path(definition: VaeDefinition, state: VaeState, images: jax.Array, pairs: int,
                       placement: jax.sharding.Sharding | None = None) -> np.ndarray:
    """(pairs * INTERPOLATION_STEPS, H, W, C): image i's code moving to image pairs + i's, decoded.

    A smooth path means the latent space, not only its training points, decodes to anatomy:
    what sampling from the prior relies on.
    """
    means = np.asarray(posterior_means(definition.model, state.params, state.stats, images))
    weights = np.linspace(0.0, 1.0, INTERPOLATION_STEPS, dtype=np.float32)[None, :, None]
    z = ((1.0 - weights) * means[:pairs, None] + weights * means[pairs:2 * pairs, None]).reshape(-1, means.shape[-1])
    placed = sharding.place_global(z, placement) if placement is not None else z
    return np.asarray(decode(definition.model, state.params, state.stats, placed))


def _decode_prior(definition: VaeDefinition, state: VaeState, z_BxZ: jax.Array) -> jax.Array:
    return decode(definition.model, state.params, state.stats, z_BxZ)


class VaeFamily(GenerativeFamily):
    """Convolutional VAE: `jaxmed train vae`."""

    name = "vae"
    config_type = VaeConfig
    description = "train a convolutional VAE (negative ELBO)"
    loss_keys = ("loss", "reconstruction", "kl")
    loss_title = "VAE training loss (negative ELBO) and its terms"

    def definition(self, config: VaeConfig, task: Task) -> VaeDefinition:
        model = nnx.eval_shape(lambda: build_vae(config, jax.random.key(0)))
        return VaeDefinition(model=nnx.graphdef(model), optimizer=build_optimizer(config.optimizer, task.total_steps),
                             latent_dim=config.latent_dim, kl_weight=config.kl_weight,
                             kl_warmup_steps=config.kl_warmup_steps, accumulate_steps=config.accumulate_steps)

    def init_state(self, config: VaeConfig, definition: VaeDefinition, key: jax.Array) -> VaeState:
        init_key, noise_key = jax.random.split(key)
        _, params, stats = nnx.split(build_vae(config, init_key), nnx.Param, nnx.BatchStat)
        return VaeState(step=jnp.zeros((), jnp.int32), key=jax.random.key_data(noise_key), params=params,
                        stats=stats, opt=definition.optimizer.init(params))

    def train_step(self, definition: VaeDefinition, state: VaeState, batch) -> tuple[VaeState, dict]:
        return vae_train_step(definition, state, batch["image"])

    def parameter_counts(self, state: VaeState) -> dict[str, int]:
        return {"encoder": parameter_count(state.params["encoder"]),
                "decoder": parameter_count(state.params["decoder"])}

    def networks(self, config: VaeConfig) -> dict:
        vae = nnx.eval_shape(lambda: build_vae(config, jax.random.key(0)))
        image = (1, config.image_size, config.image_size, config.channels)
        return {"encoder/": (vae.encoder, image), "decoder/": (vae.decoder, (1, config.latent_dim))}

    def generator(self, config: VaeConfig, definition: VaeDefinition) -> Generator:
        return Generator(latent_dim=definition.latent_dim, generate=functools.partial(_decode_prior, definition))

    def feature_embedding(self, config: VaeConfig, definition: VaeDefinition, state: VaeState):
        return functools.partial(posterior_means, definition.model, state.params, state.stats)

    def write_figures(self, definition: VaeDefinition, state: VaeState, real: np.ndarray, plots: Path,
                      placement: jax.sharding.Sharding | None, write: bool) -> None:
        originals = real[:RECONSTRUCTION_COLUMNS]
        placed = sharding.place_global(originals, placement) if placement is not None else originals
        reconstructions = np.asarray(reconstruct(definition.model, state.params, state.stats, placed))
        if write:
            save_image_grid(np.concatenate([originals, reconstructions]), plots / "reconstructions.png",
                            columns=len(originals),
                            description=f"top row: real images; bottom row: {SYNTHETIC_NOTE}")
        pairs = len(originals) // 2
        if pairs:
            path = interpolation_path(definition, state, placed, pairs, placement)
            if write:
                save_image_grid(path, plots / "interpolation.png", columns=INTERPOLATION_STEPS,
                                description=f"each row: the decoded straight line between two real images' "
                                            f"posterior means; {SYNTHETIC_NOTE}")


FAMILY = VaeFamily()
