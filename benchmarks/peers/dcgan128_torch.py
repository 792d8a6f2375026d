"""docs/design.md's dcgan128 train step in PyTorch, written the way PyTorch recommends for CPU speed.

    benchmarks/peers/.venv/bin/python benchmarks/peers/dcgan128_torch.py --batch-size 32 --json out.json
    ... --variant compile        # the same models under torch.compile (inductor)

What makes it PyTorch's best, not a straw man:
- channels_last memory format for the models and the images (PyTorch's performance
  guide for convolution networks on CPU; oneDNN's native layout), eager mode;
- Adam with `fused=True` where this build supports it on CPU (else its default);
- `zero_grad(set_to_none=True)` and `backward(inputs=...)`: each loss differentiates
  only its own network's parameters, from one shared forward pass (the TensorFlow
  tutorial's form, as jaxmed does): G(z) once, D on the real and the generated batch,
  no third discriminator pass;
- the default thread count (one per core), mkldnn on, no autograd anomaly detection;
- `--precision bf16`: PyTorch's automatic mixed precision for CPU as its AMP
  documentation prescribes, `torch.autocast("cpu", dtype=torch.bfloat16)` around the
  forward pass and the losses, backward and optimizer steps outside it (float32
  parameters and Adam states; no gradient scaler, which bfloat16 does not need).

Same network and training as jaxmed's `dcgan128` (parameter counts are printed and
checked by `benchmarks/peers.py`): generator z(100) -> Linear 8*8*256 (no bias) ->
BN -> LeakyReLU(0.2) -> [ConvTranspose 4x4/2 (no bias) -> BN -> LeakyReLU] x 128, 64, 32
-> ConvTranspose 4x4/2 -> 1 channel -> tanh; discriminator [Conv 4x4/2 -> (BN, not
after the first) -> LeakyReLU] x 32, 64, 128, 256 -> Linear 1; BCE with logits
(non-saturating generator loss); Adam(2e-4, 0.5, 0.999); one D and one G update per
step. jaxmed's step also updates an EMA copy of the generator, which this one does not.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (the shared timing method; see common.py)

VARIANTS = ("eager", "compile")
BOTTLENECK = 8


def _init(module: nn.Module) -> None:
    # DCGAN's N(0, 0.02) weights, as jaxmed's models.
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _batch_norm(features: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(features, eps=common.BATCH_NORM_EPSILON, momentum=1.0 - common.BATCH_NORM_MOMENTUM)


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        features = common.GENERATOR_FEATURES
        self.project = nn.Linear(common.LATENT_DIM, BOTTLENECK * BOTTLENECK * features[0], bias=False)
        self.project_norm = _batch_norm(features[0])
        layers = []
        for f_in, f_out in zip(features[:-1], features[1:]):
            layers += [nn.ConvTranspose2d(f_in, f_out, 4, stride=2, padding=1, bias=False), _batch_norm(f_out),
                       nn.LeakyReLU(common.LEAKY_SLOPE)]
        self.up = nn.Sequential(*layers)
        self.to_image = nn.ConvTranspose2d(features[-1], common.CHANNELS, 4, stride=2, padding=1, bias=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(z.shape[0], common.GENERATOR_FEATURES[0], BOTTLENECK, BOTTLENECK)
        x = x.contiguous(memory_format=torch.channels_last)
        x = F.leaky_relu(self.project_norm(x), common.LEAKY_SLOPE)
        return torch.tanh(self.to_image(self.up(x)))


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        features = (common.CHANNELS, *common.DISCRIMINATOR_FEATURES)
        layers = []
        for stage, (f_in, f_out) in enumerate(zip(features[:-1], features[1:])):
            layers.append(nn.Conv2d(f_in, f_out, 4, stride=2, padding=1, bias=(stage == 0)))
            if stage > 0:
                layers.append(_batch_norm(f_out))
            layers.append(nn.LeakyReLU(common.LEAKY_SLOPE))
        self.features = nn.Sequential(*layers)
        self.classify = nn.Linear(BOTTLENECK * BOTTLENECK * features[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(torch.flatten(self.features(x), 1)).squeeze(1)


def _adam(params) -> torch.optim.Optimizer:
    settings = {"lr": common.LEARNING_RATE, "betas": (common.BETA1, common.BETA2)}
    try:
        return torch.optim.Adam(params, fused=True, **settings)
    except (RuntimeError, TypeError, ValueError):  # builds without fused CPU Adam
        return torch.optim.Adam(params, **settings)


def parameter_counts(generator: nn.Module, discriminator: nn.Module) -> dict[str, int]:
    return {"generator": sum(p.numel() for p in generator.parameters()),
            "discriminator": sum(p.numel() for p in discriminator.parameters())}


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0], VARIANTS)
    load_before = common.host.load_average()
    rss_before = common.host.current_rss_mb()
    torch.manual_seed(0)
    generator = Generator().to(memory_format=torch.channels_last)
    discriminator = Discriminator().to(memory_format=torch.channels_last)
    generator.apply(_init)
    discriminator.apply(_init)
    generator.train()
    discriminator.train()
    parameters = parameter_counts(generator, discriminator)
    generator_opt, discriminator_opt = _adam(generator.parameters()), _adam(discriminator.parameters())
    g_params, d_params = list(generator.parameters()), list(discriminator.parameters())
    run_generator, run_discriminator = generator, discriminator
    if args.variant == "compile":
        run_generator, run_discriminator = torch.compile(generator), torch.compile(discriminator)

    real = (torch.rand(args.batch_size, common.CHANNELS, common.IMAGE_SIZE, common.IMAGE_SIZE) * 2 - 1)
    real = real.contiguous(memory_format=torch.channels_last)
    ones, zeros = torch.ones(args.batch_size), torch.zeros(args.batch_size)
    losses = {}

    def forward_precision():
        if args.precision == "bf16":
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step():
        z = torch.randn(args.batch_size, common.LATENT_DIM)
        with forward_precision():
            fake = run_generator(z)
            real_logits, fake_logits = run_discriminator(real), run_discriminator(fake)
            d_loss = (F.binary_cross_entropy_with_logits(real_logits, ones)
                      + F.binary_cross_entropy_with_logits(fake_logits, zeros))
            g_loss = F.binary_cross_entropy_with_logits(fake_logits, ones)
        discriminator_opt.zero_grad(set_to_none=True)
        generator_opt.zero_grad(set_to_none=True)
        d_loss.backward(inputs=d_params, retain_graph=True)
        g_loss.backward(inputs=g_params)
        discriminator_opt.step()
        generator_opt.step()
        losses.update(d_loss=d_loss.detach(), g_loss=g_loss.detach())
        return d_loss

    samples, first_s = common.stats.time_samples(train_step, lambda _: None, warmup=args.warmup,
                                                 repeats=args.steps)
    settings = {"memory_format": "channels_last", "optimizer": type(discriminator_opt).__name__,
                "adam_fused": bool(discriminator_opt.defaults.get("fused")), "threads": torch.get_num_threads(),
                "interop_threads": torch.get_num_interop_threads(), "mkldnn": torch.backends.mkldnn.is_available(),
                "form": "one shared forward; backward(inputs=...) per network",
                "autocast": "cpu bfloat16" if args.precision == "bf16" else None}
    versions = {"torch": torch.__version__, "mkldnn_version": str(torch.backends.mkldnn.is_available()),
                "config": torch.__config__.show().splitlines()[:6]}
    report = common.result("pytorch", args.variant, args, samples, first_s, rss_before, parameters, versions,
                           settings, load_before, {name: float(value) for name, value in losses.items()})
    common.emit(report, args.json)


if __name__ == "__main__":
    main()
