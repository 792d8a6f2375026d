"""A run's working directory: where each output lives, and which config a run uses.

    W/config.json      the run's config (written when training starts)
    W/metrics.jsonl    one JSON object per logged step, each with "step"
    W/checkpoints/     Orbax step directories
    W/plots/           PNG figures (sample grids, losses, pixel distributions)
    W/events/          TensorBoard event files
    W/eval.json        evaluation results, where a command evaluates

Resume order: a workdir that has checkpoints continues from its latest one, with the
config saved there (only the fields a config lists as RESUMABLE may change);
otherwise the run starts from scratch with the requested config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxmed.train import config as config_lib
from jaxmed.train.checkpoint import Checkpoints


@dataclasses.dataclass(frozen=True)
class Workdir:
    """Paths inside one run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def events(self) -> Path:
        return self.root / "events"

    @property
    def eval(self) -> Path:
        return self.root / "eval.json"

    def has_checkpoints(self) -> bool:
        """True if a previous run saved at least one complete checkpoint here."""
        return self.checkpoints.is_dir() and Checkpoints(self.checkpoints).latest_step() is not None


def resolve_config(config_type: type, workdir: Workdir, overrides: Mapping[str, Any]):
    """The config a run in `workdir` uses: the saved one when resuming, else the defaults.

    Args:
      config_type: e.g. `GanConfig`.
      workdir: the run directory.
      overrides: dotted keys the user set explicitly (flags and `--set`).

    Raises:
      UsageError: for unknown keys, bad values, or a change a resumed run cannot take.
    """
    if workdir.has_checkpoints() and workdir.config.is_file():
        saved = config_lib.load(config_type, workdir.config)
        config_lib.check_resumable(saved, overrides)
        return config_lib.apply_overrides(saved, overrides)
    return config_lib.apply_overrides(config_type(), overrides)
