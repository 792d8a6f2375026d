"""Tests for jaxmed.viz.studies: the augmentation-study figure."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jaxmed.viz import studies


def _assert_png(path):
    assert path.exists() and path.stat().st_size > 0
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.mode in ("RGB", "RGBA")
        assert img.size[0] > 100 and img.size[1] > 100
        img.verify()


def _summary(seeds=3, with_ci=True):
    arms = ["real", "augment", "synthetic_x1", "augment+synthetic_x1"]
    rng = np.random.default_rng(0)
    per_seed = {arm: {m: list(rng.uniform(0.6, 0.9, seeds)) for m in ("accuracy", "recall", "f1")} for arm in arms}
    summary = {
        "baseline": "augment",
        "arms": {arm: {m: {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": v}
                       for m, v in metrics.items()} for arm, metrics in per_seed.items()},
        "differences": {},
    }
    for arm in arms:
        if arm == "augment":
            continue
        summary["differences"][arm] = {}
        for m in ("accuracy", "recall", "f1"):
            d = float(np.mean(per_seed[arm][m]) - np.mean(per_seed["augment"][m]))
            bounds = (d - 0.05, d + 0.05) if with_ci else (None, None)
            summary["differences"][arm][m] = {"mean": d, "low": bounds[0], "high": bounds[1]}
    return summary


# --- plot_study ---------------------------------------------------------------------


def test_study_writes_png(tmp_path):
    out = studies.plot_study(_summary(), tmp_path / "plots" / "study.png")
    assert out == tmp_path / "plots" / "study.png"
    _assert_png(out)


def test_study_tolerates_single_seed_and_missing_numbers(tmp_path):
    # What the study writes with one seed: no CI bounds; and a metric with no finite value at all.
    summary = _summary(seeds=1, with_ci=False)
    summary["arms"]["real"]["f1"] = {"mean": None, "std": 0.0, "values": [None]}
    summary["differences"]["real"]["f1"] = {"mean": None, "low": None, "high": None}
    summary["confidence"] = 0.95
    _assert_png(studies.plot_study(summary, tmp_path / "study.png", metrics=("accuracy", "f1"), title="one seed"))


def test_study_without_differences_and_single_metric(tmp_path):
    summary = _summary()
    del summary["differences"]
    _assert_png(studies.plot_study(summary, tmp_path / "study.png", metrics=("recall",)))


def test_study_rejects_bad_summary(tmp_path):
    path = tmp_path / "study.png"
    no_baseline = _summary()
    del no_baseline["baseline"]
    with pytest.raises(ValueError, match="baseline"):
        studies.plot_study(no_baseline, path)
    with pytest.raises(ValueError, match="not one of the arms"):
        studies.plot_study({**_summary(), "baseline": "nope"}, path)
    with pytest.raises(ValueError, match="no arms"):
        studies.plot_study({**_summary(), "arms": {}}, path)
    with pytest.raises(ValueError, match="metric 'auc'"):
        studies.plot_study(_summary(), path, metrics=("accuracy", "auc"))
    with pytest.raises(ValueError, match="metrics is empty"):
        studies.plot_study(_summary(), path, metrics=())
    unknown = _summary()
    unknown["differences"]["ghost"] = unknown["differences"]["real"]
    with pytest.raises(ValueError, match="unknown arms"):
        studies.plot_study(unknown, path)
    with pytest.raises(ValueError, match="mapping"):
        studies.plot_study([1, 2], path)
    assert not path.exists()


# --- plot_effects --------------------------------------------------------------------


def test_effects_writes_png_with_log_ratios_and_missing_bounds(tmp_path):
    series = {
        "gan + augment + synthetic": [{"x": 4.0, "mean": -0.05, "low": -0.09, "high": -0.01},
                                      {"x": 0.25, "mean": 0.01, "low": -0.02, "high": 0.04},
                                      {"x": 1.0, "mean": 0.02, "low": None, "high": None}],
        "gan filtered": [{"x": 1.0, "mean": None, "low": None, "high": None}],
    }
    out = studies.plot_effects(series, tmp_path / "plots" / "effect.png", xlabel="ratio", ylabel="AUC difference",
                               title="effect vs ratio", log_x=True)
    assert out == tmp_path / "plots" / "effect.png"
    _assert_png(out)
    _assert_png(studies.plot_effects({"real": [{"x": 20, "mean": 0.0, "low": -0.1, "high": 0.1}]},
                                     tmp_path / "one.png", xlabel="count", ylabel="d", title="one point"))


def test_effects_rejects_empty_or_malformed_series(tmp_path):
    with pytest.raises(ValueError, match="series is empty"):
        studies.plot_effects({}, tmp_path / "e.png", xlabel="x", ylabel="y", title="t")
    with pytest.raises(ValueError, match="without 'x' or 'mean'"):
        studies.plot_effects({"a": [{"mean": 0.1}]}, tmp_path / "e.png", xlabel="x", ylabel="y", title="t")
    assert not (tmp_path / "e.png").exists()
