"""The run-config schema: typed, validated, frozen dataclasses and their `--set key=value` overrides.

A run is fixed by its config and seed. `RunConfig` holds what every run has (data,
image size, batch size, seed, precision, mesh, checkpoints, logging); each model family
subclasses it with its own fields only (`jaxmed.families`). Configs nest by topic, so
`--set optimizer.lr=1e-4` names a field by its dotted path; values are parsed to the
field's type; unknown keys and ill-typed values are errors naming the key. Every
cadence (`checkpoint.every`, `log.every`, `sample.every`, `eval.every`) counts train
steps, whatever the family.

This module imports no jax and no kernels: reading, writing and validating a config is
cheap, and the CLI can check a command line before JAX starts.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxmed import files
from jaxmed.data.options import DataOptions
from jaxmed.errors import UsageError

PRECISIONS = ("fp32", "bf16")
CONV_BACKENDS = ("auto", "xla", "onednn")
SCHEDULES = ("constant", "cosine")
#: Written into config.json; configs saved before it existed are migrated by their family's `MIGRATIONS`.
FORMAT_VERSION = 2


def require(condition: bool, message: str) -> None:
    """Raises UsageError(message) unless `condition`: the one way configs validate."""
    if not condition:
        raise UsageError(message)


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with an optional warm-up + cosine schedule (see `jaxmed.training.optimizer`).

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
        require(self.lr > 0, "optimizer.lr must be positive")
        require(0 <= self.b1 < 1 and 0 <= self.b2 < 1, "optimizer.b1 and optimizer.b2 must be in [0, 1)")
        require(self.weight_decay >= 0, "optimizer.weight_decay must be non-negative")
        require(self.schedule in SCHEDULES, f"optimizer.schedule must be one of {', '.join(SCHEDULES)}")
        require(0 <= self.warmup_fraction < 1, "optimizer.warmup_fraction must be in [0, 1)")
        require(self.clip_norm >= 0, "optimizer.clip_norm must be non-negative (0 = no clipping)")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Save every `every` train steps (and at the end); keep the latest `keep`."""

    every: int = 500
    keep: int = 3

    def __post_init__(self):
        require(self.every >= 1 and self.keep >= 1, "checkpoint.every and checkpoint.keep must be at least 1")


