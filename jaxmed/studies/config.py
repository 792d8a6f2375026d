"""The augmentation study's config: what it sweeps (generators, ratios, scarcity, classifiers, seeds) and its sizes.

The sweeps are tuple fields, set as comma-separated lists (`--set synthetic_ratios=0.5,1,2`,
parsed by `jaxmed.config` like every other key).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxmed import config as config_lib
from jaxmed import families
from jaxmed.config import (CheckpointConfig, EvalConfig, GenerativeConfig, LogConfig, MeshConfig, SampleConfig,
                           require)
from jaxmed.data.options import DataOptions
from jaxmed.errors import UsageError
from jaxmed.families.classifier import ClassifierConfig, EarlyStoppingConfig

#: The full study for an accelerator, as `--set` overrides of the CPU default: every generator family, the
#: five ratios, four scarcities, both classifiers at 128 px, 20 seeds (enough for a ±0.03 AUC interval when the
#: paired differences' SD is about 0.06), full-length generator and classifier training.
ACCELERATOR_OVERRIDES: Mapping[str, str] = {
    "image_size": "128", "seeds": "20", "minority_train_counts": "20,50,100,200", "generators": "gan,vae,diffusion",
    "synthetic_ratios": "0.25,0.5,1,2,4", "classifiers": "seed_cnn,resnet18", "generator_steps": "5000",
    "generator_batch_size": "32", "classifier.epochs": "100", "classifier.early_stopping.patience": "10",
    "feature_steps": "2000"}
#: Written into config.json as `study_version`; a workdir of an earlier study layout is refused (`load`).
STUDY_VERSION = 2


def generative_family_names() -> list[str]:
    """The registered families that generate images: what `StudyConfig.generators` may name."""
    return [family.name for family in families.all_families() if family.generates]


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """An augmentation study, sized by default for a 2-core CPU: one scarcity, one generator, three ratios, 5 seeds.

    `StudyConfig.accelerator()` is the full study (`ACCELERATOR_OVERRIDES`).

    Attributes:
      data: the real data (phantom options apply to phantom specs).
      image_size: side of the images for the generators and the classifiers.
      seeds: repeated stratified splits (seed 0, 1, ...); each re-splits, re-trains and re-samples.
      minority_class: the scarce class the generators synthesize ("": the rarest class of the data).
      minority_train_counts: real minority images kept for training, one study cell each (0 = all).
      generators: registered generative families that synthesize the minority class.
      synthetic_ratios: synthetic minority images per real minority training image, one arm each.
      filter_ratio: the ratio of the filtered-synthesis arm (0: no filtered arm).
      filter_oversample: candidates sampled per image the filtered arm needs.
      classifiers: classifier models trained on every arm ("seed_cnn", "resnet18").
      generator_steps, generator_batch_size: each generator's training (its family's defaults otherwise).
      classifier: the classifiers' shared settings (model, image size, seed and augmentation are set per arm).
      feature_steps: train steps of the VAE that embeds images for the synthetic-quality table (0 skips it).
      informative_auc: the all-real arm's mean ROC AUC below which the study reports no verdicts.
      devices_per_arm: devices each classifier run trains on; with more devices than that, independent arms
        train at the same time, one group of devices each (0: every arm on all devices, one at a time). A
        multi-process run always uses every device per arm.
    """

    # Difficulty 0.6: at 64 px the default phantom lesions (1.0) are mostly a few pixels wide.
    # Tumours are the rarer class (40%), as in practice: the default minority class is the rarest.
    data: DataOptions = DataOptions(spec="phantom:brain", n=1200, class_fraction=0.4, difficulty=0.6)
    image_size: int = 64
    seeds: int = 5
    minority_class: str = ""
    minority_train_counts: tuple[int, ...] = (40,)
    generators: tuple[str, ...] = ("gan",)
    synthetic_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    filter_ratio: float = 1.0
    filter_oversample: int = 4
    classifiers: tuple[str, ...] = ("seed_cnn",)
    generator_steps: int = 400
    generator_batch_size: int = 16
    # Balanced class weights: with a scarce minority an unweighted loss predicts the majority class only.
    classifier: ClassifierConfig = ClassifierConfig(model="seed_cnn", epochs=15, class_weighting="balanced",
                                                    early_stopping=EarlyStoppingConfig(patience=5),
                                                    log=LogConfig(every=50))
    feature_steps: int = 600
    informative_auc: float = 0.75
    devices_per_arm: int = 1

    #: Fields a resumed study may change: more seeds or cells add runs, the threshold only changes the report.
    RESUMABLE: typing.ClassVar[frozenset[str]] = frozenset({
        "seeds", "minority_train_counts", "generators", "synthetic_ratios", "classifiers", "informative_auc",
        "devices_per_arm"})
    #: The sweeps: tuple fields, each a non-empty list without repeats.
    TUPLE_FIELDS: typing.ClassVar[tuple[str, ...]] = (
        "minority_train_counts", "generators", "synthetic_ratios", "classifiers")

    def __post_init__(self):
        require(self.seeds >= 1, "seeds must be at least 1")
        for name in self.TUPLE_FIELDS:
            value = getattr(self, name)
            require(isinstance(value, tuple) and len(value) > 0, f"{name} must be a non-empty list, got {value!r}")
            require(len(set(value)) == len(value), f"{name} has a repeated value: {value!r}")
        require(all(count >= 0 for count in self.minority_train_counts), "minority_train_counts must be >= 0")
        require(all(ratio > 0 for ratio in self.synthetic_ratios), "synthetic_ratios must be positive")
        require(self.filter_ratio >= 0 and self.filter_oversample >= 1,
                "filter_ratio must be >= 0 (0: no filtered arm) and filter_oversample at least 1")
        require(self.generator_steps >= 1 and self.generator_batch_size >= 1,
                "generator_steps and generator_batch_size must be at least 1")
        require(self.feature_steps >= 0, "feature_steps must be non-negative (0 skips the quality table)")
        require(0 < self.informative_auc < 1, "informative_auc must be in (0, 1)")
        require(self.devices_per_arm >= 0, "devices_per_arm must be 0 (all devices, one arm at a time) or positive")
        require(self.classifier.cv.folds == 0, "classifier.cv.folds must be 0: the study repeats its splits itself "
                                               "(seeds), each arm trains on one split")
        names = generative_family_names()
        unknown = [name for name in self.generators if name not in names]
        require(not unknown, f"generators must be among {', '.join(names)}, got {', '.join(map(repr, unknown))}")
        models = ClassifierConfig.MODELS
        unknown = [name for name in self.classifiers if name not in models]
        require(not unknown, f"classifiers must be among {', '.join(models)}, got {', '.join(map(repr, unknown))}")

    def generator_config(self, generator: str, seed: int) -> GenerativeConfig:
        """The config of the `generator` family's run for `seed`."""
        steps = self.generator_steps
        return families.get(generator).config_type(
            image_size=self.image_size, batch_size=self.generator_batch_size, steps=steps, seed=seed,
            data=self.data, checkpoint=CheckpointConfig(every=steps), log=LogConfig(every=20),
            sample=SampleConfig(every=max(1, steps // 2), n=16),
            # The study measures its synthetic images itself, against the test split (`quality.py`).
            eval=EvalConfig(every=steps, n=256, fid=False))

    def classifier_config(self, model: str, seed: int, *, augment: bool, devices: int = 0) -> ClassifierConfig:
        """The config of one classifier run: the shared settings with this model, seed, augmentation and devices."""
        return dataclasses.replace(self.classifier, model=model, image_size=self.image_size, seed=seed,
                                   augment=augment, mesh=MeshConfig(data=devices))

    @classmethod
    def accelerator(cls, **overrides: Any) -> StudyConfig:
        """The full study (`ACCELERATOR_OVERRIDES`), for a GPU or TPU; `overrides` apply on top."""
        return config_lib.apply_overrides(config_lib.apply_overrides(cls(), ACCELERATOR_OVERRIDES), overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> StudyConfig:
        """Seconds-long: 32 px, 2 seeds, one ratio, a few generator steps and classifier epochs (for tests)."""
        tiny = cls(data=DataOptions(spec="phantom:brain", n=160, class_fraction=0.4), image_size=32, seeds=2,
                   minority_train_counts=(12,), synthetic_ratios=(1.0,), filter_ratio=1.0, filter_oversample=2,
                   generator_steps=3, generator_batch_size=4,
                   classifier=ClassifierConfig.tiny(epochs=2, batch_size=8), feature_steps=3)
        return config_lib.apply_overrides(tiny, overrides)


def to_dict(config: StudyConfig) -> dict[str, Any]:
    """The config as JSON-able dicts, with the study layout version."""
    return {**config_lib.to_dict(config), "study_version": STUDY_VERSION}


def save(config: StudyConfig, path: Path) -> None:
    """Writes the config as indented JSON (W/config.json)."""
    path.write_text(json.dumps(to_dict(config), indent=2) + "\n")


def load(path: Path) -> StudyConfig:
    """Reads W/config.json written by `save`.

    Raises:
      UsageError: one line, when the file comes from the earlier study (one generator, two fixed ratios,
        runs under W/seed_S/ in another layout): its runs cannot be reused, so it needs a new workdir.
    """
    values = json.loads(Path(path).read_text())
    if values.pop("study_version", 1) != STUDY_VERSION:
        raise UsageError(f"{path}: written by an earlier version of the augmentation study (other arms and run "
                         f"layout); use a new --workdir")
    flat = config_lib.flat_items_of_dict(values)
    flat.pop("format_version", None)
    return config_lib.apply_overrides(StudyConfig(), flat)


def check_resumable(saved: StudyConfig, requested: StudyConfig) -> None:
    """Refuses a requested config that would change the meaning of the runs already in the workdir.

    Raises:
      UsageError: naming the first field that differs and is not in `StudyConfig.RESUMABLE`.
    """
    before, after = config_lib.flat_items(saved), config_lib.flat_items(requested)
    for key, value in after.items():
        if key not in StudyConfig.RESUMABLE and value != before.get(key):
            raise UsageError(f"this study workdir was run with {key}={before.get(key)!r}, got {value!r}; "
                             "use a new --workdir to change it")
