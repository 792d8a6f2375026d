"""The diffusion family: a U-Net denoiser trained with `jaxmed.diffusion`'s loss, sampled with its samplers.

One train step draws per example a noise level, the noise and (for a conditional model) the
label dropout from the state's key, evaluates `jaxmed.diffusion.diffusion_loss` (v-prediction,
min-SNR-5 weighting by default) and applies one AdamW update (warm-up + cosine, gradients
clipped at norm 1); an exponential moving average of the parameters, warmed up like the GAN's,
is what samples come from.

Sampling (`DiffusionFamily.generator`): the latent vector z of the generator interface is the
start noise x_T itself, flattened (image_size² × channels values), so a sample is a fixed
function of z: DDIM and DPM-Solver++ are deterministic given x_T, and the ancestral DDPM
sampler's per-step noise comes from a key derived from the z batch. The sampler, its step
count and the guidance scale are the config's `sampling` keys, which `jaxmed sample` may
override on a trained run (`--sampler`, `--sampling-steps`, `--guidance`).

A class-conditional model (`conditional=true`) trains on every class of its data with
label dropout to the null class, so one network is both the conditional and the unconditional
model that classifier-free guidance combines; its class names are kept in WORKDIR/classes.json.

Example (the small U-Net at 32 px, a CPU-sized run):

    jaxmed train diffusion --data phantom:brain --image-size 32 --batch-size 16 --steps 1000 --workdir runs/ddpm
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from jax import lax

from jaxmed.config import GenerativeConfig, OptimizerConfig, require
from jaxmed.diffusion import SAMPLERS, cosine_schedule, diffusion_loss, guided, sample
from jaxmed.diffusion.schedule import PREDICTIONS
from jaxmed.errors import UsageError
from jaxmed.families.base import Generator, Task, compute_dtype, conv_backend, parameter_count
from jaxmed.families.generative import GenerativeFamily
from jaxmed.models.unet import UNET_SIZES, UNet
from jaxmed.training import averaging
from jaxmed.training.accumulation import sum_over_microbatches
from jaxmed.training.optimizer import build_optimizer

# The noise level at which the conv-pool benchmark traces the U-Net (its layers do not depend on it).
TRACE_TIME = 0.5


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How a trained diffusion model draws images; a trained run may change these freely.

    Attributes:
      sampler: "ddpm" (ancestral, all `timesteps` steps), "ddim" (deterministic, eta 0) or
        "dpm_solver_2m" (DPM-Solver++ 2M, deterministic; the default: with 10-25 steps it is
        closer to the sampling ODE's solution than DDIM with as many).
      steps: network evaluations of "ddim" and "dpm_solver_2m" (ignored by "ddpm"); at most `timesteps`.
      guidance: classifier-free guidance scale s of a conditional model: 0 the unconditional
        model, 1 the conditional one, above 1 sharper towards the class at some cost in diversity.
        2.0 (Ho & Salimans' w = 1) is a common middle. An unconditional model has nothing to
        guide: it ignores the value.
      eta: DDIM's stochasticity (Song et al.'s eta, "ddim" only): 0 follows the deterministic
        ODE, 1 adds the ancestral sampler's noise at every step, which moves a few-step sample's
        distribution towards the full ancestral sampler's when the model's ODE drifts from it.
    """

    sampler: str = "dpm_solver_2m"
    steps: int = 25
    guidance: float = 2.0
    eta: float = 0.0

    def __post_init__(self):
        require(self.sampler in SAMPLERS, f"sampling.sampler must be one of {', '.join(SAMPLERS)}, "
                                          f"got {self.sampler!r}")
        require(self.steps >= 1, "sampling.steps must be at least 1")
        require(self.guidance >= 0, "sampling.guidance must be non-negative")
        require(0.0 <= self.eta <= 1.0, f"sampling.eta must be in [0, 1], got {self.eta}")