@dataclasses.dataclass(frozen=True)
class LogConfig:
    """Write the step's metrics to metrics.jsonl and TensorBoard every `every` train steps."""

    every: int = 50

    def __post_init__(self):
        require(self.every >= 1, "log.every must be at least 1")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Devices on the `data` mesh axis (0 = all devices of all processes).

    The batch is split across them; the result does not depend on the count beyond
    float rounding, so a resumed run may change it.
    """

    data: int = 0

    def __post_init__(self):
        require(self.data >= 0, "mesh.data must be 0 (all devices) or positive")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What every run has; a family's config subclasses it and adds only its own fields.

    Attributes:
      image_size: side of the square images.
      channels: 1 (grayscale) or 3.
      batch_size: global batch size.
      seed: fixes parameters, noise, data order, splits and phantom data.
      precision: "fp32" or "bf16" (bf16 computation, float32 parameters).
      conv_backend: "auto", "xla" or "onednn": which kernels compute the convolutions
        (see `jaxmed.nn.conv_backend`; "auto" is oneDNN on a single CPU device).
      accumulate_steps: microbatches per step; gradients are summed over them before the
        one update, so a batch that does not fit fits (see `jaxmed.training.accumulation`).
        Must divide batch_size.
      data: what to read (`jaxmed.data.options.DataOptions`).
      checkpoint, log, mesh: see their classes.
    """

    image_size: int = 128
    channels: int = 1
    batch_size: int = 32
    seed: int = 0
    precision: str = "fp32"
    conv_backend: str = "auto"
    accumulate_steps: int = 1
    data: DataOptions = DataOptions()
    checkpoint: CheckpointConfig = CheckpointConfig()
    log: LogConfig = LogConfig()
    mesh: MeshConfig = MeshConfig()

    #: The values `model` may take for this config (a family's architectures).
    MODELS: typing.ClassVar[tuple[str, ...]] = ()
    #: Fields a resumed run may change; everything else must match the checkpoint.
    RESUMABLE: typing.ClassVar[frozenset[str]] = frozenset({
        "checkpoint.every", "checkpoint.keep", "log.every", "mesh.data", "conv_backend"})
    #: Named sets of defaults (`recipe` field): {recipe: {dotted key: value}}; see `apply_overrides`.
    RECIPES: typing.ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: Dotted keys of configs saved before FORMAT_VERSION: old key -> new key (None: dropped, with the keys
    #: below it).
    MIGRATIONS: typing.ClassVar[Mapping[str, str | None]] = {}
    #: Values of keys added later, for saved configs without them: what those runs did (a run saved
    #: before a key existed must resume as it was, whatever the key's default is now).
    LEGACY_VALUES: typing.ClassVar[Mapping[str, Any]] = {}

    def __post_init__(self):
        models = self.MODELS
        if models:
            require(getattr(self, "model", None) in models,
                    f"model must be {' or '.join(repr(model) for model in models)}, got {getattr(self, 'model', None)!r}")
        require(self.channels in (1, 3), f"channels must be 1 or 3, got {self.channels}")
        require(self.batch_size >= 1, "batch_size must be at least 1")
        require(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}")
        require(self.conv_backend in CONV_BACKENDS, f"conv_backend must be one of {', '.join(CONV_BACKENDS)}")
        require(self.accumulate_steps >= 1, "accumulate_steps must be at least 1")
        require(self.batch_size % self.accumulate_steps == 0,
                f"accumulate_steps={self.accumulate_steps} must divide batch_size={self.batch_size}")


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """Save a fixed-noise grid of `n` samples every `every` train steps."""

    every: int = 500
    n: int = 64

    def __post_init__(self):
        require(self.every >= 1 and self.n >= 1, "sample.every and sample.n must be at least 1")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What a generative run measures every `every` train steps (the plots also at the end).

    Attributes:
      every: the cadence, in train steps.
      n: images behind the loss and pixel-distribution plots.
      fid: also measure (every `every` steps only) FID, KID and precision/recall of
        `fid_images` generated images against real ones in in-domain features
        (`jaxmed.evaluation.quality`), log them, and keep the checkpoint with the best FID
        beside the latest ones (`sample` and `evaluate` use it).
      fid_images: generated (and at most as many reference) images per measurement.
      feature_steps: train steps of the VAE that embeds the images, trained once per run.
    """

    every: int = 1000
    n: int = 512
    fid: bool = True
    fid_images: int = 500
    feature_steps: int = 600

    def __post_init__(self):
        require(self.every >= 1 and self.n >= 1, "eval.every and eval.n must be at least 1")
        require(self.fid_images >= 10, "eval.fid_images must be at least 10")
        require(self.feature_steps >= 1, "eval.feature_steps must be at least 1")


@dataclasses.dataclass(frozen=True)
class GenerativeConfig(RunConfig):
    """What every generative run (GAN, VAE) adds: a length in steps, a latent space, samples, plots.

    Attributes:
      steps: total train steps (a resumed run continues up to this number).
      latent_dim: length of the generator's input noise (a VAE's z).
      class_name: train only on the images of this class ("" = all images).
      optimizer: see `OptimizerConfig`.
      sample: fixed-noise sample grids.
      eval: loss and pixel-distribution plots.
    """

    steps: int = 5000
    latent_dim: int = 100
    class_name: str = ""
    optimizer: OptimizerConfig = OptimizerConfig()
    sample: SampleConfig = SampleConfig()
    eval: EvalConfig = EvalConfig()

    RESUMABLE: typing.ClassVar[frozenset[str]] = RunConfig.RESUMABLE | {
        "steps", "sample.every", "sample.n", "eval.every", "eval.n", "eval.fid", "eval.fid_images"}
    LEGACY_VALUES: typing.ClassVar[Mapping[str, Any]] = {"eval.fid": False}

    def __post_init__(self):
        super().__post_init__()
        require(self.image_size in (32, 64, 128, 256), f"image_size must be 32, 64, 128 or 256, got {self.image_size}")
        require(self.latent_dim >= 1, "latent_dim must be at least 1")
        require(self.steps >= 1, "steps must be at least 1")

    @classmethod
    def tiny(cls, **overrides: Any):
        """A seconds-long configuration for tests: 32 px, batch 8, 4 steps."""
        tiny = cls(image_size=32, batch_size=8, steps=4, latent_dim=16,
                   data=DataOptions(n=64), checkpoint=CheckpointConfig(every=2, keep=2), log=LogConfig(every=1),
                   sample=SampleConfig(every=2, n=4), eval=EvalConfig(every=4, n=16, fid=False))
        return apply_overrides(tiny, overrides)


def to_dict(config) -> dict[str, Any]:
    """The config as plain JSON-able nested dicts, with the format version."""
    return {**dataclasses.asdict(config), "format_version": FORMAT_VERSION}


def flat_items(config, prefix: str = "") -> dict[str, Any]:
    """{"optimizer.lr": 2e-4, ...}: every leaf field by its dotted key."""
    items = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        key = prefix + field.name
        items.update(flat_items(value, key + ".") if dataclasses.is_dataclass(value) else {key: value})
    return items


def _parse(key: str, text: Any, kind: Any) -> Any:
    """Parses `text` (a string from the command line, or an already typed value) as `kind`.

    A `tuple[X, ...]` field takes a comma-separated string ("0.5,1,2") or a list, each item an X.
    """
    if typing.get_origin(kind) is tuple:
        items = text.split(",") if isinstance(text, str) else list(text) if isinstance(text, (list, tuple)) else [text]
        try:
            return tuple(_parse(key, item.strip() if isinstance(item, str) else item, typing.get_args(kind)[0])
                         for item in items)
        except UsageError:
            raise UsageError(f"{key} must be a comma-separated list of {typing.get_args(kind)[0].__name__}, "
                             f"got {text!r}") from None
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

    A config with `RECIPES` whose `recipe` changes takes the new recipe's values first,
    then the other overrides: the keys given explicitly always win over the recipe.

    Raises:
      UsageError: on an unknown key, an ill-typed value or a failed validation.
    """
    known = flat_items(config)
    for key in overrides:
        if key not in known:
            raise UsageError(f"unknown config key {key!r}; known keys: {', '.join(sorted(known))}")
    return _replace_nested(config, _with_recipe(config, overrides))


