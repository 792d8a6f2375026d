"""jaxmed's train steps in PyTorch, one builder per `jaxmed bench train-step` model, in the registry `STEPS`.

Each builder makes the model (`torch_models`), its optimizer and one random batch, and returns
a `PeerStep` whose `run()` is one full train step as jaxmed's family does it:

- dcgan128 (`jaxmed.families.gan`): BCE on logits (non-saturating generator loss), Adam(2e-4,
  0.5), one D and one G update from one shared forward pass (`backward(inputs=...)` per network).
  jaxmed's step also updates an EMA copy of the generator, which this one does not.
- seed_cnn, resnet18 (`jaxmed.families.classifier`): the on-device augmentation
  (`torch_augment`), softmax cross-entropy (class weights all 1, so the batch mean), dropout,
  AdamW(1e-3, wd 1e-4) with a 5 % linear warm-up and cosine decay over the run.
- vae128 (`jaxmed.families.vae`): reparameterised sample, negative ELBO (summed squared error
  per image + KL, batch means), Adam(2e-4, 0.9).
- unet64 (`jaxmed.families.diffusion`): a uniform step of the 1000-step cosine schedule per
  example, v-prediction with min-SNR-5 weights, gradients clipped at global norm 1,
  Adam(2e-4, 0.9) with warm-up and cosine decay, and the EMA of the parameters.

What makes each PyTorch's best rather than a straw man: channels_last models and images
(oneDNN's native layout), eager mode (or `torch.compile` of the networks, `--variant compile`),
fused Adam/AdamW where the build has it, `zero_grad(set_to_none=True)`, the default threads.
`--precision bf16` is PyTorch's CPU automatic mixed precision, `torch.autocast("cpu",
dtype=torch.bfloat16)` around the forward pass and the loss; backward and optimizer outside
it, float32 parameters and optimizer state, no gradient scaler (bfloat16 needs none).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (the models' settings; see common.py)
import torch_augment  # noqa: E402
import torch_models  # noqa: E402

Wrap = Callable[[nn.Module], nn.Module]  # how the step runs a network: as it is, or torch.compile'd


@dataclasses.dataclass
class PeerStep:
    """One model's train step, ready to time.

    Attributes:
      run: one train step; returns its losses (tensors, read after timing).
      parameters: trainable parameters per network, named as jaxmed's `parameter_counts`.
      settings: what the step is made of (optimizer, fused or not, ...), for the JSON.
    """

    run: Callable[[], dict[str, torch.Tensor]]
    parameters: dict[str, int]
    settings: dict


@dataclasses.dataclass(frozen=True)
class StepOptions:
    """How every step is built: batch size, run length (for the schedules), precision, eager or compiled."""

    batch_size: int
    total_steps: int
    precision: str
    wrap: Wrap

    def forward_precision(self) -> contextlib.AbstractContextManager:
        """Autocast to bfloat16 for "bf16", else nothing."""
        if self.precision == "bf16":
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def _channels_last(module: nn.Module) -> nn.Module:
    return module.to(memory_format=torch.channels_last).train()


def _random_images(options: StepOptions, image_size: int) -> torch.Tensor:
    """One batch in [-1, 1], channels_last (jaxmed's benchmark batch: uniform random)."""
    images = torch.rand(options.batch_size, common.CHANNELS, image_size, image_size) * 2 - 1
    return images.contiguous(memory_format=torch.channels_last)


def adam(params, lr: float, betas: tuple[float, float], weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam, or AdamW with decoupled weight decay (optax.adamw's), fused where this build supports it on CPU."""
    optimizer = torch.optim.AdamW if weight_decay else torch.optim.Adam
    settings = {"lr": lr, "betas": betas, "eps": 1e-8, "weight_decay": weight_decay}
    try:
        return optimizer(params, fused=True, **settings)
    except (RuntimeError, TypeError, ValueError):  # builds without fused CPU Adam
        return optimizer(params, **settings)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_fraction: float,
                  total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """optax.warmup_cosine_decay_schedule(0, lr, int(warmup_fraction * total), total) as a PyTorch scheduler."""
    warmup = int(warmup_fraction * total_steps)
    decay = max(total_steps, 1) - warmup

    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, decay) / decay))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _optimizer_settings(optimizer: torch.optim.Optimizer) -> dict:
    return {"optimizer": type(optimizer).__name__, "adam_fused": bool(optimizer.defaults.get("fused")),
            "memory_format": "channels_last"}


