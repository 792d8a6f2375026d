"""Tests for jaxmed.viz.classification: training curves, ROC, confusion matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from jaxmed.viz import classification


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


# --- plot_training_curves -------------------------------------------------------


@pytest.mark.parametrize("epochs", [1, 12, 60])
def test_training_curves_write_png(tmp_path, epochs):
    out = classification.plot_training_curves(_records(epochs), tmp_path / "sub" / "curves.png")
    assert out == tmp_path / "sub" / "curves.png"
    _assert_png(out)


def test_training_curves_skip_missing_keys_and_non_finite(tmp_path):
    records = [
        {"epoch": 1, "train_loss": 0.9},
        {"epoch": 2, "train_loss": 0.7, "val_loss": float("nan"), "val_accuracy": None},
        {"epoch": 3, "val_accuracy": 0.8, "lr": 1e-3},
        {"train_loss": 0.5},  # no epoch: falls back to its index
    ]
    _assert_png(classification.plot_training_curves(records, tmp_path / "c.png", title="partial"))


def test_training_curves_loss_only(tmp_path):
    records = [{"epoch": e, "train_loss": 1.0 / e} for e in range(1, 4)]
    _assert_png(classification.plot_training_curves(records, tmp_path / "c.png"))


def test_training_curves_reject_empty_and_keyless(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        classification.plot_training_curves([], tmp_path / "c.png")
    with pytest.raises(ValueError, match="no record"):
        classification.plot_training_curves([{"epoch": 1, "lr": 0.1}, {"epoch": 2, "train_loss": math.inf}], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


# --- plot_roc ---------------------------------------------------------------------


def test_roc_writes_png_with_and_without_aucs(tmp_path):
    curves = {"real": _roc(), "augment": (np.array([0.0, 0.1, 1.0]), np.array([0.0, 0.7, 1.0]))}
    _assert_png(classification.plot_roc(curves, tmp_path / "a" / "roc.png", aucs={"real": 0.67, "augment": 0.8}))
    _assert_png(classification.plot_roc(curves, tmp_path / "roc2.png"))
    _assert_png(classification.plot_roc(curves, tmp_path / "roc3.png", aucs={"real": 0.67}))  # a subset is fine


def test_roc_accepts_lists(tmp_path):
    _assert_png(classification.plot_roc({"tumor": ([0.0, 0.5, 1.0], [0.0, 0.9, 1.0])}, tmp_path / "roc.png"))


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
        classification.plot_roc(curves, tmp_path / "roc.png", aucs=aucs)
    assert not (tmp_path / "roc.png").exists()


# --- plot_confusion_matrix ----------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_writes_png(tmp_path, normalize):
    matrix = np.array([[180, 12], [9, 23]])
    out = classification.plot_confusion_matrix(matrix, ["no_tumor", "tumor"], tmp_path / "x" / "cm.png", normalize=normalize)
    assert out == tmp_path / "x" / "cm.png"
    _assert_png(out)


def test_confusion_matrix_many_classes_empty_row_and_float_counts(tmp_path):
    matrix = np.arange(36, dtype=float).reshape(6, 6) / 3.0
    matrix[2] = 0.0  # a class with no examples must not produce NaN
    names = [f"a_rather_long_class_name_{i}" for i in range(6)]
    _assert_png(classification.plot_confusion_matrix(matrix, names, tmp_path / "cm.png"))


def test_confusion_matrix_text_colour_contrasts_with_cell(tmp_path):
    # Dark diagonal, light off-diagonal: both text colours are used and the
    # picture has both very dark and very light regions.
    out = classification.plot_confusion_matrix(np.array([[100, 0], [0, 100]]), ["a", "b"], tmp_path / "cm.png")
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
        classification.plot_confusion_matrix(matrix, names, tmp_path / "cm.png")
    assert not (tmp_path / "cm.png").exists()
