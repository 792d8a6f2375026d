"""The augmentation study: do GAN- (or VAE-) synthesized images actually help a classifier?

For each seed, on one real data set:

1. split it (stratified, leak-free, by the seed) into train / val / test;
2. simulate scarcity: keep only `minority_train_count` real images of the minority
   class in the training split (validation and test stay untouched);
3. train a GAN (or, with `generator="vae"`, a VAE) on the minority images of the
   training split only;
4. train the same classifier on each arm:
       real                      the real training split
       augment                   real + classic augmentation (flips, small rotations and scaling, noise)
       synthetic_xR              real + R synthetic minority images per real minority image
       augment+synthetic_xR      both
5. evaluate every arm on the same real test split;
6. measure the synthetic images themselves (`jaxmed.evaluation.generators.compare_with_real`):
   FID, KID, precision and recall against the test split's real minority images (which the
   generator never saw), and copies of its training images, in the features of a VAE
   trained on the seed's training split.

The summary compares each arm with the classic-augmentation arm (the baseline a
reviewer would ask for): per-seed paired differences, their mean, and a Student-t
95% confidence interval over seeds. An arm "helped" or "hurt" a metric only when
that interval excludes zero; otherwise it made no measurable difference.

Every generator and classifier run lives in its own workdir under W/seed_S/, so an
interrupted study resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any

import jax
import numpy as np
from scipy import stats

from jaxmed import config as config_lib
from jaxmed import data as data_lib
from jaxmed import families
from jaxmed.config import CheckpointConfig, EvalConfig, GenerativeConfig, LogConfig, SampleConfig
from jaxmed.data.options import DataOptions
from jaxmed.errors import UsageError
from jaxmed.evaluation.features import load_feature_extractor
from jaxmed.evaluation.generators import compare_with_real, train_feature_extractor
from jaxmed.families.classifier import ClassifierConfig, EarlyStoppingConfig, SplitData, split_dataset
from jaxmed.families.generative import sample_images
from jaxmed.training.workdir import record_skipped
from jaxmed.viz import studies as study_plots

BASELINE = "augment"
METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc")
SYNTHETIC_SEED_OFFSET = 7_000_003
# The generator sections of study configs saved before config format 2.
_OLD_GENERATOR_SECTIONS = ("gan", "vae")


def generative_family_names() -> list[str]:
    """The registered families that generate images: what `StudyConfig.generator` may name."""
    return [family.name for family in families.all_families() if family.generates]


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """An augmentation study, sized by default for a 2-core CPU (about 8 minutes for 3 seeds).

    Attributes:
      data: the real data (phantom options apply to phantom specs).
      image_size: side of the images for both the generator and the classifier.
      seeds: number of repetitions (seed 0, 1, ...); each re-splits, re-trains and re-samples.
      minority_class: the class the generator synthesizes ("": the rarest class of the data).
      generator: which registered generative family synthesizes it ("gan", "vae", ...).
      minority_train_count: real minority images kept for training (0 = all): the scarcity.
      synthetic_ratio_small, synthetic_ratio_large: synthetic minority images per real minority
        training image; each ratio gives a synthetic arm and an augment+synthetic arm.
      generator_steps, generator_batch_size: the generator's training (its family's defaults otherwise;
        image size and seed are set by the study).
      classifier: the classifier's config (image size, seed and augmentation are set by the study).
      feature_steps: train steps of the VAE that embeds images for step 6 (0 skips step 6).
    """

    # Difficulty 0.6: at 64 px the default phantom lesions (1.0) are mostly a few pixels wide and
    # seed_cnn stays near chance even with all 420 tumor images (measured: test accuracy 0.56).
    # Tumours are the rarer class (40%), as in practice: the default minority class is the rarest.
    data: DataOptions = DataOptions(spec="phantom:brain", n=1200, class_fraction=0.4, difficulty=0.6)
    image_size: int = 64
    seeds: int = 3
    minority_class: str = ""
    generator: str = "gan"
    minority_train_count: int = 40
    synthetic_ratio_small: float = 1.0
    synthetic_ratio_large: float = 4.0
    generator_steps: int = 400
    generator_batch_size: int = 16
    # Balanced class weights: with a scarce minority an unweighted loss predicts the majority
    # class only (measured: recall 0 in every arm), which would make every arm look alike.
    classifier: ClassifierConfig = ClassifierConfig(model="seed_cnn", epochs=15, class_weighting="balanced",
                                                    early_stopping=EarlyStoppingConfig(patience=5),
                                                    log=LogConfig(every=50))
    feature_steps: int = 600

    RESUMABLE: typing.ClassVar[frozenset[str]] = frozenset({"seeds"})
    # Before config format 2 the generator's settings were whole configs, one per generator family.
    MIGRATIONS: typing.ClassVar[dict[str, str | None]] = {
        "gan.steps": "generator_steps", "gan.batch_size": "generator_batch_size",
        **dict.fromkeys(_OLD_GENERATOR_SECTIONS),
        **{f"classifier.{old}": new and f"classifier.{new}" for old, new in ClassifierConfig.MIGRATIONS.items()}}

    def __post_init__(self):
        if self.seeds < 1 or self.minority_train_count < 0 or self.feature_steps < 0:
            raise UsageError("seeds must be at least 1, minority_train_count and feature_steps non-negative")
        if self.synthetic_ratio_small <= 0 or self.synthetic_ratio_large <= 0:
            raise UsageError("synthetic ratios must be positive")
        if self.generator_steps < 1 or self.generator_batch_size < 1:
            raise UsageError("generator_steps and generator_batch_size must be at least 1")
        names = generative_family_names()
        if self.generator not in names:
            raise UsageError(f"generator must be one of {', '.join(names)}, got {self.generator!r}")

    def generator_config(self, seed: int) -> GenerativeConfig:
        """The config of the generator the study trains for `seed`."""
        steps = self.generator_steps
        return families.get(self.generator).config_type(
            image_size=self.image_size, batch_size=self.generator_batch_size, steps=steps, seed=seed,
            data=self.data, checkpoint=CheckpointConfig(every=steps), log=LogConfig(every=20),
            sample=SampleConfig(every=max(1, steps // 2), n=16),
            # The study measures its synthetic images itself, against the test split (`measure_synthetic`).
            eval=EvalConfig(every=steps, n=256, fid=False))

    @property
    def synthetic_ratios(self) -> tuple[float, ...]:
        return tuple(sorted({self.synthetic_ratio_small, self.synthetic_ratio_large}))

    @classmethod
    def tiny(cls, **overrides: Any) -> StudyConfig:
        """Seconds-long: 32 px, 2 seeds, a few GAN steps and classifier epochs (for tests)."""
        tiny = cls(data=DataOptions(spec="phantom:brain", n=160, class_fraction=0.4), image_size=32, seeds=2, minority_train_count=12,
                   synthetic_ratio_small=1.0, synthetic_ratio_large=1.0, generator_steps=3, generator_batch_size=4,
                   classifier=ClassifierConfig.tiny(epochs=2, batch_size=8), feature_steps=3)
        return config_lib.apply_overrides(tiny, overrides)


def arm_names(config: StudyConfig) -> list[str]:
    """The arms in the order they are trained."""
    synthetic = [f"synthetic_x{ratio:g}" for ratio in config.synthetic_ratios]
    return ["real", BASELINE, *synthetic, *[f"{BASELINE}+{name}" for name in synthetic]]


def make_scarce(data: SplitData, minority: int, keep: int, seed: int) -> SplitData:
    """Keeps `keep` random minority images in the training split (0 = keep all)."""
    images, labels = data.train
    minority_rows = np.flatnonzero(labels == minority)
    if keep == 0 or keep >= len(minority_rows):
        return data
    dropped = np.random.default_rng(seed).permutation(minority_rows)[keep:]
    kept = np.setdiff1d(np.arange(len(labels)), dropped)
    return dataclasses.replace(data, train=(images[kept], labels[kept]))


def with_minority_class(config: StudyConfig, dataset: data_lib.Dataset) -> StudyConfig:
    """`config` with its minority class named: the rarest class of `dataset` unless one is set (and said)."""
    if config.minority_class:
        data_lib.class_index(dataset, config.minority_class)  # an unknown name fails here, before any training
        return config
    name = data_lib.rarest_class(dataset.labels, dataset.class_names)
    count = int(np.sum(dataset.labels == data_lib.class_index(dataset, name)))
    _log(f"minority class: '{name}', the rarest ({count} of {len(dataset.labels)} images; "
         f"--set minority_class=NAME chooses another)")
    return dataclasses.replace(config, minority_class=name)


def run_study(config: StudyConfig, workdir: Path | str, *, progress: bool = True) -> dict:
    """Runs (or resumes) the study and writes W/study.json and W/plots/study.png.

    Returns:
      The study summary (also in study.json).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    dataset = data_lib.load(config.data, config.image_size, config.classifier.channels, seed=0)
    record_skipped(dataset.provenance, workdir)
    config = with_minority_class(config, dataset)
    if (workdir / "config.json").is_file():
        # Resuming: the finished runs under W/seed_S/ must belong to the same study.
        saved = config_lib.load(StudyConfig, workdir / "config.json")
        config_lib.check_resumable(saved, {key: value for key, value in config_lib.flat_items(config).items()})
    config_lib.save(config, workdir / "config.json")
    minority = data_lib.class_index(dataset, config.minority_class)
    results: dict[str, dict[str, dict[str, Any]]] = {arm: {} for arm in arm_names(config)}
    synthetic_quality: dict[str, dict[str, Any]] = {}
    for seed in range(config.seeds):
        _log(f"seed {seed + 1}/{config.seeds}")
        seed_dir = workdir / f"seed_{seed}"
        classifier_config = config_lib.apply_overrides(config.classifier, {"image_size": config.image_size,
                                                                           "seed": seed})
        data = make_scarce(split_dataset(dataset, classifier_config), minority, config.minority_train_count, seed)
        real_minority = data.train[0][data.train[1] == minority]
        family, generator_config = families.get(config.generator), config.generator_config(seed)
        _log(f"  {config.generator.upper()} on {len(real_minority)} real '{config.minority_class}' training images")
        trained = family.train(generator_config, seed_dir / config.generator, real_minority, progress=progress)
        generator = family.generator(generator_config, trained.definition)
        count = int(round(max(config.synthetic_ratios) * len(real_minority)))
        z = jax.random.normal(jax.random.key(seed + SYNTHETIC_SEED_OFFSET), (count, generator.latent_dim))
        synthetic = sample_images(generator.generate, trained.state, z, generator_config.batch_size)
        if config.feature_steps:
            test_minority = data.test[0][data.test[1] == minority]
            synthetic_quality[str(seed)] = measure_synthetic(config, generator_config, data.train[0], real_minority,
                                                             test_minority, synthetic, seed_dir, progress)
        for arm in arm_names(config):
            ratio = float(arm.rpartition("_x")[2]) if "synthetic" in arm else 0.0
            extra = synthetic[:int(round(ratio * len(real_minority)))]
            images, labels = data.train
            arm_data = dataclasses.replace(data, train=(
                np.concatenate([images, extra]), np.concatenate([labels, np.full(len(extra), minority, np.int32)])))
            arm_config = dataclasses.replace(classifier_config, augment=arm.startswith(BASELINE))
            _log(f"  classifier '{arm}' on {len(arm_data.train[1])} images ({len(extra)} synthetic)")
            report = families.get("classifier").train(arm_config, seed_dir / arm.replace("+", "_plus_"), arm_data,
                                                      progress=progress).eval
            results[arm][str(seed)] = {name: report.get(name) for name in METRICS}
            results[arm][str(seed)]["confidence_intervals"] = report["confidence_intervals"]
    summary = summarize(results, config, synthetic_quality)
    (workdir / "study.json").write_text(json.dumps(summary, indent=2) + "\n")
    study_plots.plot_study(summary, workdir / "plots" / "study.png", metrics=("accuracy", "recall", "f1"))
    return summary


