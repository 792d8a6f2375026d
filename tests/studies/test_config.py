"""The study config: tuple keys from the command line and config.json, validation, old workdirs."""

import json

import pytest

from jaxmed.errors import UsageError
from jaxmed.studies import config as study_config
from jaxmed.config import apply_overrides
from jaxmed.studies.config import StudyConfig


def test_tuple_keys_take_comma_separated_lists():
    config = apply_overrides(StudyConfig(), {"synthetic_ratios": "0.25,0.5,1,2,4", "generators": "gan,vae",
                                             "minority_train_counts": "20, 50", "classifiers": "seed_cnn,resnet18",
                                             "seeds": "10"})
    assert config.synthetic_ratios == (0.25, 0.5, 1.0, 2.0, 4.0)
    assert config.generators == ("gan", "vae") and config.minority_train_counts == (20, 50)
    assert config.classifiers == ("seed_cnn", "resnet18") and config.seeds == 10
    assert apply_overrides(StudyConfig(), {"synthetic_ratios": "2"}).synthetic_ratios == (2.0,)


@pytest.mark.parametrize("overrides, message", [
    ({"synthetic_ratios": "1,x"}, "synthetic_ratios must be a comma-separated list of float, got '1,x'"),
    ({"minority_train_counts": "1.5"}, "minority_train_counts must be a comma-separated list of int"),
    ({"generators": "gan,wavenet"}, "generators must be among gan, vae, diffusion, got 'wavenet'"),
    ({"classifiers": "vgg"}, "classifiers must be among seed_cnn, resnet18, got 'vgg'"),
    ({"synthetic_ratios": "1,1"}, "synthetic_ratios has a repeated value"),
    ({"synthetic_ratios": "0"}, "synthetic_ratios must be positive"),
    ({"informative_auc": "1.5"}, "informative_auc must be in"),
    ({"generator": "vae"}, "unknown config key 'generator'"),
    ({"classifier.cv.folds": "5"}, "classifier.cv.folds must be 0"),
])
def test_bad_values_are_one_line_errors(overrides, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        apply_overrides(StudyConfig(), overrides)


def test_config_round_trips_and_refuses_an_old_study(tmp_path):
    config = StudyConfig.tiny(synthetic_ratios="0.5,2", generators="gan,vae")
    study_config.save(config, tmp_path / "config.json")
    assert study_config.load(tmp_path / "config.json") == config
    # The earlier study's config.json: one generator, two fixed ratios, no study_version.
    old = {"format_version": 2, "generator": "gan", "synthetic_ratio_small": 1.0, "seeds": 3}
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(UsageError, match="written by an earlier version of the augmentation study") as error:
        study_config.load(tmp_path / "old.json")
    assert "\n" not in str(error.value)


def test_resuming_may_add_seeds_and_cells_but_not_change_runs():
    saved = StudyConfig.tiny()
    study_config.check_resumable(saved, apply_overrides(saved, {"seeds": "5", "synthetic_ratios": "1,2"}))
    with pytest.raises(UsageError, match="generator_steps=3, got 9; use a new --workdir"):
        study_config.check_resumable(saved, apply_overrides(saved, {"generator_steps": "9"}))


def test_the_accelerator_configuration_is_valid_and_complete():
    full = StudyConfig.accelerator()
    assert full.generators == ("gan", "vae", "diffusion") and full.synthetic_ratios == (0.25, 0.5, 1.0, 2.0, 4.0)
    assert full.minority_train_counts == (20, 50, 100, 200) and full.classifiers == ("seed_cnn", "resnet18")
    assert full.image_size == 128 and full.seeds == 20
    assert StudyConfig.accelerator(seeds="30").seeds == 30
    # Every key is a --set of the CLI, each given once.
    assert all(isinstance(value, str) for value in study_config.ACCELERATOR_OVERRIDES.values())
