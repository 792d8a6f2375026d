"""Runs (or resumes) the augmentation study: every seed, scarcity, generator, classifier and arm.

Layout of the study directory W:

    W/config.json                           the study's config (a resumed study must match it)
    W/seed_S/feature_extractor/             the VAE behind the synthetic-quality table
    W/seed_S/CLASSIFIER/all_real/           the upper bound (no scarcity), once per seed
    W/seed_S/count_K/GEN/                   the generator trained on the K real minority images
    W/seed_S/count_K/GEN_synthetic/         its images measured against the test split's minority
    W/seed_S/count_K/CLASSIFIER/ARM/        one classifier run per arm
    W/study.json, W/report.md, W/plots/     the results (`summary.py`, `report.py`)

Every run is a jaxmed run directory, so an interrupted study resumes where it stopped
and re-derives the same results from the finished runs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmed import data as data_lib
from jaxmed import families
from jaxmed.evaluation import generators as generator_evaluation
from jaxmed.families import classifier as classifier_family
from jaxmed.families.classifier import SplitData, split_dataset
from jaxmed.families.generative import sample_images
from jaxmed.studies import arms as arms_lib
from jaxmed.studies import config as study_config
from jaxmed.studies import parallel
from jaxmed.studies import quality as quality_lib
from jaxmed.studies import report as report_lib
from jaxmed.studies import summary as summary_lib
from jaxmed.studies.arms import Arm
from jaxmed.studies.config import StudyConfig
from jaxmed.training.workdir import record_skipped
from jaxmed.viz.figures import save_image_grid

SYNTHETIC_SEED_OFFSET = 7_000_003
#: Synthetic images per generator shown in the report's sample grids.
GRID_IMAGES = 16


def with_minority_class(config: StudyConfig, dataset: data_lib.Dataset) -> StudyConfig:
    """`config` with its minority class named: the rarest class of `dataset` unless one is set (and said)."""
    if config.minority_class:
        data_lib.class_index(dataset, config.minority_class)  # an unknown name fails here, before any training
        return config
    name = data_lib.rarest_class(dataset.labels, dataset.class_names)
    count = int(np.sum(dataset.labels == data_lib.class_index(dataset, name)))
    log(f"minority class: '{name}', the rarest ({count} of {len(dataset.labels)} images; "
        f"--set minority_class=NAME chooses another)")
    return dataclasses.replace(config, minority_class=name)


def run_study(config: StudyConfig, workdir: Path | str, *, progress: bool = True) -> dict:
    """Runs (or resumes) the study; writes W/study.json, W/report.md and W/plots/.

    Returns:
      The summary written to study.json.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    dataset = data_lib.load(config.data, config.image_size, config.classifier.channels, seed=0)
    record_skipped(dataset.provenance, workdir)
    config = with_minority_class(config, dataset)
    if (workdir / "config.json").is_file():
        study_config.check_resumable(study_config.load(workdir / "config.json"), config)
    study_config.save(config, workdir / "config.json")
    minority = data_lib.class_index(dataset, config.minority_class)
    groups = parallel.arm_device_groups(config.devices_per_arm)
    if len(groups) > 1:
        log(f"training up to {len(groups)} arms at once, {len(groups[0])} device(s) each")
    # Side-by-side runs would interleave their progress bars: with several groups each run logs lines only.
    trainer = functools.partial(_train_classifier, config, devices=len(groups[0]),
                                progress=progress and len(groups) == 1)
    arms = arms_lib.study_arms(config.generators, config.synthetic_ratios, config.filter_ratio)
    # results[classifier][count][arm][seed] = the arm's metrics on the seed's test split.
    results: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
        model: {str(count): {arm.name: {} for arm in arms} for count in config.minority_train_counts}
        for model in config.classifiers}
    quality: dict[str, dict[str, dict[str, Any]]] = {
        generator: {str(count): {} for count in config.minority_train_counts} for generator in config.generators}
    filtering: dict[str, dict[str, dict[str, Any]]] = {
        generator: {str(count): {} for count in config.minority_train_counts} for generator in config.generators}
    for seed in range(config.seeds):
        log(f"seed {seed + 1}/{config.seeds}")
        seed_dir = workdir / f"seed_{seed}"
        # The split depends on the seed and the split settings only: one test split per seed for every cell.
        full = split_dataset(dataset, config.classifier_config(config.classifiers[0], seed, augment=False))
        if config.feature_steps:
            generator_evaluation.train_feature_extractor(
                config.generator_config(config.generators[0], seed), full.train[0], seed_dir / "feature_extractor",
                steps=config.feature_steps, progress=progress)
        all_real_arm = next(arm for arm in arms if arm.kind == "all_real")
        all_real = dict(zip(config.classifiers, parallel.run_all(
            [functools.partial(trainer, model, seed, all_real_arm, full, seed_dir / model / all_real_arm.folder)
             for model in config.classifiers], groups)))
        for count in config.minority_train_counts:
            log(f"  minority training count {count or 'all'}")
            scarce = arms_lib.make_scarce(full, minority, count, seed)
            cell_dir = seed_dir / f"count_{count}"
            streams = dict(zip(config.generators, parallel.run_all(
                [functools.partial(_synthesize, config, generator, seed, scarce, full, minority, cell_dir,
                                   quality[generator][str(count)], workdir, progress and len(groups) == 1)
                 for generator in config.generators], groups)))
            cells = _train_arms(config, trainer, groups, arms, seed, scarce, minority, streams, cell_dir)
            for model, cell in cells.items():
                for arm in arms:
                    metrics, record = cell.get(arm.name, ({**all_real[model][0], "synthetic_images": 0}, None))
                    results[model][str(count)][arm.name][str(seed)] = metrics
                    if record is not None:
                        filtering[arm.generator][str(count)].setdefault(model, {})[str(seed)] = record
    summary = summary_lib.summarize(config, results, quality, filtering)
    (workdir / "study.json").write_text(json.dumps(summary, indent=2) + "\n")
    report_lib.write_report(summary, workdir)
    return summary


