"""Typed, validated run configurations and their `--set key=value` overrides.

A run is fixed by its config and seed. Configs are frozen dataclasses, nested by
topic, so `--set optimizer.lr=1e-4` names a field by its dotted path. Values are
parsed to the field's type; unknown keys and ill-typed values are errors naming
the key. `GanConfig.tiny()` is the smallest useful run, for tests and CI.

Example (about 5 minutes on a 2-core CPU; see README for what it produces):

    jaxmed train gan --data phantom:brain --image-size 64 --batch-size 16 --steps 300 --workdir runs/gan
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxmed import data as data_lib
from jaxmed import files
from jaxmed.data.sources.window import parse_window
from jaxmed.errors import UsageError
from jaxmed.losses import GAN_LOSSES
from jaxmed.nn import CONV_BACKENDS, resolve_conv_backend
from jaxmed.nn.onednn import OneDnnUnavailable

PRECISIONS = ("fp32", "bf16")
SCHEDULES = ("constant", "cosine")


def compute_dtype(precision: str):
    """The activation dtype for a `precision` setting: bfloat16 for "bf16", None (float32) for "fp32"."""
    return jnp.bfloat16 if precision == "bf16" else None


def model_conv_backend(config: GanConfig | VaeConfig | ClassifierConfig) -> str:
    """The concrete convolution backend of a run: its `conv_backend` resolved over the run's mesh.

    Raises:
      UsageError: conv_backend="onednn" where oneDNN cannot run (the reason in one line).
    """
    try:
        return resolve_conv_backend(config.conv_backend, config.mesh.data or jax.device_count())
    except OneDnnUnavailable as error:
        raise UsageError(f"conv_backend=onednn: {error}") from None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UsageError(message)



@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What to train on.

    Attributes:
      spec: data source, e.g. "phantom:brain" or a folder (see `jaxmed.data.load`).
      n: number of images to generate (phantom sources only).
      class_fraction: share of the positive class (phantom sources only).
      difficulty: lesion difficulty (phantom sources only; higher = smaller, fainter).
      skip_bad: skip unusable files, listing each (in the workdir's skipped.json),
        instead of stopping at the first one.
      window: DICOM intensity window: "" (the file's own), a preset (brain, lung,
        bone, ...) or "CENTER,WIDTH".
      slice_axis: volumes: slice along this canonical axis (0 sagittal, 1 coronal, 2 axial).
      slice_start, slice_stop: volumes: keep slices in this fraction of the axis.
      skip_empty_slices: volumes: leave out slices with no signal.
    """

    spec: str = "phantom:brain"
    n: int = 2000
    class_fraction: float = 0.5
    difficulty: float = 1.0
    skip_bad: bool = False
    window: str = ""
    slice_axis: int = 2
    slice_start: float = 0.0
    slice_stop: float = 1.0
    skip_empty_slices: bool = True

    def __post_init__(self):
        _require(self.n >= 1, "data.n must be at least 1")
        _require(0.0 <= self.class_fraction <= 1.0, "data.class_fraction must be in [0, 1]")
        _require(self.difficulty > 0, "data.difficulty must be positive")
        _require(self.slice_axis in (0, 1, 2), "data.slice_axis must be 0, 1 or 2")
        _require(0.0 <= self.slice_start < self.slice_stop <= 1.0,
                 "data.slice_start and data.slice_stop must satisfy 0 <= start < stop <= 1")
        parse_window(self.window)  # UsageError naming the window, whatever the source

    def load(self, image_size: int, channels: int, seed: int) -> data_lib.Dataset:
        """Reads this source as a `jaxmed.data.Dataset` (options apply to the sources that have them)."""
        return data_lib.load(self.spec, image_size, channels, n=self.n, class_fraction=self.class_fraction,
                             difficulty=self.difficulty, seed=seed, skip_bad=self.skip_bad, window=self.window,
                             slice_axis=self.slice_axis, slice_range=(self.slice_start, self.slice_stop),
                             skip_empty_slices=self.skip_empty_slices)


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with an optional warm-up + cosine schedule (see `jaxmed.train.optimizer`).

    The defaults are DCGAN's Adam: lr 2e-4, beta1 0.5, no weight decay, constant rate.
    """

    lr: float = 2e-4
    b1: float = 0.5
    b2: float = 0.999
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_fraction: float = 0.0
    clip_norm: float = 0.0

    def __post_init__(self):
        _require(self.lr > 0, "optimizer.lr must be positive")
        _require(0 <= self.b1 < 1 and 0 <= self.b2 < 1, "optimizer.b1 and optimizer.b2 must be in [0, 1)")
        _require(self.weight_decay >= 0, "optimizer.weight_decay must be non-negative")
        _require(self.schedule in SCHEDULES, f"optimizer.schedule must be one of {', '.join(SCHEDULES)}")
        _require(0 <= self.warmup_fraction < 1, "optimizer.warmup_fraction must be in [0, 1)")
        _require(self.clip_norm >= 0, "optimizer.clip_norm must be non-negative (0 = no clipping)")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Save every `every` steps (and at the end); keep the latest `keep`."""

    every: int = 500
    keep: int = 3

    def __post_init__(self):
        _require(self.every >= 1 and self.keep >= 1, "checkpoint.every and checkpoint.keep must be at least 1")


