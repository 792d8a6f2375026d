"""The nodule paper: a CNN (convolution, max pooling, fully connected) classifying lung CT patches.

Trains `seed_cnn` on `phantom:lung` (nodule / no nodule, 64x64) with a stratified,
leak-free train/val/test split, early stopping on validation loss, and reports the
paper's measures on the untouched test split: accuracy, recall (sensitivity) and F1,
with bootstrap 95% intervals. Writes eval.json, training curves (the paper's Figures
4-5), the ROC curve and the confusion matrix.

    python experiments/nodule_cnn.py --workdir runs/nodule_cnn [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jaxmed import host_memory
from jaxmed.cli import key_value
from jaxmed.cli import main as jaxmed_main

SETTINGS = {"data.spec": "phantom:lung", "data.n": 3000, "model": "seed_cnn", "image_size": 64, "epochs": 15}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--set", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field")
    args = parser.parse_args()
    requested = dict(args.set)
    settings = [f"--set={key}={value}" for key, value in {**SETTINGS, **requested}.items()]
    status = jaxmed_main(["train", "classifier", "--workdir", args.workdir, *settings])
    if status:
        return status
    report = json.loads((Path(args.workdir) / "eval.json").read_text())
    intervals = report["confidence_intervals"]
    print("\nnodule_cnn on the test split (n={n}):".format(n=report["n"]))
    for name in ("accuracy", "recall", "f1", "roc_auc"):
        interval = intervals[name]
        print(f"  {name:9s} {report[name]:.3f}  (95% CI {interval['low']:.3f}-{interval['high']:.3f})")
    return 0


if __name__ == "__main__":
    host_memory.keep_freed_memory()  # a program of its own, like the `jaxmed` command (jaxmed.host_memory)
    sys.exit(main())
