"""A run's working directory: where each output lives, and which config a run uses.

    W/config.json      the run's config (written when training starts)
    W/metrics.jsonl    one JSON object per logged step, each with "step"
    W/checkpoints/     Orbax step directories
    W/checkpoints_best/  the best step so far by the run's quality measure (generative runs with eval.fid)
    W/plots/           PNG figures (sample grids, losses, pixel distributions)
    W/events/          TensorBoard event files
    W/eval.json        evaluation results, where a command evaluates
    W/skipped.json     the files the data reader skipped under data.skip_bad, and why
                       (only when it skipped any)

Resume order: a workdir that has checkpoints continues from its latest one, with the
config saved there (only the fields a config lists as RESUMABLE may change);
otherwise the run starts from scratch with the requested config.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax

from jaxmed import files
from jaxmed.errors import UsageError
from jaxmed import config as config_lib
from jaxmed.training.checkpoint import Checkpoints


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
    def best_checkpoints(self) -> Path:
        return self.root / "checkpoints_best"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def events(self) -> Path:
        return self.root / "events"

    @property
    def eval(self) -> Path:
        return self.root / "eval.json"

    @property
    def skipped(self) -> Path:
        return self.root / "skipped.json"

    def has_best_checkpoint(self) -> bool:
        """True if the run kept a best checkpoint (W/checkpoints_best)."""
        if not self.best_checkpoints.is_dir():
            return False
        with Checkpoints(self.best_checkpoints) as checkpoints:
            return checkpoints.latest_step() is not None

    def has_checkpoints(self) -> bool:
        """True if a previous run saved at least one complete checkpoint here."""
        if not self.checkpoints.is_dir():
            return False
        with Checkpoints(self.checkpoints) as checkpoints:
            return checkpoints.latest_step() is not None


def record_skipped(provenance: Mapping[str, Any], workdir: Workdir | Path | str) -> int:
    """Lists the files the data reader skipped or ignored (documents) in W/skipped.json and says so on stderr.

    Called by the training commands right after loading their data, so a run under
    ``data.skip_bad`` never drops a file silently. When nothing was skipped, a
    skipped.json left by an earlier read of other data is removed. Only process 0 writes.

    Args:
      provenance: a `jaxmed.data.Dataset`'s provenance ("skipped": [entry, reason] pairs).
      workdir: the run directory (created if missing).

    Returns:
      The number of skipped entries.
    """
    paths = workdir if isinstance(workdir, Workdir) else Workdir(Path(workdir))
    skipped = [{"file": entry, "reason": reason} for entry, reason in provenance.get("skipped") or []]
    ignored = [{"file": entry, "reason": reason} for entry, reason in provenance.get("ignored") or []]
    if jax.process_index() != 0:
        return len(skipped)
    if not skipped and not ignored:
        paths.skipped.unlink(missing_ok=True)
        return 0
    paths.root.mkdir(parents=True, exist_ok=True)
    report = {"spec": provenance.get("spec"), "count": len(skipped), "skipped": skipped, "ignored": ignored}
    files.write_text(paths.skipped, json.dumps(report, indent=2) + "\n")
    said = [f"skipped {len(skipped)} file{'s' if len(skipped) != 1 else ''}"] if skipped else []
    said += [f"ignored {len(ignored)} non-image file{'s' if len(ignored) != 1 else ''}"] if ignored else []
    print(f"{' and '.join(said)} (see {paths.skipped})", file=sys.stderr)
    return len(skipped)


def resolve_config(config_type: type, workdir: Workdir, overrides: Mapping[str, Any]):
    """The config a run in `workdir` uses: the saved one when resuming, else the defaults.

    Args:
      config_type: e.g. `GanConfig`.
      workdir: the run directory.
      overrides: dotted keys the user set explicitly (flags and `--set`).

    Raises:
      UsageError: for unknown keys, bad values, or a change a resumed run cannot take.
    """
    # A run resumes when it (or a run it is made of, e.g. a cross-validation fold) has checkpoints.
    parts = [Workdir(folder) for folder in workdir.root.iterdir() if folder.is_dir()] if workdir.root.is_dir() else []
    if workdir.config.is_file() and any(paths.has_checkpoints() for paths in [workdir, *parts]):
        saved_model = json.loads(workdir.config.read_text()).get("model")
        if saved_model not in config_type.MODELS:
            raise UsageError(f"{workdir.root} holds a {saved_model!r} run, not a {' or '.join(config_type.MODELS)} "
                             "one; use a new --workdir")
        saved = config_lib.load(config_type, workdir.config)
        config_lib.check_resumable(saved, overrides)
        return config_lib.apply_overrides(saved, overrides)
    return config_lib.apply_overrides(config_type(), overrides)