@dataclasses.dataclass(frozen=True)
class LogConfig:
    """Write metrics.jsonl / TensorBoard every `every` steps."""

    every: int = 50

    def __post_init__(self):
        _require(self.every >= 1, "log.every must be at least 1")


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """Save a fixed-noise grid of `n` samples every `every` steps."""

    every: int = 500
    n: int = 64

    def __post_init__(self):
        _require(self.every >= 1 and self.n >= 1, "sample.every and sample.n must be at least 1")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Refresh the loss and pixel-distribution plots every `every` steps, from `n` images."""

    every: int = 1000
    n: int = 512

    def __post_init__(self):
        _require(self.every >= 1 and self.n >= 1, "eval.every and eval.n must be at least 1")


def _check_accumulation(batch_size: int, accumulate_steps: int) -> None:
    _require(accumulate_steps >= 1, "accumulate_steps must be at least 1")
    _require(batch_size % accumulate_steps == 0,
             f"accumulate_steps={accumulate_steps} must divide batch_size={batch_size}")


def _check_generative(config: GanConfig | VaeConfig) -> None:
    """The checks GAN and VAE configs share."""
    _require(config.image_size in (32, 64, 128, 256), f"image_size must be 32, 64, 128 or 256, got {config.image_size}")
    _require(config.channels in (1, 3), f"channels must be 1 or 3, got {config.channels}")
    _require(config.latent_dim >= 1, "latent_dim must be at least 1")
    _require(config.batch_size >= 1, "batch_size must be at least 1")
    _require(config.steps >= 1, "steps must be at least 1")
    _require(config.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}")
    _require(config.conv_backend in CONV_BACKENDS, f"conv_backend must be one of {', '.join(CONV_BACKENDS)}")
    _check_accumulation(config.batch_size, config.accumulate_steps)


def _tiny_generative(config_type: type, overrides: Mapping[str, Any]):
    """The seconds-long GAN or VAE config of `tiny()`: 32 px, batch 8, 4 steps, with `overrides`."""
    tiny = config_type(image_size=32, batch_size=8, steps=4, latent_dim=16,
                       data=DataConfig(n=64), checkpoint=CheckpointConfig(every=2, keep=2), log=LogConfig(every=1),
                       sample=SampleConfig(every=2, n=4), eval=EvalConfig(every=4, n=16))
    return apply_overrides(tiny, overrides)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Devices on the `data` mesh axis (0 = all devices of all processes).

    The batch is split across them; the result does not depend on the count beyond
    float rounding, so a resumed run may change it.
    """

    data: int = 0

    def __post_init__(self):
        _require(self.data >= 0, "mesh.data must be 0 (all devices) or positive")