def measure_synthetic(config: StudyConfig, generator_config: GenerativeConfig, train_images: np.ndarray,
                      real_minority: np.ndarray, test_minority: np.ndarray, synthetic: np.ndarray, seed_dir: Path,
                      progress: bool) -> dict[str, Any]:
    """Step 6 for one seed: the synthetic images against the test split's minority; writes seed_dir/synthetic/."""
    extractor_dir = seed_dir / "feature_extractor"
    train_feature_extractor(dataclasses.replace(generator_config, data=config.data), train_images, extractor_dir,
                            steps=config.feature_steps, progress=progress)
    comparison = compare_with_real(synthetic, real_minority, test_minority, load_feature_extractor(extractor_dir),
                                   seed=generator_config.seed)
    (seed_dir / "synthetic").mkdir(parents=True, exist_ok=True)
    (seed_dir / "synthetic" / "eval.json").write_text(json.dumps(comparison.report, indent=2) + "\n")
    comparison.write_plots(seed_dir / "synthetic" / "plots")
    report = comparison.report
    copying = report["memorization"]["data_copying"]
    quality = {"fid": report["fid"], "kid": report["kid"]["mean"], "precision": report["precision"],
               "recall": report["recall"], "copies": report["memorization"]["copies"],
               "data_copying_z": copying["z"] if copying else None}
    _log("  synthetic images: " + ", ".join(f"{key} {value:.3g}" for key, value in quality.items()
                                             if value is not None))
    return quality


