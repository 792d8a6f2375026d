"""What the peer benchmarks share with jaxmed's: the timing method, host record, result fields, JSON contract
and the settings of every benchmarked model.

The peers run in their own environment (`benchmarks/peers/setup.sh`), which has no
JAX, so this loads jaxmed's standard-library-only modules (`jaxmed/bench/stats.py`,
`jaxmed/bench/host.py`, `jaxmed/output.py`) straight from their files instead of importing the package:
every framework is then timed by the same code.

The constants below restate the configs `jaxmed bench train-step` builds for each model
(a test checks them against jaxmed's config classes, since this environment cannot import
them); each peer prints its parameter counts and `benchmarks/peers.py` checks them against
jaxmed's, so a different network shows as an error in every run.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# docs/design.md's dcgan128 (1 channel, z of 100), as in jaxmed.models.dcgan: trainable parameters.
LATENT_DIM = 100
IMAGE_SIZE = 128
CHANNELS = 1
GENERATOR_FEATURES = (256, 128, 64, 32)  # 8x8 bottleneck, then one 4x4/2 up-sampling per entry after the first
DISCRIMINATOR_FEATURES = (32, 64, 128, 256)
LEAKY_SLOPE = 0.2
BATCH_NORM_MOMENTUM = 0.9  # running = 0.9 running + 0.1 batch (PyTorch's momentum=0.1)
BATCH_NORM_EPSILON = 1e-5
LEARNING_RATE, BETA1, BETA2 = 2e-4, 0.5, 0.999
PRECISIONS = ("fp32", "bf16")  # jaxmed.config.PRECISIONS (this environment has no jaxmed; a test checks)

# `jaxmed bench train-step --model NAME`: image side per model (jaxmed.bench.train_step.MODELS), 1 channel.
IMAGE_SIZES = {"dcgan128": 128, "vae128": 128, "seed_cnn": 128, "resnet18": 128, "unet64": 64}

# The classifiers' benchmark config (jaxmed.families.classifier.ClassifierConfig's defaults, two classes).
NUM_CLASSES = 2
CLASSIFIER_DROPOUT = 0.5  # the config's dropout_rate, before the last dense layer of both classifiers
RESNET18_WIDTH = 64
SEED_CNN_FEATURES = (32, 64, 128)
SEED_CNN_HIDDEN = 128
CLASSIFIER_OPTIMIZER = {"lr": 1e-3, "b1": 0.9, "b2": 0.999, "weight_decay": 1e-4, "warmup_fraction": 0.05}
# jaxmed.data.augment.AugmentConfig's defaults: the augmentation inside the classifier's step.
AUGMENT = {"flip_probability": 0.5, "max_rotation_degrees": 10.0, "scale_range": (0.9, 1.1),
           "max_translation": 0.04, "noise_std": 0.02}

# The VAE's benchmark config (jaxmed.families.vae.VaeConfig's defaults): DCGAN layers, z of 128.
VAE_LATENT_DIM = 128
VAE_KL_WEIGHT = 1.0
VAE_OPTIMIZER = {"lr": 2e-4, "b1": 0.9, "b2": 0.999}

# The diffusion family's benchmark config (jaxmed.families.diffusion.DiffusionConfig, the "small" U-Net).
UNET = {"base_features": 32, "channel_multipliers": (1, 2, 2, 2), "num_res_blocks": 1,
        "attention_resolutions": (16, 8, 4), "head_features": 32, "norm_groups": 8}
DIFFUSION_TIMESTEPS = 1000
DIFFUSION_MIN_SNR_GAMMA = 5.0
DIFFUSION_EMA_DECAY = 0.999
DIFFUSION_OPTIMIZER = {"lr": 2e-4, "b1": 0.9, "b2": 0.999, "warmup_fraction": 0.05, "clip_norm": 1.0}


def _load(relative: str):
    """The module at jaxmed/`relative`.py, loaded from its file (this environment cannot import jaxmed)."""
    name = relative.replace("/", "_")
    spec = importlib.util.spec_from_file_location(f"jaxmed_{name}_standalone", REPO / "jaxmed" / f"{relative}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stats = _load("bench/stats")
host = _load("bench/host")
output = _load("output")


def parse_args(description: str, variants: tuple[str, ...], models: tuple[str, ...] = ("dcgan128",)
               ) -> argparse.Namespace:
    """The flags every peer takes (the same as `jaxmed bench train-step`'s that apply).

    Args:
      description: the peer's one-line description.
      variants: the peer's ways of running the step (the first is the default).
      models: the `--model` names the peer implements (the first is the default).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", choices=models, default=models[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after the first")
    parser.add_argument("--variant", choices=variants, default=variants[0])
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32, or bf16: the framework's own mixed precision (bfloat16 compute, float32 "
                             "parameters and optimizer), as jaxmed's --precision bf16")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="write the result as JSON to FILE; without FILE, only the JSON object on stdout")
    return parser.parse_args()


def result(framework: str, variant: str, args: argparse.Namespace, samples: list[float], first_s: float,
           rss_before_mb: float | None, parameters: dict[str, int], versions: dict, settings: dict,
           load_before: list[float] | None, final_losses: dict[str, float]) -> dict:
    """The peer's result with jaxmed's `bench train-step` field names and meanings.

    `compile_s` here is the first step's time minus the median step time: the one-off
    cost (graph tracing, kernel selection, torch.compile / XLA compilation) that the
    first step pays; jaxmed measures its ahead-of-time compilation directly.
    """
    timing = stats.summarize_ms(samples)
    parameters = {**parameters, "total": sum(parameters.values())}
    return {
        "benchmark": "train-step",
        "model": args.model,
        "framework": framework,
        "variant": variant,
        "image_size": IMAGE_SIZES[args.model],
        "channels": CHANNELS,
        "batch_size": args.batch_size,
        "precision": args.precision,
        "devices": 1,
        "steps": args.steps,
        "warmup": args.warmup,
        **stats.step_fields(args.batch_size, timing),
        "compile_s": max(first_s - timing["median_ms"] / 1e3, 0.0),
        "first_step_ms": 1e3 * first_s,
        "peak_memory_mb": host.peak_rss_mb() - rss_before_mb if rss_before_mb is not None else None,
        "peak_memory_source": "process peak RSS (getrusage) minus RSS before building the models",
        "parameters": parameters,
        "final_metrics": final_losses,
        "settings": settings,
        "method": "median of per-step times after the first step and `warmup` more (jaxmed.bench.stats); "
                  "data: one random batch in memory",
        "load_average": {"before": load_before, "after": host.load_average()},
        "environment": {**host.host_record(), "versions": versions},
    }


def emit(report: dict, json_target: str | None) -> None:
    """Prints a one-line summary and the JSON per the `--json` contract (`jaxmed.output`)."""
    summary = (f"{report['framework']} {report['variant']} {report['precision']}: {report['images_per_s']:.1f} "
               f"images/s, step "
               f"{report['step_ms']:.1f} ms (p10 {report['step_ms_p10']:.1f}, p90 {report['step_ms_p90']:.1f}), "
               f"compile {report['compile_s']:.1f} s, peak {report['peak_memory_mb']:.0f} MB, parameters "
               f"{report['parameters']}")
    output.emit(report, summary, json_target)
