"""The seed experiment: a DCGAN that synthesizes brain-tumor MRI to enlarge a small data set.

Trains the `dcgan128` reference network (docs/design.md) on the tumor images of the
embedded `phantom:brain` data with the seed's settings (128x128 grayscale, batch 32,
Adam 2e-4 / beta1 0.5, binary cross-entropy), then writes what the paper shows:
fixed-noise sample grids during training, the generator and discriminator loss
curves (its Figure 2), the real-versus-generated pixel distribution (its Figure 3),
a folder of synthetic sample images, and their evaluation against unseen real phantoms
(`jaxmed evaluate`: FID, KID, precision/recall, copies of training images). `--vae` trains the VAE on the same data
instead (`jaxmed train vae`: its own optimizer defaults, plus a reconstruction figure).

    python experiments/brain_tumor_gan.py --workdir runs/brain_tumor_gan          # the full run
    python experiments/brain_tumor_gan.py --workdir runs/demo --cpu-demo          # ./scripts/demo.sh
    python experiments/brain_tumor_gan.py --workdir runs/brain_tumor_vae --vae    # the VAE

Run it again on the same workdir to resume. `--set key=value` overrides any config field.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from jaxmed import host_memory
from jaxmed.cli import key_value
from jaxmed.cli import main as jaxmed_main

SEED_EXPERIMENT = {"data.spec": "phantom:brain", "class_name": "tumor", "data.n": 2000,
                   "image_size": 128, "batch_size": 32, "steps": 5000}
# Sized for a 2-core CPU: minutes, yet long enough for lesions (FID still falls at 3,000 steps; 600 were blurry).
CPU_DEMO = {"image_size": 64, "batch_size": 16, "steps": 3000, "data.n": 1000,
            "checkpoint.every": 300, "sample.every": 300, "eval.every": 300, "log.every": 10}
SAMPLES = 16


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--cpu-demo", action="store_true", help="CPU-sized settings (about 10 minutes on 2 cores)")
    parser.add_argument("--vae", action="store_true", help="train the VAE instead of the DCGAN")
    parser.add_argument("--set", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field")
    args = parser.parse_args()

    requested = dict(args.set)
    settings = {**SEED_EXPERIMENT, **(CPU_DEMO if args.cpu_demo else {}), **requested}
    overrides = [f"--set={key}={value}" for key, value in settings.items()]
    started = time.perf_counter()
    family = "vae" if args.vae else "gan"
    status = jaxmed_main(["train", family, "--workdir", args.workdir, *overrides])
    if status:
        return status
    workdir = Path(args.workdir)
    status = jaxmed_main(["sample", "--workdir", args.workdir, "--n", str(SAMPLES), "--out", str(workdir / "samples")])
    if status:
        return status
    status = jaxmed_main(["evaluate", "--workdir", args.workdir, "--out", str(workdir / "evaluation")])
    if status:
        return status
    grids = sorted((workdir / "plots").glob("samples_step_*.png"))
    print(f"\nbrain_tumor_{family} finished in {time.perf_counter() - started:.0f} s. Outputs in {workdir}:\n"
          f"  sample grid (latest):     {grids[-1] if grids else '(none)'}\n"
          f"  loss curves:              {workdir / 'plots' / 'losses.png'}\n"
          f"  pixel distribution:       {workdir / 'plots' / 'pixel_distribution.png'}\n"
          + (f"  reconstructions:          {workdir / 'plots' / 'reconstructions.png'}\n" if args.vae else "") +
          f"  synthetic samples:        {workdir / 'samples'}\n"
          f"  FID/KID/precision/recall, copies of training images: {workdir / 'evaluation' / 'eval.json'}\n"
          f"  closest generated/training pairs: {workdir / 'evaluation' / 'plots' / 'nearest_training.png'}\n"
          f"  checkpoints:              {workdir / 'checkpoints'}\n"
          f"  metrics:                  {workdir / 'metrics.jsonl'}  (TensorBoard: {workdir / 'events'})")
    return 0


if __name__ == "__main__":
    host_memory.keep_freed_memory()  # a program of its own, like the `jaxmed` command (jaxmed.host_memory)
    sys.exit(main())
