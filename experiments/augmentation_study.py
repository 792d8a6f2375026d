"""The brain-tumor paper's claim, tested: do GAN-synthesized tumor images help a classifier?

Runs `jaxmed study augmentation` on `phantom:brain` with a scarce tumor class (40 real
tumor images in training), three seeds, CPU-sized GAN and classifier settings, and
prints the verdict per arm against classic augmentation. Outputs W/study.json and
W/plots/study.png; every run under W/seed_S/ keeps its own checkpoints and eval.json.

    python experiments/augmentation_study.py --workdir runs/augmentation_study [--seeds 3] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import sys

from jaxmed import host_memory
from jaxmed.cli import main as jaxmed_main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--seeds", default="3")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    args = parser.parse_args()
    return jaxmed_main(["study", "augmentation", "--data", "phantom:brain", "--workdir", args.workdir,
                        "--seeds", args.seeds, "--set", "minority_class=tumor", *[f"--set={kv}" for kv in args.set]])


if __name__ == "__main__":
    host_memory.keep_freed_memory()  # a program of its own, like the `jaxmed` command (jaxmed.host_memory)
    sys.exit(main())
