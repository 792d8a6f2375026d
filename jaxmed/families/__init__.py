"""The family registry: the one place that maps a family's name to its module.

Each entry names a module that defines a `jaxmed.families.base.Family` subclass and
exposes an instance as `FAMILY`. Modules are imported on first use, so the command
line can list families without starting JAX. To add a family, write its module (see
docs/design.md) and add one line here.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from jaxmed import config as config_lib
from jaxmed.errors import CheckpointError, UsageError

FAMILIES: dict[str, str] = {
    "gan": "jaxmed.families.gan",
    "vae": "jaxmed.families.vae",
    "diffusion": "jaxmed.families.diffusion",
    "classifier": "jaxmed.families.classifier",
}


def get(name: str):
    """The family registered as `name`.

    Raises:
      UsageError: no family has that name.
    """
    if name not in FAMILIES:
        raise UsageError(f"unknown model family {name!r}; choose one of {', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[name]).FAMILY


def all_families() -> list:
    """Every registered family, in registry order."""
    return [get(name) for name in FAMILIES]


def for_model(model: str | None):
    """The family whose config takes `model` (a config.json's "model"), or None."""
    for family in all_families():
        if model in family.config_type.MODELS:
            return family
    return None


def of_workdir(workdir: Path | str, wanted: str = "a jaxmed workdir"):
    """The family and config of the run saved in `workdir` (from its config.json).

    Args:
      wanted: what the caller needs, for the error, e.g. "a GAN or VAE workdir".

    Raises:
      CheckpointError: the folder or its config.json is missing or unreadable, or names no family.
    """
    root = Path(workdir)
    config_path = root / "config.json"
    if not root.is_dir():
        raise CheckpointError(f"{root}: workdir does not exist")
    if not config_path.is_file():
        raise CheckpointError(f"{config_path}: missing; is {root} {wanted}?")
    try:
        model = json.loads(config_path.read_text()).get("model")
    except (json.JSONDecodeError, AttributeError) as error:
        raise CheckpointError(f"{config_path}: not a jaxmed config ({error})") from None
    family = for_model(model)
    if family is None:
        raise CheckpointError(f"{config_path}: unknown model {model!r}; is {root} {wanted}?")
    return family, config_lib.load(family.config_type, config_path)
