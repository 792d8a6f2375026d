"""Tests for jaxmed.viz.evaluation: nearest-training pairs and the feature embedding."""

import numpy as np
import pytest
from PIL import Image

from jaxmed.viz import evaluation


def test_plot_nearest_training_writes_png_and_checks_its_pairs(tmp_path):
    images = np.linspace(-1, 1, 3 * 16 * 16).reshape(3, 16, 16, 1)
    path = evaluation.plot_nearest_training(images, -images, [0.5, 0.9, 1.0], tmp_path / "pairs.png")
    assert Image.open(path).size[0] > Image.open(path).size[1] > 100
    with pytest.raises(ValueError, match="differ in shape"):
        evaluation.plot_nearest_training(images, images[:2], [0.5, 0.9], tmp_path / "x.png")
    with pytest.raises(ValueError, match="similarity has 2 entries for 3 pairs"):
        evaluation.plot_nearest_training(images, images, [0.5, 0.9], tmp_path / "x.png")


def test_plot_feature_embedding_writes_png_and_checks_widths(tmp_path):
    rng = np.random.default_rng(0)
    path = evaluation.plot_feature_embedding({"real": rng.normal(size=(50, 6)), "generated": rng.normal(size=(40, 6)) + 2},
                                      tmp_path / "features.png")
    assert Image.open(path).size == (960, 540)
    with pytest.raises(ValueError, match="one width"):
        evaluation.plot_feature_embedding({"real": np.zeros((5, 6)), "generated": np.zeros((5, 7))}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="finite"):
        evaluation.plot_feature_embedding({"real": np.full((5, 6), np.nan)}, tmp_path / "x.png")
