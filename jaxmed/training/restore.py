"""A finished or interrupted run, restored from its workdir: family, config, definition and newest state.

Sampling, evaluation and the feature extractors all start here, so every family is
restored the same way: the family comes from config.json's `model` (through the
registry), the definition is rebuilt from the saved config, and the newest checkpoint
that restores is placed on one device.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
from jax.sharding import SingleDeviceSharding

from jaxmed import families
from jaxmed.config import RunConfig
from jaxmed.errors import CheckpointError, UsageError
from jaxmed.training import sharding
from jaxmed.training.checkpoint import Checkpoints, abstract_like
from jaxmed.training.workdir import Workdir

BEST, LATEST = "best", "latest"


@dataclasses.dataclass(frozen=True)
class RestoredRun:
    """A run's parts (`restore_run`).

    Attributes:
      family: its `jaxmed.families.base.Family`.
      config: its config.
      definition: its static structure.
      state: the newest restorable train state, on one device.
      workdir: where it was restored from.
    """

    family: Any
    config: RunConfig
    definition: Any
    state: Any
    workdir: Workdir


def parse_checkpoint(text: str) -> str | int:
    """A `--checkpoint` value: "best", "latest" or a step number.

    Raises:
      UsageError: anything else.
    """
    if text in (BEST, LATEST):
        return text
    if text.isdigit():
        return int(text)
    raise UsageError(f"--checkpoint must be best, latest or a step number, got {text!r}")


def restore_run(workdir: Path | str, wanted: str = "a jaxmed workdir", checkpoint: str | int = LATEST
                ) -> RestoredRun:
    """Restores a checkpoint of `workdir` (a damaged one is reported and the next older one used).

    Args:
      wanted: what the caller needs, for errors (e.g. "a GAN or VAE workdir").
      checkpoint: "latest"; "best", the best step by the run's quality measure (W/checkpoints_best),
        or the latest where the run measured none; or a step number.

    Raises:
      CheckpointError: the workdir or its config is missing, no checkpoint restores, or there is no such step.
    """
    paths = Workdir(Path(workdir))
    family, config = families.of_workdir(paths.root, wanted)
    definition = family.definition(config, family.restore_task(config, paths))
    folder, step = paths.checkpoints, None if checkpoint in (BEST, LATEST) else int(checkpoint)
    if checkpoint == BEST and paths.has_best_checkpoint():
        folder = paths.best_checkpoints
    with Checkpoints(folder, keep=config.checkpoint.keep) as checkpoints:
        if step is not None and step not in checkpoints.all_steps():
            raise CheckpointError(f"{paths.checkpoints}: no checkpoint of step {step}; there are "
                                  f"{', '.join(map(str, checkpoints.all_steps())) or 'none'}")
        abstract = jax.eval_shape(lambda key: family.init_state(config, definition, key), jax.random.key(0))
        placement = SingleDeviceSharding(sharding.group_devices()[0])  # a study's parallel arm restores on its group
        state, _, _ = checkpoints.restore(abstract_like(abstract, placement), step)
    return RestoredRun(family, config, definition, state, paths)