@dataclasses.dataclass(frozen=True)
class DiffusionConfig(GenerativeConfig):
    """A denoising diffusion run (`jaxmed.diffusion`, `jaxmed.models.unet`).

    Attributes:
      model: architecture ("unet").
      unet_size: "small" (CPU, 32-64 px, about 1.6M parameters at base width 32) or "large"
        (accelerators, 128-256 px, about 92M); see `jaxmed.models.unet.UNET_SIZES`.
      unet_width: base channels of the U-Net (0: the size's own, 32 small / 128 large); a
        multiple of the size's GroupNorm groups (8 small, 32 large).
      prediction: the network's target, "v" (default) or "eps". v-prediction stays
        well-conditioned at the high-noise end, where an eps-predictor's x0 estimate divides by
        sqrt(alpha_bar) -> 0; the few-step samplers start there (see `jaxmed.diffusion.objective`).
      timesteps: T, the discrete steps of the cosine noise schedule.
      min_snr_gamma: min-SNR-gamma loss weighting (Hang et al. 2023; 5 their value; 0 = off).
      ema_decay: decay of the parameters' moving average that samples come from.
      conditional: train a class-conditional model on every class of the data (for
        classifier-free guidance); needs labelled data and an empty `class_name`.
      label_dropout: probability of training a label as the null class (conditional only).
      sampling: see `SamplingConfig`.
      optimizer: AdamW 2e-4 (betas 0.9, 0.999), 5% linear warm-up then cosine decay, gradients
        clipped at global norm 1: the usual diffusion recipe; the loss has rare large-gradient
        batches (nearly clean steps) that the clip keeps from derailing Adam.
      latent_dim: ignored: a diffusion model's latent is its start noise x_T, image_size² ×
        channels values, which its `Generator.latent_dim` reports.
      (the rest: `jaxmed.config.GenerativeConfig`)
    """

    model: str = "unet"
    unet_size: str = "small"
    unet_width: int = 0
    prediction: str = "v"
    timesteps: int = 1000
    min_snr_gamma: float = 5.0
    ema_decay: float = 0.999
    conditional: bool = False
    label_dropout: float = 0.1
    sampling: SamplingConfig = SamplingConfig()
    optimizer: OptimizerConfig = OptimizerConfig(lr=2e-4, b1=0.9, b2=0.999, schedule="cosine",
                                                 warmup_fraction=0.05, clip_norm=1.0)

    MODELS: typing.ClassVar[tuple[str, ...]] = ("unet",)
    RESUMABLE: typing.ClassVar[frozenset[str]] = GenerativeConfig.RESUMABLE | {
        "sampling.sampler", "sampling.steps", "sampling.guidance", "sampling.eta"}

    def __post_init__(self):
        super().__post_init__()
        require(self.unet_size in UNET_SIZES, f"unet_size must be one of {', '.join(UNET_SIZES)}, "
                                              f"got {self.unet_size!r}")
        groups = UNET_SIZES[self.unet_size]["norm_groups"]
        require(self.unet_width >= 0 and self.unet_width % groups == 0,
                f"unet_width must be 0 (the size's own) or a positive multiple of {groups} (the {self.unet_size} "
                f"U-Net's GroupNorm groups), got {self.unet_width}")
        require(self.prediction in PREDICTIONS, f"prediction must be one of {', '.join(PREDICTIONS)}, "
                                                f"got {self.prediction!r}")
        require(self.timesteps >= 2, "timesteps must be at least 2")
        require(self.min_snr_gamma >= 0, "min_snr_gamma must be non-negative (0 = no weighting)")
        require(0.0 <= self.ema_decay < 1.0, "ema_decay must be in [0, 1)")
        require(0.0 <= self.label_dropout < 1.0, "label_dropout must be in [0, 1)")
        require(not (self.conditional and self.class_name),
                f"conditional=true trains on every class; class_name={self.class_name!r} would leave one")
        require(self.sampling.steps <= self.timesteps,
                f"sampling.steps={self.sampling.steps} exceeds timesteps={self.timesteps}")


@struct.dataclass
class DiffusionState:
    """Everything a diffusion step changes.

    Attributes:
      step: number of completed train steps (int32 scalar).
      key: raw uint32[2] PRNG key for the noise levels, noise and label dropout.
      params: the U-Net's parameters (it has no other state: GroupNorm keeps no statistics).
      ema_params: their exponential moving average (used for sampling).
      opt: the optax state.
    """

    step: jax.Array
    key: jax.Array
    params: nnx.State
    ema_params: nnx.State
    opt: optax.OptState


@dataclasses.dataclass(frozen=True)
class DiffusionDefinition:
    """The static structure of a diffusion run, rebuilt from its config (and its classes)."""

    model: nnx.GraphDef
    optimizer: optax.GradientTransformation
    image_shape: tuple[int, int, int]
    timesteps: int
    prediction: str
    min_snr_gamma: float
    ema_decay: float
    class_names: tuple[str, ...] = ()
    label_dropout: float = 0.0
    accumulate_steps: int = 1

    @property
    def conditional(self) -> bool:
        return bool(self.class_names)

    @property
    def null_label(self) -> int | None:
        """The label of the unconditional (null) class, `UNet.null_label` (None: unconditional)."""
        return len(self.class_names) if self.class_names else None