def gan_step(options: StepOptions) -> PeerStep:
    """dcgan128: one discriminator and one generator update from one shared forward pass."""
    image_size = common.IMAGE_SIZES["dcgan128"]
    generator = _channels_last(torch_models.Generator(image_size, common.CHANNELS, common.LATENT_DIM))
    discriminator = _channels_last(torch_models.Discriminator(image_size, common.CHANNELS))
    g_params, d_params = list(generator.parameters()), list(discriminator.parameters())
    betas = (common.BETA1, common.BETA2)
    g_optimizer, d_optimizer = adam(g_params, common.LEARNING_RATE, betas), adam(d_params, common.LEARNING_RATE, betas)
    run_generator, run_discriminator = options.wrap(generator), options.wrap(discriminator)
    real = _random_images(options, image_size)
    ones, zeros = torch.ones(options.batch_size), torch.zeros(options.batch_size)

    def run() -> dict[str, torch.Tensor]:
        z = torch.randn(options.batch_size, common.LATENT_DIM)
        with options.forward_precision():
            fake = run_generator(z)
            real_logits, fake_logits = run_discriminator(real), run_discriminator(fake)
            d_loss = (F.binary_cross_entropy_with_logits(real_logits, ones)
                      + F.binary_cross_entropy_with_logits(fake_logits, zeros))
            g_loss = F.binary_cross_entropy_with_logits(fake_logits, ones)
        d_optimizer.zero_grad(set_to_none=True)
        g_optimizer.zero_grad(set_to_none=True)
        d_loss.backward(inputs=d_params, retain_graph=True)
        g_loss.backward(inputs=g_params)
        d_optimizer.step()
        g_optimizer.step()
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

    return PeerStep(run, {"generator": torch_models.parameter_count(generator),
                          "discriminator": torch_models.parameter_count(discriminator)},
                    {**_optimizer_settings(d_optimizer), "form": "one shared forward; backward(inputs=...) per network"})


def classifier_step(name: str, options: StepOptions) -> PeerStep:
    """seed_cnn or resnet18: augmentation, cross-entropy, AdamW with warm-up and cosine decay."""
    image_size = common.IMAGE_SIZES[name]
    if name == "seed_cnn":
        model = torch_models.SeedCNN(image_size, common.CHANNELS, common.NUM_CLASSES, common.SEED_CNN_FEATURES,
                                     common.SEED_CNN_HIDDEN, common.CLASSIFIER_DROPOUT)
    else:
        model = torch_models.ResNet18(image_size, common.CHANNELS, common.NUM_CLASSES, common.RESNET18_WIDTH,
                                      common.CLASSIFIER_DROPOUT)
    model = _channels_last(model)
    settings = common.CLASSIFIER_OPTIMIZER
    optimizer = adam(model.parameters(), settings["lr"], (settings["b1"], settings["b2"]), settings["weight_decay"])
    schedule = warmup_cosine(optimizer, settings["warmup_fraction"], options.total_steps)
    run_model = options.wrap(model)
    images = _random_images(options, image_size)
    labels = torch.randint(0, common.NUM_CLASSES, (options.batch_size,))

    def run() -> dict[str, torch.Tensor]:
        augmented = torch_augment.augment(images, **common.AUGMENT)
        with options.forward_precision():
            logits = run_model(augmented)
            loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        accuracy = (logits.detach().argmax(-1) == labels).float().mean()
        return {"loss": loss.detach(), "accuracy": accuracy}

    return PeerStep(run, {"classifier": torch_models.parameter_count(model)},
                    {**_optimizer_settings(optimizer), "augmentation": "jaxmed.data.augment defaults, in the step"})