def _train_arms(config: StudyConfig, trainer: Callable, groups: list, arms: list[Arm], seed: int, scarce: SplitData,
                minority: int, streams: dict[str, np.ndarray], cell_dir: Path
                ) -> dict[str, dict[str, tuple[dict[str, Any], dict[str, int] | None]]]:
    """Trains every classifier on every arm of one seed and scarcity but all_real (trained once per seed).

    The arms run side by side on the device `groups` (`parallel.run_all`): first all but the filtered
    ones, then the filtered ones, whose filter is the same classifier's `augment` arm.

    Returns:
      {classifier: {arm name: (its metrics with the synthetic images it used, the filter's counts or None)}}.
    """
    def job(model: str, arm: Arm, baseline: Any = None) -> Callable[[], tuple]:
        filtered, record = None, None
        if arm.kind == "filtered":
            filtered, record = _filtered_images(config, arm, baseline, scarce, minority, streams[arm.generator])
        data = arms_lib.training_split(arm, scarce, minority, streams.get(arm.generator, np.zeros((0,))), filtered)

        def train() -> tuple:
            metrics, trained = trainer(model, seed, arm, data, cell_dir / model / arm.folder)
            # tstr drops the real minority images: its synthetic ones are all its minority images.
            metrics["synthetic_images"] = (int(np.sum(data.train[1] == minority)) if arm.kind == "tstr"
                                           else len(data.train[1]) - len(scarce.train[1]))
            return metrics, record, trained

        return train

    first = [(model, arm) for model in config.classifiers for arm in arms if arm.kind not in ("all_real", "filtered")]
    done = dict(zip(first, parallel.run_all([job(model, arm) for model, arm in first], groups)))
    baselines = {model: trained for (model, arm), (_, _, trained) in done.items() if arm.kind == "augment"}
    second = [(model, arm) for model in config.classifiers for arm in arms if arm.kind == "filtered"]
    done.update(zip(second, parallel.run_all([job(model, arm, baselines[model]) for model, arm in second], groups)))
    cells: dict[str, dict[str, tuple]] = {model: {} for model in config.classifiers}
    for model, arm in first + second:
        metrics, record, _ = done[(model, arm)]
        cells[model][arm.name] = (metrics, record)
    return cells


