"""The brain-tumor paper's claim, tested: do synthetic tumor images help a classifier when real ones are scarce?

Runs `jaxmed study augmentation` on `phantom:brain` with tumours as the scarce class: by
default the CPU-sized study (40 real tumour images, the GAN at three synthetic:real
ratios, seed_cnn, 5 repeated splits); with `--accelerator` the full study (every
generator family, ratios 0.25-4, 20-200 real tumour images, seed_cnn and resnet18 at
128 px, 20 splits; `jaxmed.studies.config.ACCELERATOR_OVERRIDES`). Writes W/study.json
and W/report.md; every run under W/seed_S/ keeps its own checkpoints and eval.json.

    python experiments/augmentation_study.py --workdir runs/augmentation_study [--accelerator] [--data SPEC]
        [--seeds N] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import sys

from jaxmed import host_memory
from jaxmed.cli import main as jaxmed_main
from jaxmed.studies.config import ACCELERATOR_OVERRIDES


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--data", default="phantom:brain", help="data spec (default phantom:brain, tumours scarce)")
    parser.add_argument("--seeds", help="repeated splits (default: the config's)")
    parser.add_argument("--accelerator", action="store_true", help="the full study, for a GPU or TPU")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    args = parser.parse_args()
    settings = {**(ACCELERATOR_OVERRIDES if args.accelerator else {}),
                **({"minority_class": "tumor"} if args.data == "phantom:brain" else {})}
    given = {item.partition("=")[0] for item in args.set} | ({"seeds"} if args.seeds else set())
    command = ["study", "augmentation", "--data", args.data, "--workdir", args.workdir,
               *(["--seeds", args.seeds] if args.seeds else []),
               *[f"--set={key}={value}" for key, value in settings.items() if key not in given],
               *[f"--set={item}" for item in args.set]]
    return jaxmed_main(command)


if __name__ == "__main__":
    host_memory.keep_freed_memory()  # a program of its own, like the `jaxmed` command (jaxmed.host_memory)
    sys.exit(main())