def summarize(results: dict[str, dict[str, dict[str, Any]]], config: StudyConfig,
              synthetic_quality: dict[str, dict[str, Any]] | None = None) -> dict:
    """Means, spreads, paired differences to the baseline with t-intervals, and a plain verdict.

    `synthetic_quality` (seed -> the synthetic images' metrics) is kept per seed and averaged.
    """
    arms: dict[str, dict] = {}
    for arm, per_seed in results.items():
        arms[arm] = {}
        for metric in METRICS:
            values = [per_seed[seed][metric] for seed in sorted(per_seed)]
            finite = [value for value in values if value is not None and np.isfinite(value)]
            arms[arm][metric] = {"mean": float(np.mean(finite)) if finite else None,
                                 "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0,
                                 "values": values}
    differences: dict[str, dict] = {}
    verdicts: dict[str, str] = {}
    for arm, per_seed in results.items():
        if arm == BASELINE:
            continue
        differences[arm] = {}
        for metric in METRICS:
            deltas = [per_seed[seed][metric] - results[BASELINE][seed][metric] for seed in sorted(per_seed)
                      if per_seed[seed][metric] is not None and results[BASELINE][seed][metric] is not None]
            differences[arm][metric] = paired_interval(deltas)
        verdicts[arm] = verdict(differences[arm]["f1"], differences[arm]["recall"])
    quality = synthetic_quality or {}
    quality_means = {}
    for key in next(iter(quality.values()), {}):
        values = [per_seed[key] for per_seed in quality.values() if per_seed[key] is not None]
        if values:
            quality_means[key] = float(np.mean(values))
    return {"baseline": BASELINE, "seeds": config.seeds, "arms": arms, "differences": differences,
            "verdicts": verdicts, "per_seed": results, "config": config_lib.to_dict(config),
            "synthetic_quality": {"mean": quality_means, "per_seed": quality},
            "summary": " ".join(f"{arm}: {text}." for arm, text in verdicts.items()) + _quality_text(quality_means)}


