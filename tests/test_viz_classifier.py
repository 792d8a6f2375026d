"""Tests for the classifier figures in jaxmed.viz: training curves, ROC, confusion matrix, study summary."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from jaxmed import viz


def _assert_png(path):
    assert path.exists() and path.stat().st_size > 0
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.mode in ("RGB", "RGBA")
        assert img.size[0] > 100 and img.size[1] > 100
        img.verify()


def _records(epochs=12):
    return [
        {"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e + 0.05, "train_accuracy": 1 - 0.5 / e,
         "val_accuracy": 1 - 0.6 / e}
        for e in range(1, epochs + 1)
    ]


def _roc(n=50):
    fpr = np.linspace(0.0, 1.0, n)
    return fpr, np.sqrt(fpr)


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


# --- plot_training_curves -------------------------------------------------------


@pytest.mark.parametrize("epochs", [1, 12, 60])
def test_training_curves_write_png(tmp_path, epochs):
    out = viz.plot_training_curves(_records(epochs), tmp_path / "sub" / "curves.png")
    assert out == tmp_path / "sub" / "curves.png"
    _assert_png(out)


def test_training_curves_skip_missing_keys_and_non_finite(tmp_path):
    records = [
        {"epoch": 1, "train_loss": 0.9},
        {"epoch": 2, "train_loss": 0.7, "val_loss": float("nan"), "val_accuracy": None},
        {"epoch": 3, "val_accuracy": 0.8, "lr": 1e-3},
        {"train_loss": 0.5},  # no epoch: falls back to its index
    ]
    _assert_png(viz.plot_training_curves(records, tmp_path / "c.png", title="partial"))


def test_training_curves_loss_only(tmp_path):
    records = [{"epoch": e, "train_loss": 1.0 / e} for e in range(1, 4)]
    _assert_png(viz.plot_training_curves(records, tmp_path / "c.png"))


def test_training_curves_reject_empty_and_keyless(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        viz.plot_training_curves([], tmp_path / "c.png")
    with pytest.raises(ValueError, match="no record"):
        viz.plot_training_curves([{"epoch": 1, "lr": 0.1}, {"epoch": 2, "train_loss": math.inf}], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


# --- plot_roc ---------------------------------------------------------------------


def test_roc_writes_png_with_and_without_aucs(tmp_path):
    curves = {"real": _roc(), "augment": (np.array([0.0, 0.1, 1.0]), np.array([0.0, 0.7, 1.0]))}
    _assert_png(viz.plot_roc(curves, tmp_path / "a" / "roc.png", aucs={"real": 0.67, "augment": 0.8}))
    _assert_png(viz.plot_roc(curves, tmp_path / "roc2.png"))
    _assert_png(viz.plot_roc(curves, tmp_path / "roc3.png", aucs={"real": 0.67}))  # a subset is fine


def test_roc_accepts_lists(tmp_path):
    _assert_png(viz.plot_roc({"tumor": ([0.0, 0.5, 1.0], [0.0, 0.9, 1.0])}, tmp_path / "roc.png"))


@pytest.mark.parametrize(
    "curves, aucs, match",
    [
        ({}, None, "empty"),
        ({"a": (np.zeros(3), np.zeros(4))}, None, "equal length"),
        ({"a": (np.zeros(0), np.zeros(0))}, None, "non-empty"),
        ({"a": (np.zeros((2, 2)), np.zeros((2, 2)))}, None, "1-D"),
        ({"a": (np.array([0.0, np.nan]), np.array([0.0, 1.0]))}, None, "NaN"),
        ({"a": (np.array([0.0, 1.5]), np.array([0.0, 1.0]))}, None, r"\[0, 1\]"),
        ({"a": _roc()}, {"b": 0.7}, "not plotted"),
        ({"a": _roc()}, {"a": 1.7}, r"\[0, 1\]"),
    ],
)
def test_roc_rejects_bad_input(tmp_path, curves, aucs, match):
    with pytest.raises(ValueError, match=match):
        viz.plot_roc(curves, tmp_path / "roc.png", aucs=aucs)
    assert not (tmp_path / "roc.png").exists()


# --- plot_confusion_matrix ----------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_writes_png(tmp_path, normalize):
    matrix = np.array([[180, 12], [9, 23]])
    out = viz.plot_confusion_matrix(matrix, ["no_tumor", "tumor"], tmp_path / "x" / "cm.png", normalize=normalize)
    assert out == tmp_path / "x" / "cm.png"
    _assert_png(out)


def test_confusion_matrix_many_classes_empty_row_and_float_counts(tmp_path):
    matrix = np.arange(36, dtype=float).reshape(6, 6) / 3.0
    matrix[2] = 0.0  # a class with no examples must not produce NaN
    names = [f"a_rather_long_class_name_{i}" for i in range(6)]
    _assert_png(viz.plot_confusion_matrix(matrix, names, tmp_path / "cm.png"))


def test_confusion_matrix_text_colour_contrasts_with_cell(tmp_path):
    # Dark diagonal, light off-diagonal: both text colours are used and the
    # picture has both very dark and very light regions.
    out = viz.plot_confusion_matrix(np.array([[100, 0], [0, 100]]), ["a", "b"], tmp_path / "cm.png")
    pixels = np.asarray(Image.open(out).convert("L"))
    assert pixels.min() < 60 and pixels.max() > 240


@pytest.mark.parametrize(
    "matrix, names, match",
    [
        (np.zeros((2, 2)), ["a", "b", "c"], "class_names"),
        (np.zeros((3, 3)), ["a", "b"], "class_names"),
        (np.zeros((2, 3)), ["a", "b"], "square"),
        (np.zeros((0, 0)), [], "non-empty"),
        (np.zeros(4), ["a", "b"], "square"),
        (np.array([[1, -1], [0, 2]]), ["a", "b"], "non-negative"),
        (np.array([[1, np.nan], [0, 2]]), ["a", "b"], "finite"),
    ],
)
def test_confusion_matrix_rejects_bad_input(tmp_path, matrix, names, match):
    with pytest.raises(ValueError, match=match):
        viz.plot_confusion_matrix(matrix, names, tmp_path / "cm.png")
    assert not (tmp_path / "cm.png").exists()


# --- plot_study ---------------------------------------------------------------------


def test_study_writes_png(tmp_path):
    out = viz.plot_study(_summary(), tmp_path / "plots" / "study.png")
    assert out == tmp_path / "plots" / "study.png"
    _assert_png(out)


def test_study_tolerates_single_seed_and_missing_numbers(tmp_path):
    # What the study writes with one seed: no CI bounds; and a metric with no finite value at all.
    summary = _summary(seeds=1, with_ci=False)
    summary["arms"]["real"]["f1"] = {"mean": None, "std": 0.0, "values": [None]}
    summary["differences"]["real"]["f1"] = {"mean": None, "low": None, "high": None}
    summary["confidence"] = 0.95
    _assert_png(viz.plot_study(summary, tmp_path / "study.png", metrics=("accuracy", "f1"), title="one seed"))


def test_study_without_differences_and_single_metric(tmp_path):
    summary = _summary()
    del summary["differences"]
    _assert_png(viz.plot_study(summary, tmp_path / "study.png", metrics=("recall",)))


def test_study_rejects_bad_summary(tmp_path):
    path = tmp_path / "study.png"
    no_baseline = _summary()
    del no_baseline["baseline"]
    with pytest.raises(ValueError, match="baseline"):
        viz.plot_study(no_baseline, path)
    with pytest.raises(ValueError, match="not one of the arms"):
        viz.plot_study({**_summary(), "baseline": "nope"}, path)
    with pytest.raises(ValueError, match="no arms"):
        viz.plot_study({**_summary(), "arms": {}}, path)
    with pytest.raises(ValueError, match="metric 'auc'"):
        viz.plot_study(_summary(), path, metrics=("accuracy", "auc"))
    with pytest.raises(ValueError, match="metrics is empty"):
        viz.plot_study(_summary(), path, metrics=())
    unknown = _summary()
    unknown["differences"]["ghost"] = unknown["differences"]["real"]
    with pytest.raises(ValueError, match="unknown arms"):
        viz.plot_study(unknown, path)
    with pytest.raises(ValueError, match="mapping"):
        viz.plot_study([1, 2], path)
    assert not path.exists()