def _with_recipe(config, overrides: Mapping[str, Any]) -> Mapping[str, Any]:
    """`overrides` preceded by the values of the recipe they switch to, if they switch `recipe`."""
    recipes = getattr(config, "RECIPES", None)  # any config dataclass, e.g. DataOptions, may come here
    if not recipes or "recipe" not in overrides:
        return overrides
    recipe = _parse("recipe", overrides["recipe"], str)
    require(recipe in recipes, f"recipe must be one of {', '.join(recipes)}, got {recipe!r}")
    if recipe == config.recipe:
        return overrides
    return {**recipes[recipe], **overrides}


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


def flat_items_of_dict(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flattens nested dicts to dotted keys."""
    items = {}
    for key, value in values.items():
        items.update(flat_items_of_dict(value, f"{prefix}{key}.") if isinstance(value, Mapping)
                     else {prefix + key: value})
    return items


def from_dict(config_type: type, values: Mapping[str, Any]):
    """Rebuilds a config from `to_dict` output (e.g. a workdir's config.json), migrating an older format."""
    flat = {**getattr(config_type, "LEGACY_VALUES", {}), **flat_items_of_dict(values)}
    if flat.pop("format_version", 1) < FORMAT_VERSION:
        for old, new in getattr(config_type, "MIGRATIONS", {}).items():
            if new is None:  # dropped, with every key below it
                flat = {key: value for key, value in flat.items() if key != old and not key.startswith(old + ".")}
            elif old in flat:
                flat[new] = flat.pop(old)
    return apply_overrides(config_type(), flat)


def save(config, path: Path) -> None:
    """Writes the config as indented JSON."""
    files.write_text(path, json.dumps(to_dict(config), indent=2) + "\n")


def load(config_type: type, path: Path):
    """Reads a config written by `save` (or by an earlier version of jaxmed)."""
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
