"""The augmentation study on a tiny configuration."""

import json

import pytest

from jaxmed.studies.augmentation import arm_names, paired_interval, run_study, StudyConfig


def test_paired_interval():
    interval = paired_interval([0.1, 0.2, 0.3])
    assert interval["mean"] == pytest.approx(0.2)
    assert interval["low"] < 0.2 < interval["high"]
    assert paired_interval([0.1])["low"] is None


def test_tiny_study_writes_every_arm_and_seed(tmp_path):
    config = StudyConfig.tiny()
    summary = run_study(config, tmp_path, progress=False)
    saved = json.loads((tmp_path / "study.json").read_text())
    assert saved["baseline"] == "augment"
    assert set(saved["arms"]) == set(arm_names(config))
    for arm in arm_names(config):
        assert set(saved["per_seed"][arm]) == {"0", "1"}
        assert len(saved["arms"][arm]["f1"]["values"]) == 2
    for arm, differences in saved["differences"].items():
        assert differences["f1"]["n"] == 2 and differences["f1"]["low"] is not None
    assert (tmp_path / "plots" / "study.png").is_file()
    assert summary["summary"] and all(arm in summary["summary"] for arm in saved["differences"])