def vae_step(options: StepOptions) -> PeerStep:
    """vae128: the negative ELBO of a reparameterised sample, one Adam update."""
    image_size = common.IMAGE_SIZES["vae128"]
    vae = _channels_last(torch_models.VAE(image_size, common.CHANNELS, common.VAE_LATENT_DIM))
    settings = common.VAE_OPTIMIZER
    optimizer = adam(vae.parameters(), settings["lr"], (settings["b1"], settings["b2"]))
    run_vae = options.wrap(vae)
    images = _random_images(options, image_size)

    def run() -> dict[str, torch.Tensor]:
        noise = torch.randn(options.batch_size, common.VAE_LATENT_DIM)
        with options.forward_precision():
            reconstructions, mean, log_var = run_vae(images, noise)
            reconstruction = torch.square(images - reconstructions.float()).flatten(1).sum(-1).mean()
            kl = (0.5 * (torch.square(mean) + torch.exp(log_var) - 1.0 - log_var).sum(-1)).mean()
            loss = reconstruction + common.VAE_KL_WEIGHT * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach(), "reconstruction": reconstruction.detach(), "kl": kl.detach()}

    return PeerStep(run, {"encoder": torch_models.parameter_count(vae.encoder),
                          "decoder": torch_models.parameter_count(vae.decoder)}, _optimizer_settings(optimizer))


def cosine_alphas_cumprod(num_steps: int, offset: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """jaxmed.diffusion.schedule.cosine_schedule's alpha_bar of steps 0..T-1 (float64 on the host, then float32)."""
    def f(time):
        return np.cos((time + offset) / (1.0 + offset) * np.pi / 2) ** 2

    times = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    betas = np.minimum(1.0 - f(times[1:]) / f(times[:-1]), max_beta)
    return torch.tensor(np.cumprod(1.0 - betas), dtype=torch.float32)


def diffusion_step(options: StepOptions) -> PeerStep:
    """unet64: v-prediction with min-SNR weights at random noise levels, clipped AdamW, EMA of the parameters."""
    image_size = common.IMAGE_SIZES["unet64"]
    unet = _channels_last(torch_models.UNet(image_size, common.CHANNELS, **common.UNET))
    params = list(unet.parameters())
    ema = [param.detach().clone() for param in params]
    settings = common.DIFFUSION_OPTIMIZER
    optimizer = adam(params, settings["lr"], (settings["b1"], settings["b2"]))
    schedule = warmup_cosine(optimizer, settings["warmup_fraction"], options.total_steps)
    alphas_cumprod = cosine_alphas_cumprod(common.DIFFUSION_TIMESTEPS)
    run_unet = options.wrap(unet)
    x0 = _random_images(options, image_size)
    completed = [0]

    def run() -> dict[str, torch.Tensor]:
        timesteps = torch.randint(0, common.DIFFUSION_TIMESTEPS, (options.batch_size,))
        noise = torch.randn_like(x0)
        alpha_bar = alphas_cumprod[timesteps].view(-1, 1, 1, 1)
        a, sigma = alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()
        x_t = a * x0 + sigma * noise
        with options.forward_precision():
            output = run_unet(x_t, (timesteps.float() + 1.0) / common.DIFFUSION_TIMESTEPS).float()
            squared_error = torch.square(output - (a * noise - sigma * x0)).mean(dim=(1, 2, 3))
            snr = (alpha_bar / (1.0 - alpha_bar)).view(-1)
            weight = torch.clamp(snr, max=common.DIFFUSION_MIN_SNR_GAMMA) / (snr + 1.0)
            loss = (weight * squared_error).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings["clip_norm"], foreach=True)
        optimizer.step()
        schedule.step()
        completed[0] += 1
        # jaxmed.training.averaging: decay min(0.999, (1 + step) / (10 + step)) after `step` completed steps.
        decay = min(common.DIFFUSION_EMA_DECAY, (1.0 + completed[0]) / (10.0 + completed[0]))
        with torch.no_grad():
            torch._foreach_lerp_(ema, params, 1.0 - decay)
        return {"loss": loss.detach(), "mse": squared_error.detach().mean()}

    return PeerStep(run, {"unet": torch_models.parameter_count(unet)},
                    {**_optimizer_settings(optimizer), "gradient_clip_norm": settings["clip_norm"],
                     "ema_decay": common.DIFFUSION_EMA_DECAY})


# `jaxmed bench train-step --model NAME` -> the builder of its PyTorch step.
STEPS: dict[str, Callable[[StepOptions], PeerStep]] = {
    "dcgan128": gan_step,
    "seed_cnn": functools.partial(classifier_step, "seed_cnn"),
    "resnet18": functools.partial(classifier_step, "resnet18"),
    "vae128": vae_step,
    "unet64": diffusion_step,
}
