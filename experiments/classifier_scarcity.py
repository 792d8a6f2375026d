"""The default classifier when one class is scarce: test metrics versus that class's training count.

For each count (e.g. 20, 50, 200) and seed, links a random `count` images of `--class` from
`FOLDER/train` (all images of the other classes) into a subset folder beside an untouched
`FOLDER/test`, trains the default classifier on it (`jaxmed train classifier`, the folder's own
test split, validation carved from the subset's training images), and writes one JSON with each
run's test accuracy, recall, specificity and ROC AUC with their 95% intervals and wall time. The
augmentation study starts from this curve: synthetic images can only help where it is low.

    python experiments/classifier_scarcity.py --folder DIR --class NORMAL --counts 20,50,200 \\
        --workdir runs/scarcity --json scarcity.json [--seeds 1] [--set key=value ...]

Every run keeps its workdir, so an interrupted experiment resumes.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

from jaxmed import host_memory
from jaxmed.cli import main as jaxmed_main

METRICS = ("accuracy", "recall", "specificity", "f1", "roc_auc")
RUN_FILE = "scarcity_run.json"  # a finished run's row, kept in its workdir


def scarce_subset(folder: Path, class_name: str, count: int, seed: int, root: Path) -> Path:
    """root/CLASS_COUNT_sSEED with train/ (`count` random `class_name` images, every other class whole) and test/."""
    subset = root / f"{class_name}_{count}_s{seed}"
    if subset.is_dir():
        return subset
    partial = root / f"{subset.name}.partial"  # renamed when complete: an interrupted build starts over
    if partial.exists():
        shutil.rmtree(partial)
    classes = sorted(path.name for path in (folder / "train").iterdir() if path.is_dir())
    if class_name not in classes:
        raise SystemExit(f"{folder / 'train'}: no class folder {class_name!r}")
    # Files are linked one by one: folder readers do not descend into linked directories.
    for split in ("train", "test"):
        for name in classes:
            files = sorted((folder / split / name).iterdir())
            if split == "train" and name == class_name:
                if count > len(files):
                    raise SystemExit(f"{folder / split / name}: {len(files)} images, fewer than the {count} requested")
                files = random.Random(seed).sample(files, count)
            (partial / split / name).mkdir(parents=True)
            for file in files:
                (partial / split / name / file.name).symlink_to(file.resolve())
    partial.rename(subset)
    return subset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", required=True, type=Path, help="a folder with train/ and test/ class sub-folders")
    parser.add_argument("--class", dest="class_name", required=True, help="the class made scarce")
    parser.add_argument("--counts", default="20,50,200", help="training images of that class, comma-separated")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--json", required=True, type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    args = parser.parse_args()
    runs = []
    for count in (int(text) for text in args.counts.split(",")):
        for seed in range(args.seeds):
            subset = scarce_subset(args.folder, args.class_name, count, seed, args.workdir / "data")
            workdir = args.workdir / subset.name
            if (workdir / RUN_FILE).is_file():  # finished by an earlier call: its row, wall time included
                runs.append(json.loads((workdir / RUN_FILE).read_text()))
                continue
            started = time.perf_counter()
            command = ["train", "classifier", "--data", str(subset), "--workdir", str(workdir), "--seed", str(seed),
                       "--no-progress", *(f"--set={item}" for item in args.set)]
            if jaxmed_main(command):
                return 1
            report = json.loads((workdir / "eval.json").read_text())
            intervals = report["confidence_intervals"]
            runs.append({"count": count, "seed": seed, "wall_time_s": round(time.perf_counter() - started, 1),
                         **{name: report[name] for name in METRICS},
                         "intervals": {name: [intervals[name]["low"], intervals[name]["high"]] for name in METRICS},
                         "best_epoch": report["best_epoch"], "epochs_trained": report["epochs_trained"],
                         "split_sizes": report["split_sizes"]})
            (workdir / RUN_FILE).write_text(json.dumps(runs[-1]) + "\n")
            print(json.dumps(runs[-1]), flush=True)
    args.json.write_text(json.dumps({"experiment": "classifier_scarcity", "folder_class": args.class_name,
                                     "settings": args.set, "runs": runs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    host_memory.keep_freed_memory()  # a program of its own, like the `jaxmed` command (jaxmed.host_memory)
    sys.exit(main())