@dataclasses.dataclass(frozen=True)
class GanConfig:
    """A DCGAN run (the seed experiment: 128x128 brain MRI, batch 32, Adam 2e-4/0.5).

    Attributes:
      model: architecture family ("dcgan").
      image_size: side of the square images (32, 64, 128 or 256).
      channels: 1 (grayscale) or 3.
      latent_dim: length of the generator's input noise.
      batch_size: global batch size.
      steps: total train steps (a resumed run continues up to this number).
      seed: fixes parameters, noise, data order and phantom data.
      class_name: train only on the images of this class ("" = all images).
      loss: "minimax", "non_saturating" or "hinge" (see `jaxmed.losses`).
      ema_decay: decay of the generator's exponential moving average (used for sampling).
      precision: "fp32" or "bf16" (bf16 computation, float32 parameters).
      conv_backend: "auto", "xla" or "onednn": which kernels compute the convolutions
        (see `jaxmed.nn.conv_backend`; "auto" is oneDNN on a single CPU device).
      accumulate_steps: microbatches per step; gradients are summed over them before the one
        update, so a batch that does not fit fits (see `jaxmed.train.accumulation` for what
        it means for BatchNorm). Must divide batch_size.
    """

    model: str = "dcgan"
    image_size: int = 128
    channels: int = 1
    latent_dim: int = 100
    batch_size: int = 32
    steps: int = 5000
    seed: int = 0
    class_name: str = ""
    loss: str = "non_saturating"
    ema_decay: float = 0.999
    precision: str = "fp32"
    conv_backend: str = "auto"
    accumulate_steps: int = 1
    data: DataConfig = DataConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    log: LogConfig = LogConfig()
    sample: SampleConfig = SampleConfig()
    eval: EvalConfig = EvalConfig()
    mesh: MeshConfig = MeshConfig()

    MODELS: typing.ClassVar[tuple[str, ...]] = ("dcgan",)
    # Fields a resumed run may change; everything else must match the checkpoint.
    RESUMABLE: typing.ClassVar[frozenset[str]] = frozenset({
        "steps", "checkpoint.every", "checkpoint.keep", "log.every", "sample.every", "sample.n", "eval.every",
        "eval.n", "mesh.data", "conv_backend"})

    def __post_init__(self):
        _require(self.model in self.MODELS, f"model must be 'dcgan' for a GAN, got {self.model!r}")
        _check_generative(self)
        _require(self.loss in GAN_LOSSES, f"loss must be one of {', '.join(GAN_LOSSES)}, got {self.loss!r}")
        _require(0.0 <= self.ema_decay < 1.0, "ema_decay must be in [0, 1)")

    @classmethod
    def tiny(cls, **overrides: Any) -> GanConfig:
        """A seconds-long configuration for tests: 32 px, batch 8, a few steps."""
        return _tiny_generative(cls, overrides)


@dataclasses.dataclass(frozen=True)
class VaeConfig:
    """A convolutional VAE run (`jaxmed.models.vae`: the DCGAN's layers as encoder and decoder).

    Example (a few minutes on a 2-core CPU; samples, reconstructions and loss curves in W/plots):

        jaxmed train vae --data phantom:brain --image-size 64 --batch-size 16 --steps 300 --workdir runs/vae

    Attributes:
      model: architecture family ("vae").
      image_size, channels, batch_size, steps, seed, class_name, precision, conv_backend,
        accumulate_steps: as in `GanConfig`.
      latent_dim: length of z.
      kl_weight: weight of the KL term of the loss (1: the ELBO; below 1 trades sample
        quality for sharper reconstructions, as in a beta-VAE).
      kl_warmup_steps: the KL weight rises linearly from kl_weight/kl_warmup_steps to
        kl_weight over this many steps (0: constant), which keeps the posterior from
        collapsing onto the prior early in training.
      optimizer: Adam(2e-4, 0.9). The common 1e-3 was unstable with these layers: at 64 px,
        batch 16, the KL term jumped from about 150 to 1,200 nats mid-run and the loss ended
        at 713 against 233 with 2e-4 (600 steps on phantom tumours; 1e-4 also 233, 5e-4 324).
    """

    model: str = "vae"
    image_size: int = 128
    channels: int = 1
    latent_dim: int = 128
    batch_size: int = 32
    steps: int = 5000
    seed: int = 0
    class_name: str = ""
    kl_weight: float = 1.0
    kl_warmup_steps: int = 0
    precision: str = "fp32"
    conv_backend: str = "auto"
    accumulate_steps: int = 1
    data: DataConfig = DataConfig()
    optimizer: OptimizerConfig = OptimizerConfig(lr=2e-4, b1=0.9)
    checkpoint: CheckpointConfig = CheckpointConfig()
    log: LogConfig = LogConfig()
    sample: SampleConfig = SampleConfig()
    eval: EvalConfig = EvalConfig()
    mesh: MeshConfig = MeshConfig()

    MODELS: typing.ClassVar[tuple[str, ...]] = ("vae",)
    RESUMABLE: typing.ClassVar[frozenset[str]] = GanConfig.RESUMABLE

    def __post_init__(self):
        _require(self.model in self.MODELS, f"model must be 'vae' for a VAE, got {self.model!r}")
        _check_generative(self)
        _require(self.kl_weight >= 0, "kl_weight must be non-negative")
        _require(self.kl_warmup_steps >= 0, "kl_warmup_steps must be non-negative (0 = no warm-up)")

    @classmethod
    def tiny(cls, **overrides: Any) -> VaeConfig:
        """A seconds-long configuration for tests: 32 px, batch 8, a few steps."""
        return _tiny_generative(cls, overrides)


