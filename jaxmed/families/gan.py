"""The GAN family: the seed paper's DCGAN and the small-data ResNet GAN; config, state, pure step, sampler.

One train step is one discriminator update and one generator update computed from the
same forward pass (the TensorFlow DCGAN tutorial's form): G(z) is evaluated once, D sees
the real and the generated batch, and one reverse pass per loss gives D's gradient of its
loss and G's gradient of its own. XLA removes the parts of each reverse pass that the
other network's update does not need.

With `accumulate_steps=K` the batch and its noise are split into K microbatches and the
gradients summed over them before the one update (`jaxmed.training.accumulation`, which
explains what that means for BatchNorm). Samples come from an exponential moving average
of the generator.

Recipes name sets of defaults (`GanConfig.RECIPES`): "seed" is the seed paper's DCGAN,
"small_data" the options for a few hundred scans (`jaxmed.families.gan_losses`); keys
set explicitly win over the recipe. With `conditional=true` one ResNet generator learns
every class of the data (class-conditional BatchNorm) against a projection
discriminator, and samples a class on request.

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
from jaxmed.families.gan_losses import AUGMENTS, Regularisation, augment_probability, microbatch_losses
from jaxmed.families.generative import GenerativeFamily
from jaxmed.losses import GAN_LOSSES, lecam_anchors
from jaxmed.models import dcgan, resnet_gan
from jaxmed.nn.ada import real_sign_mean, update_probability
from jaxmed.training import averaging
from jaxmed.training.accumulation import sum_over_microbatches
from jaxmed.training.optimizer import build_optimizer

#: A conditional run's class names, in its workdir: sampling needs them without the data.

#: The values of the seed paper's DCGAN: also the field defaults, so a config without a recipe is "seed".
SEED_RECIPE = {"model": "dcgan", "loss": "non_saturating", "gan_augment": "none", "r1_gamma": 0.0, "r1_every": 16,
               "lecam_weight": 0.0, "discriminator_lr_scale": 1.0}
#: A first guess for a few hundred scans, until measured: ResNet GAN with a spectrally normalised D
#: (hinge loss), DiffAugment, LeCam (0.3, its authors' weight with DiffAugment), D's learning rate doubled.
SMALL_DATA_RECIPE = {"model": "resnet", "loss": "hinge", "gan_augment": "diffaugment", "r1_gamma": 0.0,
                     "r1_every": 16, "lecam_weight": 0.3, "discriminator_lr_scale": 2.0}


@dataclasses.dataclass(frozen=True)
class GanConfig(GenerativeConfig):
    """A GAN run (the seed experiment: DCGAN, 128x128 brain MRI, batch 32, Adam 2e-4/0.5).

    Attributes:
      model: architecture: "dcgan" (`jaxmed.models.dcgan`, the seed paper's) or "resnet"
        (`jaxmed.models.resnet_gan`, spectrally normalised D).
      recipe: a named set of defaults for the keys below (`RECIPES`: "seed" or
        "small_data"); applied when the recipe is set, keys set explicitly win.
      loss: "minimax", "non_saturating" or "hinge" (see `jaxmed.losses`).
      ema_decay: decay of the generator's exponential moving average (used for sampling).
      conditional: one generator for all classes of the data (model "resnet" only;
        incompatible with `class_name`, which trains on one class).
      conditioning_start, conditioning_ramp: transitional conditioning (Shahbazi et al.
        2022: on limited data, conditioning from the first step can collapse a GAN): the
        class enters both networks after `conditioning_start` unconditional steps, its
        weight rising linearly to 1 over `conditioning_ramp` steps (both 0: from the start).
      resnet_features: channels of the ResNet's full-resolution blocks (8x that at most
        towards 4x4); unused by "dcgan".
      gan_augment: "none", "diffaugment" (every operation, every image) or "ada" (each
        operation with an adaptive probability p kept in the state); applied to real and
        generated images before every discriminator call.
      ada_target: the mean sign of D's logits on augmented reals that ADA steers towards.
      ada_images_to_full: real images over which ADA's p may move from 0 to 1.
      r1_gamma: weight of the R1 gradient penalty on real images (0: off). The
        discriminator then uses XLA convolutions (R1 differentiates it twice).
      r1_every: R1 is computed every this many steps and scaled by it (lazy R1).
      lecam_weight: weight of the LeCam regulariser (0: off).
      discriminator_lr_scale: the discriminator's learning rate is `optimizer.lr` times this.
      (the rest: `jaxmed.config.GenerativeConfig`)
    """

    model: str = "dcgan"
    recipe: str = "seed"
    loss: str = "non_saturating"
    ema_decay: float = 0.999
    conditional: bool = False
    conditioning_start: int = 0
    conditioning_ramp: int = 0
    resnet_features: int = 32
    gan_augment: str = "none"
    ada_target: float = 0.6
    ada_images_to_full: int = 500_000
    r1_gamma: float = 0.0
    r1_every: int = 16
    lecam_weight: float = 0.0
    discriminator_lr_scale: float = 1.0

    MODELS: typing.ClassVar[tuple[str, ...]] = ("dcgan", "resnet")
    RECIPES: typing.ClassVar[typing.Mapping[str, typing.Mapping[str, typing.Any]]] = {
        "seed": SEED_RECIPE, "small_data": SMALL_DATA_RECIPE}

    def __post_init__(self):
        super().__post_init__()
        require(self.recipe in self.RECIPES, f"recipe must be one of {', '.join(self.RECIPES)}, got {self.recipe!r}")
        require(self.loss in GAN_LOSSES, f"loss must be one of {', '.join(GAN_LOSSES)}, got {self.loss!r}")
        require(0.0 <= self.ema_decay < 1.0, "ema_decay must be in [0, 1)")
        require(not (self.conditional and self.class_name),
                f"conditional=true trains one generator for every class; class_name={self.class_name!r} trains on "
                "one class: set one of them")
        require(not self.conditional or self.model == "resnet",
                "conditional=true needs model=resnet (class-conditional BatchNorm and a projection discriminator)")
        require(self.conditioning_start >= 0 and self.conditioning_ramp >= 0,
                "conditioning_start and conditioning_ramp must be non-negative")
        require(self.conditional or not (self.conditioning_start or self.conditioning_ramp),
                "conditioning_start and conditioning_ramp need conditional=true")
        require(self.resnet_features >= 1, "resnet_features must be at least 1")
        require(self.gan_augment in AUGMENTS, f"gan_augment must be one of {', '.join(AUGMENTS)}, "
                f"got {self.gan_augment!r}")
        require(0.0 < self.ada_target < 1.0, "ada_target must be in (0, 1)")
        require(self.ada_images_to_full >= 1, "ada_images_to_full must be at least 1")
        require(self.r1_gamma >= 0.0, "r1_gamma must be non-negative (0 = off)")
        require(self.r1_every >= 1, "r1_every must be at least 1")
        require(self.lecam_weight >= 0.0, "lecam_weight must be non-negative (0 = off)")
        require(self.discriminator_lr_scale > 0.0, "discriminator_lr_scale must be positive")


@struct.dataclass
class GanState:
    """Everything a GAN step changes: one pytree of arrays, jitted, donated, sharded and saved as it is.

    A run whose options keep no state of their own (the seed recipe among them) has exactly
    this structure, the one of checkpoints written before those options existed.

    Attributes:
      step: number of completed train steps (int32 scalar).
      key: raw uint32[2] PRNG key for the generator's noise; raw so it saves as a plain array.
      generator_params, generator_stats: generator parameters and BatchNorm running statistics.
      discriminator_params, discriminator_stats: the same for the discriminator (with spectral norms' u).
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


@struct.dataclass
class AdaptiveGanState(GanState):
    """The state of a run with ADA or LeCam: `GanState` and their running values (all three, always).

    Attributes:
      augment_p: ADA's augmentation probability (float32 scalar; stays 0 without ADA).
      lecam_ema_real, lecam_ema_fake: LeCam's anchors (float32 scalars; stay 0 without LeCam).
    """

    augment_p: jax.Array
    lecam_ema_real: jax.Array
    lecam_ema_fake: jax.Array


def _is_adaptive(config: GanConfig) -> bool:
    """True when the run's options keep running values in the state (`AdaptiveGanState`)."""
    return config.gan_augment == "ada" or config.lecam_weight > 0


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
    regularisation: Regularisation = Regularisation()
    class_names: tuple[str, ...] = ()
    conditioning_start: int = 0
    conditioning_ramp: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _build_networks(config: GanConfig, key: jax.Array, num_classes: int = 0) -> tuple[nnx.Module, nnx.Module]:
    generator_key, discriminator_key = jax.random.split(key)
    dtype, backend = compute_dtype(config), conv_backend(config)
    # R1 differentiates D twice; oneDNN's convolution gradients are not differentiable again.
    discriminator_backend = "xla" if config.r1_gamma > 0 else backend
    if config.model == "resnet":
        sizes = {"base_features": config.resnet_features, "max_features": 8 * config.resnet_features}
        generator = resnet_gan.Generator(config.image_size, config.channels, config.latent_dim,
                                         num_classes=num_classes, dtype=dtype, conv_backend=backend,
                                         rngs=nnx.Rngs(params=generator_key), **sizes)
        discriminator = resnet_gan.Discriminator(config.image_size, config.channels, num_classes=num_classes,
                                                 dtype=dtype, conv_backend=discriminator_backend,
                                                 rngs=nnx.Rngs(params=discriminator_key), **sizes)
        return generator, discriminator
    generator = dcgan.Generator(config.image_size, config.channels, config.latent_dim, dtype=dtype,
                                conv_backend=backend, rngs=nnx.Rngs(params=generator_key))
    discriminator = dcgan.Discriminator(config.image_size, config.channels, dtype=dtype,
                                        conv_backend=discriminator_backend, rngs=nnx.Rngs(params=discriminator_key))
    return generator, discriminator


def _regularisation(config: GanConfig) -> Regularisation:
    return Regularisation(augment=config.gan_augment, ada_target=config.ada_target,
                          ada_images_to_full=config.ada_images_to_full, r1_gamma=config.r1_gamma,
                          r1_every=config.r1_every, lecam_weight=config.lecam_weight)


def conditioning_strength(step: jax.Array, start: int, ramp: int) -> jax.Array:
    """The class's weight in both networks at `step`: 0 before `start`, then rising linearly to 1 over `ramp`."""
    if ramp == 0:
        return (step >= start).astype(jnp.float32)
    return jnp.clip((step - start) / ramp, 0.0, 1.0).astype(jnp.float32)


def gan_train_step(definition: GanDefinition, state: GanState, real_BxHxWxC: jax.Array,
                   labels_B: jax.Array | None = None) -> tuple[GanState, dict[str, jax.Array]]:
    """One discriminator and one generator update on a batch of real images in [-1, 1].

    Args:
      labels_B: the images' class indices (conditional runs only).

    Returns:
      The new state, and float32 scalar metrics: `d_loss` (with its regularisers),
      `g_loss`, `d_real` (mean sigmoid D(x)) and `d_fake` (mean sigmoid D(G(z))),
      averaged over the microbatches; with the options on, also `lecam`, `r1` (0 on
      the steps it is skipped), `augment_p` (ADA's p after this step) and `conditioning`
      (the class's weight, with transitional conditioning).
    """
    settings = definition.regularisation
    key, noise_key = jax.random.split(jax.random.wrap_key_data(state.key))
    batch_size, microbatches = real_BxHxWxC.shape[0], definition.accumulate_steps
    z_BxZ = jax.random.normal(noise_key, (batch_size, definition.latent_dim))
    # One augmentation key per microbatch, as raw data so that they split like the batch.
    augment_keys = jax.random.key_data(jax.random.split(jax.random.fold_in(noise_key, 1), microbatches))
    p = augment_probability(settings, getattr(state, "augment_p", None))
    anchors = (state.lecam_ema_real, state.lecam_ema_fake) if settings.lecam_weight > 0 else None
    r1_due = state.step % settings.r1_every == 0 if settings.r1_gamma > 0 else None
    strength = conditioning_strength(state.step, definition.conditioning_start, definition.conditioning_ramp)

    def microbatch_gradients(stats, microbatch):
        generator_stats, discriminator_stats = stats
        real_bxHxWxC, z_bxZ, labels_b, augment_key = microbatch

        def losses(generator_params, discriminator_params):
            # copy=True: BatchNorm updates its running statistics on fresh variables of this
            # trace; the updated statistics leave through the auxiliary output.
            generator = nnx.merge(definition.generator, generator_params, generator_stats, copy=True)
            discriminator = nnx.merge(definition.discriminator, discriminator_params, discriminator_stats,
                                      copy=True)
            frozen = None
            if settings.r1_gamma > 0:
                # Evaluation mode: no state updates (BatchNorm, spectral u) inside R1's inner gradient.
                frozen = nnx.merge(definition.discriminator, discriminator_params, discriminator_stats, copy=True)
                frozen.eval()
            loss_pair, (real_logits_b, fake_logits_b, extra) = microbatch_losses(
                settings, definition.loss, generator, discriminator, frozen, real_bxHxWxC, z_bxZ, labels_b,
                jax.random.wrap_key_data(augment_key[0]) if settings.augments else None, p, anchors, r1_due,
                strength)
            updated_stats = (nnx.state(generator, nnx.BatchStat), nnx.state(discriminator, nnx.BatchStat))
            return loss_pair, (updated_stats, real_logits_b, fake_logits_b, extra)

        (d_loss, g_loss), pullback, (updated_stats, real_logits_b, fake_logits_b, extra) = jax.vjp(
            losses, state.generator_params, state.discriminator_params, has_aux=True)
        one, zero = jnp.ones((), d_loss.dtype), jnp.zeros((), d_loss.dtype)
        _, discriminator_grads = pullback((one, zero))
        generator_grads, _ = pullback((zero, one))
        metrics = {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_real": jnp.mean(jax.nn.sigmoid(real_logits_b)),
            "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits_b)),
            **extra,
        }
        # Batch means of D's raw logits and of their sign, for LeCam's anchors and ADA's p.
        signals = {"real_logit": jnp.mean(real_logits_b.astype(jnp.float32)),
                   "fake_logit": jnp.mean(fake_logits_b.astype(jnp.float32)),
                   "real_sign": real_sign_mean(real_logits_b)}
        return updated_stats, (generator_grads, discriminator_grads, metrics, signals)

    (generator_stats, discriminator_stats), sums = sum_over_microbatches(
        microbatch_gradients, (state.generator_stats, state.discriminator_stats),
        (real_BxHxWxC, z_BxZ, labels_B, augment_keys), microbatches)
    # Each microbatch's losses are means over equally many rows: their mean is the batch mean.
    generator_grads, discriminator_grads, metrics, signals = jax.tree.map(lambda total: total / microbatches, sums)

    generator_params, generator_opt = _apply(definition.generator_optimizer, generator_grads,
                                             state.generator_opt, state.generator_params)
    discriminator_params, discriminator_opt = _apply(definition.discriminator_optimizer, discriminator_grads,
                                                     state.discriminator_opt, state.discriminator_params)
    step = state.step + 1
    options = {}
    if settings.augment == "ada":
        options["augment_p"] = update_probability(state.augment_p, signals["real_sign"], batch_size,
                                                  target=settings.ada_target,
                                                  images_to_full=settings.ada_images_to_full)
        metrics["augment_p"] = options["augment_p"]
    if definition.conditioning_start or definition.conditioning_ramp:
        metrics["conditioning"] = strength
    if settings.lecam_weight > 0:
        options["lecam_ema_real"], options["lecam_ema_fake"] = lecam_anchors(
            state.lecam_ema_real, state.lecam_ema_fake, signals["real_logit"][None], signals["fake_logit"][None])
    new_state = state.replace(
        step=step,
        key=jax.random.key_data(key),
        generator_params=generator_params,
        generator_stats=generator_stats,
        discriminator_params=discriminator_params,
        discriminator_stats=discriminator_stats,
        ema_params=averaging.update(state.ema_params, generator_params, step, definition.ema_decay),
        ema_stats=averaging.update(state.ema_stats, generator_stats, step, definition.ema_decay),
        generator_opt=generator_opt,
        discriminator_opt=discriminator_opt,
        **options,
    )
    return new_state, metrics


def _apply(optimizer: optax.GradientTransformation, grads, opt_state, params):
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def generate(generator_def: nnx.GraphDef, params: nnx.State, stats: nnx.State, z_BxZ: jax.Array,
             labels_B: jax.Array | None = None) -> jax.Array:
    """Images in [-1, 1] from a generator in evaluation mode (BatchNorm running statistics).

    Args:
      generator_def: the generator's graph definition (`GanDefinition.generator`).
      params, stats: its parameters and running statistics (e.g. the EMA copy).
      z_BxZ: latent vectors.
      labels_B: class indices, for a conditional generator (required there).
    """
    generator = nnx.merge(generator_def, params, stats)
    generator.eval()
    return generator(z_BxZ) if labels_B is None else generator(z_BxZ, labels_B)


generate_jit = jax.jit(generate, static_argnums=0)


def _generate_ema(definition: GanDefinition, state: GanState, z_BxZ: jax.Array,
                  labels_B: jax.Array | None = None) -> jax.Array:
    if definition.num_classes and labels_B is None:
        # No class asked for: every class in turn, so that callers that know no classes get all of them.
        labels_B = jnp.arange(z_BxZ.shape[0], dtype=jnp.int32) % definition.num_classes
    return generate_jit(definition.generator, state.ema_params, state.ema_stats, z_BxZ, labels_B)


class GanFamily(GenerativeFamily):
    """DCGAN or ResNet GAN, unconditional or class-conditional: `jaxmed train gan`."""

    name = "gan"
    config_type = GanConfig
    description = "train a GAN (the seed paper's DCGAN, or the small-data ResNet GAN)"
    loss_keys = ("d_loss", "g_loss")
    loss_title = "GAN training losses"

    def definition(self, config: GanConfig, task: Task) -> GanDefinition:
        class_names = tuple(task.class_names) if config.conditional else ()
        generator, discriminator = nnx.eval_shape(
            lambda: _build_networks(config, jax.random.key(0), len(class_names)))
        discriminator_optimizer = dataclasses.replace(
            config.optimizer, lr=config.optimizer.lr * config.discriminator_lr_scale)
        return GanDefinition(
            generator=nnx.graphdef(generator),
            discriminator=nnx.graphdef(discriminator),
            generator_optimizer=build_optimizer(config.optimizer, task.total_steps),
            discriminator_optimizer=build_optimizer(discriminator_optimizer, task.total_steps),
            latent_dim=config.latent_dim,
            loss=config.loss,
            ema_decay=config.ema_decay,
            accumulate_steps=config.accumulate_steps,
            regularisation=_regularisation(config),
            class_names=class_names,
            conditioning_start=config.conditioning_start,
            conditioning_ramp=config.conditioning_ramp,
        )

    def init_state(self, config: GanConfig, definition: GanDefinition, key: jax.Array) -> GanState:
        init_key, noise_key = jax.random.split(key)
        generator, discriminator = _build_networks(config, init_key, definition.num_classes)
        _, generator_params, generator_stats = nnx.split(generator, nnx.Param, nnx.BatchStat)
        _, discriminator_params, discriminator_stats = nnx.split(discriminator, nnx.Param, nnx.BatchStat)
        state = GanState(
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
        if not _is_adaptive(config):
            return state
        # ADA starts without augmentation and raises p when D overfits; the anchors start at 0.
        zero = functools.partial(jnp.zeros, (), jnp.float32)
        fields = {field.name: getattr(state, field.name) for field in dataclasses.fields(GanState)}
        return AdaptiveGanState(**fields, augment_p=zero(), lecam_ema_real=zero(), lecam_ema_fake=zero())

    def train_step(self, definition: GanDefinition, state: GanState, batch) -> tuple[GanState, dict]:
        return gan_train_step(definition, state, batch["image"], batch.get("label") if definition.num_classes else None)

    def parameter_counts(self, state: GanState) -> dict[str, int]:
        return {"generator": parameter_count(state.generator_params),
                "discriminator": parameter_count(state.discriminator_params)}

    def networks(self, config: GanConfig) -> dict:
        # Traced unconditional: the convolutions are the same, and tracing feeds no labels.
        generator, discriminator = nnx.eval_shape(lambda: _build_networks(config, jax.random.key(0)))
        image = (1, config.image_size, config.image_size, config.channels)
        return {"generator/": (generator, (1, config.latent_dim)), "discriminator/": (discriminator, image)}

    def generator(self, config: GanConfig, definition: GanDefinition) -> Generator:
        return Generator(latent_dim=definition.latent_dim, generate=functools.partial(_generate_ema, definition),
                         class_names=definition.class_names)


FAMILY = GanFamily()