def _quality_text(means: dict[str, float]) -> str:
    """One sentence on the synthetic images (mean over seeds), or nothing without measurements."""
    if not means:
        return ""
    return (f" Synthetic images (mean over seeds): FID {means['fid']:.1f}, precision {means['precision']:.2f}, "
            f"recall {means['recall']:.2f}, copies of training images {means['copies']:g}.")


def paired_interval(deltas: list[float], confidence: float = 0.95) -> dict:
    """Mean of per-seed differences with a Student-t interval (None bounds with fewer than 2 seeds)."""
    if not deltas:
        return {"mean": None, "low": None, "high": None, "n": 0}
    mean = float(np.mean(deltas))
    if len(deltas) < 2:
        return {"mean": mean, "low": None, "high": None, "n": len(deltas)}
    half = float(stats.t.ppf(0.5 + confidence / 2, len(deltas) - 1) * np.std(deltas, ddof=1) / np.sqrt(len(deltas)))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(deltas)}


def verdict(f1: dict, recall: dict) -> str:
    """Plain words for an arm's F1 and recall differences to the baseline."""
    def word(interval: dict) -> str:
        if interval["low"] is None:
            return "not measurable with one seed"
        if interval["low"] > 0:
            return "helped"
        if interval["high"] < 0:
            return "hurt"
        return "no measurable difference"

    return (f"F1 {word(f1)} ({f1['mean']:+.3f} vs {BASELINE}), recall {word(recall)} "
            f"({recall['mean']:+.3f})") if f1["mean"] is not None else "no comparable results"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