def _synthesize(config: StudyConfig, generator: str, seed: int, scarce: SplitData, full: SplitData, minority: int,
                cell_dir: Path, quality: dict[str, Any], workdir: Path, progress: bool) -> np.ndarray:
    """Trains `generator` on the scarce minority images and returns its image stream (measured if asked)."""
    real_minority = scarce.train[0][scarce.train[1] == minority]
    log(f"    {generator.upper()} on {len(real_minority)} real '{config.minority_class}' training images")
    family, generator_config = families.get(generator), config.generator_config(generator, seed)
    trained = family.train(generator_config, cell_dir / generator, real_minority, progress=progress)
    sampler = family.generator(generator_config, trained.definition)
    most = max(max(config.synthetic_ratios), config.filter_ratio * config.filter_oversample, 1.0)
    count = max(arms_lib.synthetic_count(most, len(real_minority)), 1)
    stream = sample_images(sampler.generate, trained.state, synthetic_noise(seed, count, sampler.latent_dim),
                           generator_config.batch_size)
    save_image_grid(stream[:GRID_IMAGES], sample_grid_path(workdir, generator, seed, cell_dir.name))
    if config.feature_steps:
        measured = stream[:max(arms_lib.synthetic_count(max(config.synthetic_ratios), len(real_minority)), 1)]
        quality[str(seed)] = quality_lib.measure_synthetic(
            measured, real_minority, full.test[0][full.test[1] == minority], cell_dir.parent / "feature_extractor",
            cell_dir / f"{generator}_synthetic", seed)
    return stream


def synthetic_noise(seed: int, count: int, latent_dim: int) -> jax.Array:
    """`count` latent vectors, vector i fixed by (seed, i) alone: a longer stream starts with a shorter one."""
    key = jax.random.key(seed + SYNTHETIC_SEED_OFFSET)
    return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (latent_dim,)))(jnp.arange(count))


def sample_grid_path(workdir: Path, generator: str, seed: int, cell: str) -> Path:
    """Where the report finds a generator's sample grid for one seed and scarcity cell."""
    return workdir / "plots" / "samples" / f"{generator}_seed{seed}_{cell}.png"


def _filtered_images(config: StudyConfig, arm: Arm, baseline: Any, scarce: SplitData, minority: int,
                     stream: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """The filtered arm's synthetic images: the candidates the baseline classifier finds most minority-like."""
    wanted = arms_lib.synthetic_count(arm.ratio, int(np.sum(scarce.train[1] == minority)))
    candidates = stream[:wanted * config.filter_oversample]
    probabilities = classifier_family.predict(baseline.definition, baseline.state.best_params,
                                              baseline.state.best_model_state, candidates,
                                              config.classifier.batch_size)[:, minority]
    kept = arms_lib.filter_synthetic(candidates, np.asarray(probabilities), wanted)
    accepted = int(np.sum(np.asarray(probabilities) >= arms_lib.FILTER_THRESHOLD))
    log(f"      filter: {accepted} of {len(candidates)} candidates called '{config.minority_class}' "
        f"(p >= {arms_lib.FILTER_THRESHOLD:g}), the {len(kept)} most likely used (wanted {wanted})")
    return kept, {"candidates": len(candidates), "accepted": accepted, "used": len(kept), "wanted": wanted}


def _train_classifier(config: StudyConfig, model: str, seed: int, arm: Arm, data: SplitData, run_dir: Path, *,
                      devices: int, progress: bool) -> tuple[dict[str, Any], Any]:
    """Trains (or restores) one arm's classifier on `devices` devices; returns its minority-class test metrics and
    the TrainResult."""
    log(f"      {model} '{arm.name}' on {len(data.train[1])} images")
    run_config = config.classifier_config(model, seed, augment=arm.augment, devices=devices)
    trained = families.get("classifier").train(run_config, run_dir, data, progress=progress)
    return summary_lib.arm_metrics(trained.eval, config.minority_class), trained


def log(message: str) -> None:
    """A progress line on stderr."""
    print(message, file=sys.stderr, flush=True)
