"""The family registry: every family is found by name, by model and by workdir, and nowhere else."""

import json
import pathlib
import re

import pytest

from jaxmed import config as config_lib
from jaxmed import families
from jaxmed.errors import CheckpointError, UsageError
from jaxmed.families.base import Family

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_every_registered_family_loads_with_its_name_and_config():
    assert list(families.FAMILIES) == ["gan", "vae", "diffusion", "classifier"]
    for name in families.FAMILIES:
        family = families.get(name)
        assert isinstance(family, Family) and family.name == name
        assert family.config_type.MODELS, name
        assert families.for_model(family.config_type().model) is family


def test_unknown_family_and_model():
    with pytest.raises(UsageError, match="unknown model family 'diffusionx'; choose one of gan, vae, diffusion, classifier"):
        families.get("diffusionx")
    assert families.for_model("no-such-model") is None


def test_of_workdir_reads_the_family_and_migrates_an_old_classifier_config(tmp_path):
    classifier = families.get("classifier")
    old = config_lib.to_dict(classifier.config_type())
    del old["format_version"]
    old["checkpoint"]["every"] = 1  # epochs, before format 2
    old["eval"] = {"every": 1, "n": 321}
    (tmp_path / "config.json").write_text(json.dumps(old))
    family, config = families.of_workdir(tmp_path)
    assert family is classifier
    assert config.eval.bootstrap_resamples == 321
    assert config.checkpoint.every == classifier.config_type().checkpoint.every  # the old epoch count is dropped


def test_of_workdir_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="workdir does not exist"):
        families.of_workdir(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="config.json: missing"):
        families.of_workdir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model": "wavenet"}))
    with pytest.raises(CheckpointError, match="unknown model 'wavenet'"):
        families.of_workdir(tmp_path)


def test_no_family_dispatch_outside_the_registry():
    """No `== "gan"`-style comparisons or family-name tables in the library outside the family modules."""
    pattern = re.compile(r"""(==|!=|\bin\b)\s*\(?["'](gan|vae|classifier)["']|["'](gan|vae|classifier)["']\s*:""")
    offenders = []
    for path in (ROOT / "jaxmed").rglob("*.py"):
        if path.parent == ROOT / "jaxmed" / "families":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
