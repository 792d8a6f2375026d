"""GAN recipes on a few hundred (or a hundred) images: FID, precision, recall and copies per recipe and seed.

Trains one GAN per (data set, recipe, seed) on `--count` training images with the same step
budget, then evaluates each with `jaxmed evaluate` in the features of one VAE per data set
(trained once, on that data set's own images) against held-out real images, and writes one
JSON with every run. The phantom data set is always measured; a folder of class sub-folders
(e.g. the Kermany chest X-rays, `--folder DIR --folder-class NORMAL`) is measured when given:
`--count` random images of that class from its train split (another subset per seed), held
out against the class in its test split.

    python experiments/gan_small_data.py --workdir runs/gan_small_data --json gan_small_data.json \\
        [--folder DIR --folder-class NORMAL] [--recipes seed,ada] [--seeds 3] [--count 100] [--steps 1500]

A recipe is "seed" or a `--set` list after a colon, e.g. "ada:gan_augment=ada,ada_images_to_full=20000".
Every run keeps its workdir, so an interrupted experiment resumes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from jaxmed.cli import main as jaxmed_main
from jaxmed.evaluation.generators import headline

RECIPES = {"seed": [], "diffaugment": ["gan_augment=diffaugment"],
           "ada": ["gan_augment=ada", "ada_images_to_full=20000"]}
TRAIN = ["--image-size", "64", "--batch-size", "16", "--no-progress", "--set", "checkpoint.every=500",
         "--set", "sample.every=500", "--set", "eval.fid=false", "--set", "log.every=50"]


def recipe_settings(recipe: str) -> list[str]:
    """The `--set` values of a recipe name or "name:key=value,key=value"."""
    name, _, settings = recipe.partition(":")
    return settings.split(",") if settings else RECIPES[name]


def folder_subset(folder: Path, class_name: str, count: int, seed: int, root: Path) -> Path:
    """`count` random images of `class_name` from `folder`/train, linked into root/subset_SEED/CLASS."""
    subset = root / f"subset_{seed}" / class_name
    if not subset.is_dir():
        files = sorted((folder / "train" / class_name).iterdir())
        subset.mkdir(parents=True)
        for path in random.Random(seed).sample(files, count):
            (subset / path.name).symlink_to(path.resolve())
    return subset.parent


def run(args: list[str]) -> None:
    if jaxmed_main(args):
        raise SystemExit(f"failed: jaxmed {' '.join(args)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--json", required=True, type=Path)
    parser.add_argument("--folder", type=Path, help="a folder with train/ and test/ class sub-folders")
    parser.add_argument("--folder-class", default="NORMAL")
    parser.add_argument("--recipes", default="seed,ada")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--count", type=int, default=100, help="training images per run")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--feature-steps", type=int, default=600, help="train steps of each data set's VAE")
    args = parser.parse_args()

    root: Path = args.workdir
    sets = {"phantom": {"train": ["--data", "phantom:brain", "--set", "class_name=tumor",
                                  "--set", f"data.n={2 * args.count}"],
                        "features": ["--data", "phantom:brain", "--set", "data.n=1000"], "reference": []}}
    if args.folder:
        test_class = root / "folder_test"
        if not test_class.is_dir():
            test_class.mkdir(parents=True)
            (test_class / args.folder_class).symlink_to((args.folder / "test" / args.folder_class).resolve())
        sets["folder"] = {"train": None, "features": ["--data", str(args.folder / "train")],
                          "reference": ["--data", str(test_class)]}
    runs = []
    for name, data in sets.items():
        extractor = root / f"features_{name}"
        if not (extractor / "checkpoints").is_dir():
            run(["train", "vae", "--workdir", str(extractor), *data["features"], "--image-size", "64",
                 "--batch-size", "16", "--steps", str(args.feature_steps), "--no-progress"])
        for seed in range(args.seeds):
            for recipe in args.recipes.split(","):
                workdir = root / f"{name}_{recipe.partition(':')[0]}_s{seed}"
                train = data["train"] or ["--data", str(folder_subset(args.folder, args.folder_class, args.count,
                                                                      seed, root)),
                                          "--set", f"class_name={args.folder_class}"]
                started = time.perf_counter()
                run(["train", "gan", "--workdir", str(workdir), *train, *TRAIN, "--steps", str(args.steps),
                     "--seed", str(seed), *[f"--set={kv}" for kv in recipe_settings(recipe)]])
                trained = time.perf_counter() - started
                if not (workdir / "eval_common" / "eval.json").is_file():
                    run(["evaluate", "--workdir", str(workdir), "--out", str(workdir / "eval_common"),
                         "--features", str(extractor), "--n", "500", "--no-progress", *data["reference"]])
                report = json.loads((workdir / "eval_common" / "eval.json").read_text())
                runs.append({"data": name, "recipe": recipe, "seed": seed, **headline(report),
                             "coverage": report.get("coverage"), "real_floor_fid": report["real_floor"]["fid"],
                             "train_seconds_this_call": round(trained, 1)})
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    args.json.write_text(json.dumps({"experiment": "gan_small_data", "count": args.count, "steps": args.steps,
                                     "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
