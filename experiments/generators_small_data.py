"""Generative families on a hundred (or a few hundred) images: FID, precision, recall and copies per arm and seed.

Trains one generator per (data set, arm, seed) on `--count` training images, then evaluates
each with jaxmed's own evaluation (`jaxmed.evaluate`) in the features of one VAE per data set
(trained once, on that data set's own images) against held-out real images, and writes one
JSON with every run. The phantom data set (tumours of `phantom:brain`) is always measured; a
folder of class sub-folders (e.g. the Kermany chest X-rays, `--folder DIR --folder-class
NORMAL`) is measured when given: `--count` random images of that class from its train split
(another subset per seed), held out against the class in its test split.

    python experiments/generators_small_data.py --workdir runs/small_data --json small_data.json \\
        [--folder DIR --folder-class NORMAL] [--arms gan:seed,gan:ada,vae,diffusion] [--seeds 3] \\
        [--count 100] [--steps 1500 | --minutes 30] [--sample-n 50]

Arms: `--arms` is a comma-separated list of "family[:name][:key=value;key=value...]":
- family: a generative family of `jaxmed train` (gan, vae, diffusion);
- name: a preset of that family (`PRESETS`: the GAN recipes seed, diffaugment, ada), or any
  label when settings follow; without a name the arm is the family's defaults;
- settings: `--set` overrides of the arm's config, separated by ";" (the list itself is
  comma-separated), e.g. "gan:ada2:gan_augment=ada;ada_images_to_full=40000" or
  "diffusion:eps:prediction=eps". A preset's settings come first, the arm's own win.
The steps, seed, image size and data of a run are the experiment's, not an arm's.

Budget: `--steps N` (the default, 1500) trains every arm for N steps. `--minutes M` trains
every arm for about M minutes instead: each arm's step time is measured once before any run
(`jaxmed.bench.train_step.benchmark_train_step` on the arm's own config: compiled ahead of
time, `--timing-steps` timed steps, their median), and its step count is M minutes over that
time. The measured step excludes the input pipeline, logging, checkpoints and compiling, so a
run's wall time comes out somewhat above M; the JSON keeps each arm's timing and each run's
actual training wall time and step count.

Every run is evaluated on `--eval-n` generated images (a diffusion run with its configured
sampler: DPM-Solver++ at 25 steps unless its settings say otherwise). Diffusion runs are
also measured per sampler, each on the same `--sample-n` generated images:
ancestral DDPM with all of the run's training timesteps (1000 by default), DDIM with 50 steps
(eta 0, deterministic, and eta 1, with the ancestral noise) and DPM-Solver++ (2M) with its
default steps; for each, FID/precision/recall (`jaxmed.evaluate` with the sampler's settings)
and the sampling time per image (one batch of `--timing-n` images, compiled beforehand).
DDPM-1000 dominates the cost: the small U-Net takes about 5-10 ms per image per network
evaluation at 32-64 px on a 2-core CPU, so each DDPM image costs 5-10 s, and the default 50
(+ 8 timed) images about 5-10 minutes per diffusion run; DDIM-50 and DPM-Solver++ cost 1/20
and 1/40 of that. FID from 50 images is biased upwards:
compare samplers with each other, not with the 500-image FIDs of the arms.

The JSON: the experiment's settings ("mode" steps or minutes, "steps" or "minutes", "arms"
with their settings, "step_timing" per arm in minutes mode: step_ms, compile_s, steps_for_budget,
...) and "runs", one per (data set, arm, seed): data, arm, family, recipe (the arm's name),
seed, fid, kid, precision, recall, copies, data_copying_z, coverage, real_floor_fid, steps
(trained), train_seconds (its whole training, compiling included), train_seconds_this_call,
and for diffusion runs "samplers": per sampler its sampling_steps, eta, n, the same metrics,
seconds_per_image and images_timed.

Every run keeps its workdir (minutes-mode runs in their own, suffixed with the budget), and
the step timings are kept in the experiment's workdir, so an interrupted experiment resumes
with the same step counts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import sys
import time
from pathlib import Path

import jax

import jaxmed
from jaxmed import config as config_lib
from jaxmed import families
from jaxmed.bench.train_step import benchmark_train_step
from jaxmed.errors import JaxmedError, UsageError
from jaxmed.evaluation.generators import headline
from jaxmed.families.diffusion import SamplingConfig
from jaxmed.training.restore import BEST, RestoredRun, restore_run

# Named settings per family: the GAN recipes measured in docs/training.md.
PRESETS = {"gan": {"seed": (), "diffaugment": ("gan_augment=diffaugment",),
                   "ada": ("gan_augment=ada", "ada_images_to_full=20000")}}
# Keys every run shares, set by the experiment (an arm setting one of them is refused).
EXPERIMENT_KEYS = ("steps", "seed", "image_size", "class_name", "data.spec", "data.n")
# The sampler rows of a diffusion run: (sampler, network evaluations (None: all training timesteps), DDIM's eta).
DIFFUSION_SAMPLERS = (("ddpm", None, 0.0), ("ddim", 50, 0.0), ("ddim", 50, 1.0),
                      ("dpm_solver_2m", SamplingConfig().steps, 0.0))
# Untimed steps of the step-time measurement after the first.
TIMING_WARMUP = 2
# Where a run's accumulated training wall time is kept, so a resumed run reports its whole training.
TRAIN_TIME_FILE = "experiment_train_time.json"


@dataclasses.dataclass(frozen=True)
class Arm:
    """One generator configuration of the comparison.

    Attributes:
      family: the `jaxmed train` family ("gan", "vae", "diffusion").
      name: a preset name or a label ("" for the family's defaults).
      settings: "key=value" config overrides (the preset's first).
    """

    family: str
    name: str
    settings: tuple[str, ...]

    @property
    def label(self) -> str:
        """The arm's name in workdirs and the JSON, e.g. "gan-seed" or "diffusion"."""
        return f"{self.family}-{self.name}" if self.name else self.family

    def overrides(self) -> dict[str, str]:
        """The settings as config overrides (later ones win)."""
        return dict(setting.split("=", 1) for setting in self.settings)


def parse_arm(text: str) -> Arm:
    """An `Arm` from "family[:name][:key=value;key=value...]" (see the module docstring).

    Raises:
      argparse.ArgumentTypeError: an unknown or non-generative family, an unknown preset
        without settings, a malformed setting, or a key the experiment sets itself.
    """
    parts = text.strip().split(":")
    if len(parts) > 3 or not parts[0]:
        raise argparse.ArgumentTypeError(f"arm {text!r}: expected family[:name][:key=value;...]")
    family = parts[0]
    if family not in {f.name for f in families.all_families() if f.generates}:
        generative = ", ".join(f.name for f in families.all_families() if f.generates)
        raise argparse.ArgumentTypeError(f"arm {text!r}: unknown generative family {family!r} (one of {generative})")
    name, given = "", ""
    if len(parts) == 2 and "=" in parts[1]:
        given = parts[1]
    elif len(parts) >= 2:
        name, given = parts[1], parts[2] if len(parts) == 3 else ""
    if name and not re.fullmatch(r"[A-Za-z0-9_.]+", name):
        raise argparse.ArgumentTypeError(f"arm {text!r}: a name takes letters, digits, '_' and '.', got {name!r}")
    presets = PRESETS.get(family, {})
    if name and name not in presets and not given:
        known = ", ".join(presets) or "none"
        raise argparse.ArgumentTypeError(f"arm {text!r}: {family} has no preset {name!r} (presets: {known}); "
                                         f"give settings after a second colon to use it as a label")
    settings = tuple(item.strip() for item in given.split(";") if item.strip())
    for setting in settings:
        key, equals, _ = setting.partition("=")
        if not equals or not key:
            raise argparse.ArgumentTypeError(f"arm {text!r}: expected key=value, got {setting!r}")
        if key in EXPERIMENT_KEYS:
            raise argparse.ArgumentTypeError(f"arm {text!r}: {key} is the experiment's (the same for every arm)")
    return Arm(family, name, tuple(presets.get(name, ())) + settings)


def parse_arms(text: str) -> list[Arm]:
    """The arms of a comma-separated `--arms` list, checked for repeated labels."""
    arms = [parse_arm(item) for item in text.split(",") if item.strip()]
    labels = [arm.label for arm in arms]
    if not arms or len(set(labels)) < len(labels):
        raise argparse.ArgumentTypeError(f"--arms {text!r}: expected distinct arms, got {', '.join(labels) or 'none'}")
    return arms


def folder_subset(folder: Path, class_name: str, count: int, seed: int, root: Path) -> Path:
    """`count` random images of `class_name` from `folder`/train, linked into root/subset_SEED/CLASS."""
    subset = root / f"subset_{seed}" / class_name
    if not subset.is_dir():
        files = sorted((folder / "train" / class_name).iterdir())
        subset.mkdir(parents=True)
        for path in random.Random(seed).sample(files, count):
            (subset / path.name).symlink_to(path.resolve())
    return subset.parent


def data_sets(args: argparse.Namespace) -> dict[str, dict]:
    """Per data set: its feature extractor's data and settings, and its reference spec (None: its own source)."""
    sets = {"phantom": {"features": ("phantom:brain", {"data.n": args.feature_images}), "reference": None}}
    if args.folder:
        test_class = args.workdir / "folder_test"
        if not test_class.is_dir():
            test_class.mkdir(parents=True)
            (test_class / args.folder_class).symlink_to((args.folder / "test" / args.folder_class).resolve())
        sets["folder"] = {"features": (str(args.folder / "train"), {}), "reference": str(test_class)}
    return sets


def training_data(name: str, seed: int, args: argparse.Namespace) -> tuple[str, dict]:
    """The data spec and settings a run of data set `name` and `seed` trains on (`--count` images of one class)."""
    if name == "phantom":  # half of the phantoms are tumours
        return "phantom:brain", {"class_name": "tumor", "data.n": 2 * args.count}
    return str(folder_subset(args.folder, args.folder_class, args.count, seed, args.workdir)), {
        "class_name": args.folder_class}


def run_settings(arm: Arm, args: argparse.Namespace, extra: dict) -> dict:
    """The config overrides of one of `arm`'s runs: the experiment's shared settings, `extra`, the arm's own."""
    return {"image_size": args.image_size, "batch_size": args.batch_size, "checkpoint.every": 500,
            "sample.every": 500, "eval.fid": False, "log.every": 50, **extra, **arm.overrides()}


def check_arms(args: argparse.Namespace) -> None:
    """Every arm's config is valid (a bad key or value fails here, before hours of other arms' runs).

    Raises:
      UsageError: the arm's settings do not make a valid config of its family.
    """
    for arm in args.arms:
        try:
            config_lib.apply_overrides(families.get(arm.family).config_type(), run_settings(arm, args, {}))
        except UsageError as error:
            raise UsageError(f"arm {arm.label}: {error}") from None


def step_timing(arm: Arm, args: argparse.Namespace) -> dict:
    """The arm's measured train step time and the step count that fills `--minutes`.

    The step is the arm's own config (data aside: the benchmark feeds random images),
    compiled ahead of time; its median over `--timing-steps` steps sets the count. The
    measurement is kept in the experiment's workdir and reused while the arm's settings are
    the same, so a resumed experiment trains to the same step counts.
    """
    settings = run_settings(arm, args, {})
    path = args.workdir / f"step_timing_{arm.label}.json"
    timing = json.loads(path.read_text()) if path.is_file() else {}
    if timing.get("settings") != settings:
        config = config_lib.apply_overrides(families.get(arm.family).config_type(), settings)
        result = benchmark_train_step(arm.label, config.batch_size, steps=args.timing_steps, warmup=TIMING_WARMUP,
                                      config=config)
        timing = {key: result[key] for key in ("step_ms", "step_ms_p10", "step_ms_p90", "images_per_s", "compile_s")}
        timing.update(timed_steps=result["steps"], untimed_steps=1 + result["warmup"], settings=settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(timing, indent=2) + "\n")
    return {**timing, "steps_for_budget": max(1, int(args.minutes * 60_000 / timing["step_ms"]))}


def train_run(family: str, workdir: Path, spec: str, settings: dict) -> dict:
    """Trains (or resumes) one run; its step count and training wall time, summed over the calls that trained.

    A call interrupted before it finished is not counted (its steps are retrained from the last checkpoint).
    """
    record = workdir / TRAIN_TIME_FILE
    before = json.loads(record.read_text()) if record.is_file() else {"seconds": 0.0, "step": 0}
    started = time.perf_counter()
    result = jaxmed.train(family, workdir, data=spec, progress=False, **settings)
    this_call = time.perf_counter() - started
    trained = {"step": result.step, "seconds": before["seconds"] + (this_call if result.step != before["step"] else 0)}
    record.write_text(json.dumps(trained) + "\n")
    return {"steps": trained["step"], "train_seconds": round(trained["seconds"], 1),
            "train_seconds_this_call": round(this_call, 1)}


def evaluation(workdir: Path, out: Path, extractor: Path, reference: str | None, n: int,
               settings: dict | None = None) -> dict:
    """The run's eval.json in `out` (`jaxmed.evaluate` with `settings` for drawing), computed once."""
    if not (out / "eval.json").is_file():
        jaxmed.evaluate(workdir, out, features=extractor, data=reference, n=n, settings=settings, progress=False)
    return json.loads((out / "eval.json").read_text())


def summary(report: dict) -> dict:
    """The JSON fields of one evaluation: the headline numbers, coverage and the real-vs-real floor."""
    floor = report["real_floor"]
    return {**headline(report), "coverage": report.get("coverage"), "real_floor_fid": floor["fid"] if floor else None}


def seconds_per_image(run: RestoredRun, settings: dict, n: int) -> float:
    """Wall time per image of drawing one batch of `n` images from `run` with `settings`, compiled beforehand."""
    generator = run.family.generator(config_lib.apply_overrides(run.config, settings), run.definition)
    z_NxZ = jax.random.normal(jax.random.key(0), (n, generator.latent_dim))
    draw = jax.jit(generator.generate).lower(run.state, z_NxZ).compile()
    started = time.perf_counter()
    jax.block_until_ready(draw(run.state, z_NxZ))
    return (time.perf_counter() - started) / n


def sampler_rows(workdir: Path, extractor: Path, reference: str | None, args: argparse.Namespace) -> list[dict]:
    """A diffusion run measured with each of `DIFFUSION_SAMPLERS` on `--sample-n` images."""
    run = restore_run(workdir, "a diffusion workdir", BEST)  # the checkpoint `jaxmed.evaluate` takes
    timesteps = run.config.timesteps
    rows = []
    for sampler, steps, eta in DIFFUSION_SAMPLERS:
        steps = min(steps or timesteps, timesteps)
        settings = {"sampling.sampler": sampler, "sampling.steps": steps, "sampling.eta": eta}
        out = workdir / (f"eval_{sampler}_{steps}" + (f"_eta{eta:g}" if eta else ""))
        report = evaluation(workdir, out, extractor, reference, args.sample_n, settings)
        timing = out / "sampling_time.json"
        if not timing.is_file():
            timing.write_text(json.dumps({"seconds_per_image": seconds_per_image(run, settings, args.timing_n),
                                          "images_timed": args.timing_n}) + "\n")
        rows.append({"sampler": sampler, "sampling_steps": steps, "eta": eta, "n": args.sample_n, **summary(report),
                     **json.loads(timing.read_text())})
    return rows


def enable_compilation_cache() -> None:
    """Reuses XLA compilations across runs and resumed experiments, in the cache the `jaxmed` command uses."""
    directory = os.environ.get("JAXMED_XLA_CACHE", str(Path.home() / ".cache" / "jaxmed" / "xla"))
    if directory and jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", directory)


def positive(kind: type):
    """An argparse type: a `kind` number above 0."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--json", required=True, type=Path)
    parser.add_argument("--folder", type=Path, help="a folder with train/ and test/ class sub-folders")
    parser.add_argument("--folder-class", default="NORMAL")
    parser.add_argument("--arms", type=parse_arms, default="gan:seed,gan:ada",
                        help="family[:name][:key=value;...], comma-separated (default gan:seed,gan:ada)")
    parser.add_argument("--seeds", type=positive(int), default=3)
    parser.add_argument("--count", type=positive(int), default=100, help="training images per run")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=positive(int), default=1500, help="train steps of every arm (default 1500)")
    budget.add_argument("--minutes", type=positive(float), help="train every arm for about this many minutes instead")
    parser.add_argument("--timing-steps", type=positive(int), default=10, help="timed steps per arm in --minutes mode")
    parser.add_argument("--image-size", type=positive(int), default=64)
    parser.add_argument("--batch-size", type=positive(int), default=16)
    parser.add_argument("--feature-steps", type=positive(int), default=600, help="train steps of each data set's VAE")
    parser.add_argument("--feature-images", type=positive(int), default=1000, help="phantoms the phantom VAE trains on")
    parser.add_argument("--eval-n", type=positive(int), default=500, help="generated images per evaluation")
    parser.add_argument("--sample-n", type=positive(int), default=50, help="generated images per diffusion sampler")
    parser.add_argument("--timing-n", type=positive(int), default=8, help="images per diffusion sampler's timed batch")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the experiment on `argv` (default: the command line); writes `--json` after every run, returns 0."""
    args = build_parser().parse_args(argv)
    check_arms(args)
    enable_compilation_cache()
    root: Path = args.workdir
    timings = {arm.label: step_timing(arm, args) for arm in args.arms} if args.minutes else {}
    suffix = f"_{args.minutes:g}min" if args.minutes else ""
    result = {"experiment": "generators_small_data", "count": args.count,
              "mode": "minutes" if args.minutes else "steps", "steps": None if args.minutes else args.steps,
              "minutes": args.minutes, "image_size": args.image_size, "batch_size": args.batch_size,
              "arms": {arm.label: {"family": arm.family, "settings": list(arm.settings)} for arm in args.arms},
              "step_timing": timings, "eval_n": args.eval_n, "sample_n": args.sample_n, "runs": []}
    for name, data in data_sets(args).items():
        extractor = root / f"features_{name}"
        if not (extractor / "checkpoints").is_dir():
            spec, settings = data["features"]
            jaxmed.train("vae", extractor, data=spec, image_size=args.image_size, batch_size=args.batch_size,
                         steps=args.feature_steps, progress=False, **settings)
        for seed in range(args.seeds):
            for arm in args.arms:
                workdir = root / f"{name}_{arm.label}_s{seed}{suffix}"
                steps = timings[arm.label]["steps_for_budget"] if args.minutes else args.steps
                spec, extra = training_data(name, seed, args)
                trained = train_run(arm.family, workdir, spec,
                                    run_settings(arm, args, {**extra, "steps": steps, "seed": seed}))
                report = evaluation(workdir, workdir / "eval_common", extractor, data["reference"], args.eval_n)
                run = {"data": name, "arm": arm.label, "family": arm.family, "recipe": arm.name or None,
                       "seed": seed, **summary(report), **trained}
                if arm.family == "diffusion":
                    run["samplers"] = sampler_rows(workdir, extractor, data["reference"], args)
                result["runs"].append(run)
                print(json.dumps(run), file=sys.stderr, flush=True)
                args.json.write_text(json.dumps(result, indent=2) + "\n")  # after every run: a partial result
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except JaxmedError as error:
        sys.exit(f"generators_small_data: error: {error}")
