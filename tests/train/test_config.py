"""Config overrides, validation and resume rules."""

import pytest

from jaxmed.errors import UsageError
from jaxmed import config as config_lib
from jaxmed.families import base
from jaxmed.families.gan import GanConfig


def test_dotted_overrides_are_typed():
    config = config_lib.apply_overrides(GanConfig(), {"optimizer.lr": "1e-4", "steps": "300", "data.spec": "phantom:lung"})
    assert config.optimizer.lr == 1e-4 and isinstance(config.steps, int) and config.steps == 300
    assert config.data.spec == "phantom:lung"
    assert GanConfig().optimizer.lr == 2e-4  # the default is untouched


@pytest.mark.parametrize("overrides, message", [
    ({"optimizer.learning_rate": "1"}, "unknown config key"),
    ({"nope": "1"}, "unknown config key"),
    ({"steps": "ten"}, "steps must be int"),
    ({"image_size": "96"}, "image_size must be 32, 64, 128 or 256"),
    ({"loss": "wgan"}, "loss must be one of"),
    ({"data.class_fraction": "1.5"}, r"data.class_fraction must be in \[0, 1\]"),
    ({"precision": "fp16"}, "precision must be one of"),
    ({"conv_backend": "cudnn"}, "conv_backend must be one of"),
])
def test_bad_overrides_are_usage_errors(overrides, message):
    with pytest.raises(UsageError, match=message):
        config_lib.apply_overrides(GanConfig(), overrides)


def test_json_round_trip(tmp_path):
    config = GanConfig.tiny(**{"optimizer.b1": 0.3, "class_name": "tumor"})
    config_lib.save(config, tmp_path / "config.json")
    assert config_lib.load(GanConfig, tmp_path / "config.json") == config


def test_resume_allows_only_resumable_changes():
    saved = GanConfig.tiny()
    config_lib.check_resumable(saved, {"steps": 100, "image_size": saved.image_size})
    config_lib.check_resumable(saved, {"conv_backend": "xla"})  # same parameters on either backend
    with pytest.raises(UsageError, match="image_size=32"):
        config_lib.check_resumable(saved, {"image_size": 64})


def test_conv_backend_resolves_over_the_run_mesh(monkeypatch):
    assert base.conv_backend(GanConfig.tiny(conv_backend="xla")) == "xla"
    assert base.conv_backend(GanConfig.tiny()) == "onednn"  # one CPU device in this process
    assert base.conv_backend(GanConfig.tiny(**{"mesh.data": 2})) == "xla"
    monkeypatch.setattr(base, "resolve_conv_backend", lambda *args: (_ for _ in ()).throw(
        base.OneDnnUnavailable("no C++ compiler")))
    with pytest.raises(UsageError, match="conv_backend=onednn: no C\\+\\+ compiler"):
        base.conv_backend(GanConfig.tiny(conv_backend="onednn"))


def test_a_saved_config_without_a_newer_key_takes_its_legacy_value():
    # eval.fid (default true) came after some GAN runs: their configs lack it and must not start measuring.
    saved = config_lib.to_dict(GanConfig())
    assert config_lib.from_dict(GanConfig, saved).eval.fid is True
    del saved["eval"]["fid"]
    assert config_lib.from_dict(GanConfig, saved).eval.fid is False
