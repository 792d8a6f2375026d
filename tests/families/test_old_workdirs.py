"""Workdirs written before config format 2 (no format_version; classifier cadences in epochs) still resume."""

import pytest
import json

import jax

import jaxmed
from jaxmed import config as config_lib
from jaxmed import families
from jaxmed.families.base import Task
from jaxmed.training.checkpoint import Checkpoints


def _old_workdir(root, family_name, config, old_config, loop, class_names=("a", "b")):
    """A workdir as jaxmed wrote it before format 2: its config.json and one checkpoint."""
    family = families.get(family_name)
    definition = family.definition(config, Task(class_names=class_names, total_steps=10))
    state = family.init_state(config, definition, jax.random.key(config.seed))
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps(old_config))
    with Checkpoints(root / "checkpoints") as checkpoints:
        checkpoints.save(int(state.step), state, data=loop, config=old_config)


@pytest.mark.slow
def test_an_old_gan_workdir_resumes_without_measuring_quality(tmp_path):
    gan = families.get("gan")
    config = config_lib.apply_overrides(gan.config_type(), {"image_size": 32, "batch_size": 8, "steps": 2,
                                                            "latent_dim": 8, "data.n": 32, "eval.n": 8})
    old = config_lib.to_dict(config)
    del old["format_version"]
    for key in ("fid", "fid_images", "feature_steps"):  # keys added in format 2
        del old["eval"][key]
    _old_workdir(tmp_path / "gan", "gan", config, old, {"position": 0})
    result = jaxmed.train("gan", tmp_path / "gan", steps=2, progress=False)
    assert result.step == 2 and "fid" not in result.metrics
    assert not (tmp_path / "gan" / "feature_extractor").exists()  # old runs did not measure quality
    assert json.loads((tmp_path / "gan" / "config.json").read_text())["format_version"] == config_lib.FORMAT_VERSION


@pytest.mark.slow
def test_an_old_classifier_workdir_resumes_with_its_epoch_bookkeeping(tmp_path):
    classifier = families.get("classifier")
    config = classifier.config_type.tiny(epochs=1)
    old = config_lib.to_dict(config)
    del old["format_version"]
    old["checkpoint"]["every"] = 1  # epochs, before format 2
    old["eval"] = {"every": 1, "n": 30}
    loop = {"epoch": 0, "best_val_loss": None, "best_epoch": 0, "bad_epochs": 0, "stopped_early": False,
            "position": 0}
    _old_workdir(tmp_path / "c", "classifier", config, old, loop, class_names=("no_nodule", "nodule"))
    result = jaxmed.train("classifier", tmp_path / "c", epochs=1, progress=False)
    assert result.epoch == 1 and result.eval["bootstrap"]["num_resamples"] == 30
