"""The public API: read data, train any registered family, sample, evaluate, inspect.

These are the command line's operations as Python calls (the CLI and these functions
call the same library code), for notebooks and scripts:

    import jaxmed
    dataset = jaxmed.load_data("phantom:brain", image_size=64)
    result = jaxmed.train("gan", "runs/gan", data="phantom:brain", image_size=64, batch_size=16, steps=300)
    images = jaxmed.sample("runs/gan", n=16)
    report = jaxmed.evaluate("runs/gan", "runs/gan/eval")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jaxmed import config as config_lib
from jaxmed import data as data_lib
from jaxmed import families
from jaxmed.data.options import DataOptions


def load_data(spec: str | DataOptions, image_size: int = 128, channels: int = 1, *, seed: int = 0,
              **options: Any) -> data_lib.Dataset:
    """Reads a data source: `jaxmed.data.load` (images (N, H, W, C) in [-1, 1], labels, class names, provenance)."""
    return data_lib.load(spec, image_size, channels, seed=seed, **options)


def train(family: str, workdir: str | Path, *, data: Any = None, progress: bool = True, **settings: Any):
    """Trains (or resumes) a run of a registered family in `workdir`, as `jaxmed train FAMILY` does.

    Args:
      family: a name in `jaxmed.families.FAMILIES`, e.g. "gan", "vae", "classifier".
      workdir: the run directory; a workdir with checkpoints resumes with its saved config.
      data: a data spec string (sets `data.spec`), or the training data itself (images
        (N, H, W, C) in [-1, 1] for generative families, a `SplitData` for the classifier).
      progress: show a progress bar.
      **settings: config keys, e.g. steps=300, image_size=64; nested keys as
        **{"optimizer.lr": 1e-4}.

    Returns:
      A `jaxmed.training.runner.TrainResult` (workdir, final step and epoch, last metrics, evaluation).

    Raises:
      UsageError: an unknown family or key, or a bad value.
    """
    from jaxmed.training.workdir import Workdir, resolve_config  # noqa: PLC0415 -- JAX starts only when training

    run_family = families.get(family)
    if isinstance(data, str):
        settings = {"data.spec": data, **settings}
        data = None
    paths = Workdir(Path(workdir))
    run_config = resolve_config(run_family.config_type, paths, settings)
    return run_family.train(run_config, paths.root, data, progress=progress)


def sample(workdir: str | Path, n: int, *, seed: int = 0, checkpoint: str | int = "best",
           class_name: str | None = None, settings: dict[str, Any] | None = None) -> np.ndarray:
    """`n` images (n, H, W, C) in [-1, 1] from a generative workdir (deterministic per seed).

    `checkpoint`: "best" (the best step by FID where the run measured it, else the latest),
    "latest" or a step number. `class_name` picks the class of a class-conditional model
    (`jaxmed sample --class`). `settings` override the run's drawing keys for this call, e.g.
    {"sampling.steps": 10} for a diffusion run.
    """
    from jaxmed.sampling import sample_from_workdir  # noqa: PLC0415

    images, _ = sample_from_workdir(workdir, n, seed=seed, checkpoint=checkpoint, class_name=class_name,
                                    settings=settings)
    return images


def evaluate(workdir: str | Path, out: str | Path, **options: Any) -> dict:
    """FID, KID, precision/recall, diversity and memorisation of a generator; writes out/eval.json and plots.

    `options`: those of `jaxmed.evaluation.generators.evaluate_generator` (data, features, n, seed, ...).
    """
    from jaxmed.evaluation.generators import evaluate_generator  # noqa: PLC0415

    return evaluate_generator(workdir, out, **options)


def inspect(spec: str | DataOptions, image_size: int = 64, **options: Any) -> dict:
    """The `jaxmed data inspect` report of a data source (counts, raw formats, skipped files, duplicates)."""
    from jaxmed.data import inspection  # noqa: PLC0415

    return inspection.report(data_lib.load(spec, image_size, 1, **options))


def config_keys(family: str) -> dict[str, Any]:
    """Every config key of a family with its default value (what `--set` and `train(**settings)` take)."""
    return config_lib.flat_items(families.get(family).config_type())