def build_unet(config: DiffusionConfig, num_classes: int | None, key: jax.Array) -> UNet:
    """The config's U-Net (with `num_classes` labels plus the null one, or unconditional) from `key`."""
    sizes = dict(UNET_SIZES[config.unet_size])
    if config.unet_width:
        sizes["base_features"] = config.unet_width
    return UNet(config.image_size, config.channels, num_classes=num_classes, dtype=compute_dtype(config),
                conv_backend=conv_backend(config), rngs=nnx.Rngs(params=key), **sizes)


def diffusion_train_step(definition: DiffusionDefinition, state: DiffusionState,
                         batch: typing.Mapping[str, jax.Array]) -> tuple[DiffusionState, dict[str, jax.Array]]:
    """One optimizer update on a batch {"image": images in [-1, 1], "label": labels (conditional only)}.

    Returns:
      The new state, and float32 scalar metrics averaged over the microbatches: `loss` (the
      weighted loss that is minimised) and `mse` (the unweighted squared error of the output).
    """
    key, loss_key = jax.random.split(jax.random.wrap_key_data(state.key))
    schedule = cosine_schedule(definition.timesteps)
    inputs = {"image": batch["image"], "label": batch["label"]} if definition.conditional else {"image": batch["image"]}

    def microbatch_gradients(microbatch_key, microbatch):
        microbatch_key, this_key = jax.random.split(microbatch_key)

        def loss_fn(params):
            model = nnx.merge(definition.model, params)
            return diffusion_loss(model, schedule, microbatch["image"], this_key, microbatch.get("label"),
                                  prediction=definition.prediction, min_snr_gamma=definition.min_snr_gamma or None,
                                  label_dropout=definition.label_dropout, null_label=definition.null_label)

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return microbatch_key, (grads, {"loss": loss, **metrics})

    microbatches = definition.accumulate_steps
    _, sums = sum_over_microbatches(microbatch_gradients, loss_key, inputs, microbatches)
    grads, metrics = jax.tree.map(lambda total: total / microbatches, sums)
    updates, opt = definition.optimizer.update(grads, state.opt, state.params)
    params = optax.apply_updates(state.params, updates)
    step = state.step + 1
    new_state = state.replace(step=step, key=jax.random.key_data(key), params=params,
                              ema_params=averaging.update(state.ema_params, params, step, definition.ema_decay),
                              opt=opt)
    return new_state, metrics


@dataclasses.dataclass(frozen=True)
class SamplingPlan:
    """Everything static about drawing a batch (hashable: one compilation per plan)."""

    sampler: str
    steps: int
    guidance: float
    eta: float
    prediction: str
    timesteps: int
    image_shape: tuple[int, int, int]
    null_label: int | None


def noise_key(z_BxZ: jax.Array) -> jax.Array:
    """A PRNG key that is a fixed function of the bits of `z_BxZ` (for the ancestral sampler's per-step noise)."""
    bits = lax.bitcast_convert_type(z_BxZ.astype(jnp.float32), jnp.uint32).reshape(-1)
    odd_weights = 2 * jnp.arange(bits.shape[0], dtype=jnp.uint32) + 1  # position-dependent: a permutation changes it
    return jax.random.key(jnp.sum(bits * odd_weights, dtype=jnp.uint32))


@functools.partial(jax.jit, static_argnums=(0, 1))
def draw(model_def: nnx.GraphDef, plan: SamplingPlan, params: nnx.State, z_BxZ: jax.Array,
         labels_B: jax.Array | None) -> jax.Array:
    """Images (B, H, W, C) in [-1, 1] from start noise `z_BxZ` (x_T flattened) and optional labels.

    Without labels a conditional model samples its null class (the unconditional model); with
    labels and a guidance scale other than 1 it samples with classifier-free guidance.
    """
    batch = z_BxZ.shape[0]
    shape = (batch, *plan.image_shape)
    model_fn: Callable = nnx.merge(model_def, params)
    if labels_B is not None and plan.guidance != 1.0:
        model_fn = guided(model_fn, plan.guidance, plan.null_label)
    images = sample(plan.sampler, model_fn, cosine_schedule(plan.timesteps), shape, noise_key(z_BxZ), plan.steps,
                    labels_B, eta=plan.eta, prediction=plan.prediction, x_T=z_BxZ.reshape(shape))
    return jnp.clip(images, -1.0, 1.0)


