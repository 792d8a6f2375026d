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
from jaxmed.training.checkpoint import Checkpoints, abstract_like
from jaxmed.training.workdir import Workdir


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


def restore_run(workdir: Path | str, wanted: str = "a jaxmed workdir") -> RestoredRun:
    """Restores the newest checkpoint of `workdir` (a damaged one is reported and passed over).

    Args:
      wanted: what the caller needs, for errors (e.g. "a GAN or VAE workdir").

    Raises:
      CheckpointError: the workdir or its config is missing, or no checkpoint restores.
    """
    paths = Workdir(Path(workdir))
    family, config = families.of_workdir(paths.root, wanted)
    definition = family.definition(config, family.restore_task(config, paths))
    with Checkpoints(paths.checkpoints, keep=config.checkpoint.keep) as checkpoints:
        abstract = jax.eval_shape(lambda key: family.init_state(config, definition, key), jax.random.key(0))
        state, _, _ = checkpoints.restore(abstract_like(abstract, SingleDeviceSharding(jax.devices()[0])))
    return RestoredRun(family, config, definition, state, paths)