def to_dict(config) -> dict[str, Any]:
    """The config as plain JSON-able nested dicts."""
    return dataclasses.asdict(config)


def flat_items(config, prefix: str = "") -> dict[str, Any]:
    """{"optimizer.lr": 2e-4, ...}: every leaf field by its dotted key."""
    items = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        key = prefix + field.name
        items.update(flat_items(value, key + ".") if dataclasses.is_dataclass(value) else {key: value})
    return items


def _parse(key: str, text: Any, kind: Any) -> Any:
    """Parses `text` (a string from the command line, or an already typed value) as `kind`."""
    if not isinstance(text, str):
        text = json.dumps(text)
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is str:
            return json.loads(text) if text.startswith('"') else text
    except ValueError:
        raise UsageError(f"{key} must be {kind.__name__}, got {text!r}") from None
    raise UsageError(f"{key} has unsupported type {kind}")


def apply_overrides(config, overrides: Mapping[str, Any]):
    """Returns `config` with dotted-key overrides applied and validated.

    Args:
      config: a config dataclass instance.
      overrides: {"optimizer.lr": "1e-4", "steps": 300, ...}; string values are parsed
        to the field's type.

    Raises:
      UsageError: on an unknown key, an ill-typed value or a failed validation.
    """
    known = flat_items(config)
    for key in overrides:
        if key not in known:
            raise UsageError(f"unknown config key {key!r}; known keys: {', '.join(sorted(known))}")
    return _replace_nested(config, overrides)


def _replace_nested(config, overrides: Mapping[str, Any], prefix: str = ""):
    hints = typing.get_type_hints(type(config))
    changes = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            inner = {key.partition(".")[2]: v for key, v in overrides.items() if key.partition(".")[0] == field.name}
            if inner:
                changes[field.name] = _replace_nested(value, inner, f"{prefix}{field.name}.")
        elif field.name in overrides:
            changes[field.name] = _parse(prefix + field.name, overrides[field.name], hints[field.name])
    return dataclasses.replace(config, **changes)


def from_dict(config_type: type, values: Mapping[str, Any]):
    """Rebuilds a config from `to_dict` output (e.g. a workdir's config.json)."""
    return apply_overrides(config_type(), flat_items_of_dict(values))


