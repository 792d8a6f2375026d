"""jaxmed's train step of one benchmark model in PyTorch, timed as `jaxmed bench train-step` times its own.

    benchmarks/peers/.venv/bin/python benchmarks/peers/torch_peer.py --model resnet18 --batch-size 32 --json
    ... --variant compile        # the same networks under torch.compile (inductor)
    ... --precision bf16         # PyTorch's CPU autocast to bfloat16

`--model` is one of `torch_steps.STEPS` (dcgan128, seed_cnn, resnet18, vae128, unet64); the
networks are `torch_models`' and the steps `torch_steps`' (whose docstring says what makes
them PyTorch's best). The JSON has jaxmed's result fields plus the parameter counts per
network, which `benchmarks/peers.py` checks against jaxmed's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (the shared timing method; see common.py)
import torch_steps  # noqa: E402

VARIANTS = ("eager", "compile")


def _identity(module: torch.nn.Module) -> torch.nn.Module:
    return module


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0], VARIANTS, tuple(torch_steps.STEPS))
    load_before = common.host.load_average()
    rss_before = common.host.current_rss_mb()
    torch.manual_seed(0)
    options = torch_steps.StepOptions(batch_size=args.batch_size, total_steps=1 + args.warmup + args.steps,
                                      precision=args.precision,
                                      wrap=torch.compile if args.variant == "compile" else _identity)
    step = torch_steps.STEPS[args.model](options)
    losses = {}

    def train_step():
        losses.update(step.run())

    samples, first_s = common.stats.time_samples(train_step, lambda _: None, warmup=args.warmup,
                                                 repeats=args.steps)
    settings = {**step.settings, "threads": torch.get_num_threads(),
                "interop_threads": torch.get_num_interop_threads(), "mkldnn": torch.backends.mkldnn.is_available(),
                "autocast": "cpu bfloat16" if args.precision == "bf16" else None}
    versions = {"torch": torch.__version__, "config": torch.__config__.show().splitlines()[:6]}
    report = common.result("pytorch", args.variant, args, samples, first_s, rss_before, step.parameters, versions,
                           settings, load_before, {name: float(value) for name, value in losses.items()})
    common.emit(report, args.json)


if __name__ == "__main__":
    main()