def _generate(definition: DiffusionDefinition, plan: SamplingPlan, state: DiffusionState, z_BxZ: jax.Array,
              labels: jax.Array | np.ndarray | None = None) -> jax.Array:
    if labels is not None:
        if not definition.conditional:
            raise UsageError("this diffusion run is unconditional (conditional=false): it takes no class labels")
        labels = np.asarray(labels, np.int32)
        if labels.shape != (len(z_BxZ),) or labels.min(initial=0) < 0 or labels.max(initial=0) >= definition.null_label:
            raise UsageError(f"labels must be one class index in [0, {definition.null_label}) per noise vector, "
                             f"got {labels.tolist()}")
    return draw(definition.model, plan, state.ema_params, z_BxZ, labels)


class _AtFixedTime(nnx.Module):
    """The U-Net at one noise level as a one-input module: what the conv-pool benchmark traces."""

    def __init__(self, unet: UNet):
        self.unet = unet

    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        return self.unet(x_BxHxWxC, jnp.full((x_BxHxWxC.shape[0],), TRACE_TIME, jnp.float32))


class DiffusionFamily(GenerativeFamily):
    """Denoising diffusion with a U-Net: `jaxmed train diffusion`."""

    name = "diffusion"
    config_type = DiffusionConfig
    description = "train a denoising diffusion model (U-Net; DDPM, DDIM or DPM-Solver++ sampling)"
    loss_keys = ("loss", "mse")
    loss_title = "Diffusion training loss (min-SNR weighted) and unweighted MSE"

    def definition(self, config: DiffusionConfig, task: Task) -> DiffusionDefinition:
        class_names = tuple(task.class_names) if config.conditional else ()
        if config.conditional and not class_names:
            raise UsageError("conditional=true needs labelled data with classes (a data spec, not bare images)")
        unet = nnx.eval_shape(lambda: build_unet(config, len(class_names) or None, jax.random.key(0)))
        return DiffusionDefinition(
            model=nnx.graphdef(unet), optimizer=build_optimizer(config.optimizer, task.total_steps),
            image_shape=(config.image_size, config.image_size, config.channels), timesteps=config.timesteps,
            prediction=config.prediction, min_snr_gamma=config.min_snr_gamma, ema_decay=config.ema_decay,
            class_names=class_names, label_dropout=config.label_dropout if class_names else 0.0,
            accumulate_steps=config.accumulate_steps)

    def init_state(self, config: DiffusionConfig, definition: DiffusionDefinition, key: jax.Array) -> DiffusionState:
        init_key, noise_key_ = jax.random.split(key)
        params = nnx.state(build_unet(config, len(definition.class_names) or None, init_key), nnx.Param)
        return DiffusionState(step=jnp.zeros((), jnp.int32), key=jax.random.key_data(noise_key_), params=params,
                              # A copy: the EMA must not share buffers with the live parameters, which steps donate.
                              ema_params=jax.tree.map(jnp.copy, params), opt=definition.optimizer.init(params))

    def train_step(self, definition: DiffusionDefinition, state: DiffusionState, batch) -> tuple[DiffusionState, dict]:
        return diffusion_train_step(definition, state, batch)

    def benchmark_batch(self, config: DiffusionConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
        batch = super().benchmark_batch(config, rng)
        if config.conditional:  # the benchmark's task has two classes
            batch["label"] = rng.integers(0, 2, config.batch_size).astype(np.int32)
        return batch

    def parameter_counts(self, state: DiffusionState) -> dict[str, int]:
        return {"unet": parameter_count(state.params)}

    def networks(self, config: DiffusionConfig) -> dict:
        traced = nnx.eval_shape(lambda: _AtFixedTime(build_unet(config, None, jax.random.key(0))))
        return {"": (traced, (1, config.image_size, config.image_size, config.channels))}

    def generator(self, config: DiffusionConfig, definition: DiffusionDefinition) -> Generator:
        """Samples of the EMA parameters with `config.sampling`'s sampler, steps and guidance.

        `generate(state, z_BxZ, labels_B=None)`: z is the flattened start noise x_T; labels
        (ints into `class_names`) ask a conditional model for those classes.
        """
        plan = SamplingPlan(sampler=config.sampling.sampler, steps=config.sampling.steps,
                            guidance=float(config.sampling.guidance), eta=float(config.sampling.eta),
                            prediction=definition.prediction,
                            timesteps=definition.timesteps, image_shape=definition.image_shape,
                            null_label=definition.null_label)
        return Generator(latent_dim=int(np.prod(definition.image_shape)),
                         generate=functools.partial(_generate, definition, plan), class_names=definition.class_names)


FAMILY = DiffusionFamily()