def flat_items_of_dict(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flattens nested dicts to dotted keys."""
    items = {}
    for key, value in values.items():
        items.update(flat_items_of_dict(value, f"{prefix}{key}.") if isinstance(value, Mapping)
                     else {prefix + key: value})
    return items


def save(config, path: Path) -> None:
    """Writes the config as indented JSON."""
    files.write_text(path, json.dumps(to_dict(config), indent=2) + "\n")


def load(config_type: type, path: Path):
    """Reads a config written by `save`."""
    return from_dict(config_type, json.loads(Path(path).read_text()))


def check_resumable(saved, requested_overrides: Mapping[str, Any]) -> None:
    """Refuses overrides that would change a checkpointed run's meaning.

    Raises:
      UsageError: naming the first field that differs and is not in `RESUMABLE`.
    """
    updated = flat_items(apply_overrides(saved, requested_overrides))
    before = flat_items(saved)
    for key in requested_overrides:
        if key not in saved.RESUMABLE and updated[key] != before[key]:
            raise UsageError(f"this workdir was trained with {key}={before[key]!r}, got {updated[key]!r}; "
                             "use a new --workdir to change it")


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """How held-out data is chosen.

    Attributes:
      val_fraction, test_fraction: shares of each class held out for validation and
        test (the test share is ignored where the data has its own splits).
      by_subject: keep all slices of a volume or series on one side (for sources that
        have them); False splits slices independently, which leaks neighbouring slices
        of one scan between training and test and is only for data with too few scans.
    """

    val_fraction: float = 0.15
    test_fraction: float = 0.15
    by_subject: bool = True

    def __post_init__(self):
        _require(0 <= self.val_fraction < 1 and 0 < self.test_fraction < 1
                 and self.val_fraction + self.test_fraction < 1,
                 "split.val_fraction + split.test_fraction must be below 1, with test_fraction > 0")


@dataclasses.dataclass(frozen=True)
class EarlyStoppingConfig:
    """Stop when validation loss has not improved for `patience` epochs (0 = never stop early)."""

    patience: int = 5

    def __post_init__(self):
        _require(self.patience >= 0, "early_stopping.patience must be non-negative")


CLASS_WEIGHTINGS = ("none", "balanced")


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """A CNN classifier run (the nodule paper: seed_cnn on lung patches).

    Example (about a minute on a 2-core CPU; test-split metrics in W/eval.json):

        jaxmed train classifier --data phantom:lung --workdir runs/nodule_cnn

    Attributes:
      model: "seed_cnn" or "resnet18".
      image_size: side of the square input images (28-256).
      channels: 1 or 3.
      width: ResNet-18 base width (64 in the paper; smaller is faster).
      dropout_rate: dropout before the classification head.
      batch_size: global batch size.
      epochs: maximum number of epochs (a resumed run continues up to this number).
      seed: fixes parameters, data order, splits, augmentation and phantom data.
      class_weighting: "balanced" weights the loss by inverse class frequency (for imbalance).
      augment: classic augmentation (flips, small rotations and scaling, noise) during training.
      precision: "fp32" or "bf16" (bf16 computation, float32 parameters).
      conv_backend: "auto", "xla" or "onednn" (as in `GanConfig`).
      accumulate_steps: microbatches per step (as in `GanConfig`). Must divide batch_size.
      checkpoint.every: in epochs.
      eval.n: bootstrap resamples for the confidence intervals in eval.json.
    """

    model: str = "seed_cnn"
    image_size: int = 64
    channels: int = 1
    width: int = 64
    dropout_rate: float = 0.5
    batch_size: int = 32
    epochs: int = 15
    seed: int = 0
    class_weighting: str = "none"
    augment: bool = False
    precision: str = "fp32"
    conv_backend: str = "auto"
    accumulate_steps: int = 1
    data: DataConfig = DataConfig(spec="phantom:lung")
    split: SplitConfig = SplitConfig()
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-3, b1=0.9, weight_decay=1e-4, schedule="cosine",
                                                 warmup_fraction=0.05)
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    checkpoint: CheckpointConfig = CheckpointConfig(every=1, keep=2)
    log: LogConfig = LogConfig(every=20)
    eval: EvalConfig = EvalConfig(every=1, n=1000)
    mesh: MeshConfig = MeshConfig()

    MODELS: typing.ClassVar[tuple[str, ...]] = ("seed_cnn", "resnet18")
    RESUMABLE: typing.ClassVar[frozenset[str]] = frozenset({
        "epochs", "checkpoint.every", "checkpoint.keep", "log.every", "eval.n", "mesh.data",
        "early_stopping.patience", "conv_backend"})

    def __post_init__(self):
        _require(self.model in self.MODELS, f"model must be seed_cnn or resnet18, got {self.model!r}")
        _require(28 <= self.image_size <= 256, f"image_size must be in [28, 256], got {self.image_size}")
        _require(self.channels in (1, 3), f"channels must be 1 or 3, got {self.channels}")
        _require(self.width >= 1 and 0 <= self.dropout_rate < 1, "width must be positive, dropout_rate in [0, 1)")
        _require(self.batch_size >= 1 and self.epochs >= 1, "batch_size and epochs must be at least 1")
        _require(self.class_weighting in CLASS_WEIGHTINGS,
                 f"class_weighting must be one of {', '.join(CLASS_WEIGHTINGS)}")
        _require(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}")
        _require(self.conv_backend in CONV_BACKENDS, f"conv_backend must be one of {', '.join(CONV_BACKENDS)}")
        _check_accumulation(self.batch_size, self.accumulate_steps)

    @classmethod
    def tiny(cls, **overrides: Any) -> ClassifierConfig:
        """A seconds-long configuration for tests: 32 px, 2 epochs, a narrow network."""
        tiny = cls(image_size=32, width=8, batch_size=8, epochs=2, data=DataConfig(spec="phantom:lung", n=96),
                   log=LogConfig(every=2), eval=EvalConfig(every=1, n=50))
        return apply_overrides(tiny, overrides)
