"""Tests for jaxmed.viz.generation: loss curves and pixel-distribution figures."""

import numpy as np
import pytest
from PIL import Image

from jaxmed.viz import generation


def _gaussian_images(mean, *, seed, n=8, size=16, std=0.2):
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(mean, std, size=(n, size, size, 1)), -1.0, 1.0)


def _assert_png(path):
    assert path.exists() and path.stat().st_size > 0
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.verify()


# --- plot_losses ------------------------------------------------------------


def _records(n):
    rng = np.random.default_rng(0)
    return [
        {
            "step": 10 * i,
            "d_loss": 0.7 + 0.1 * rng.standard_normal(),
            "g_loss": 2.0 + rng.standard_normal(),
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("n", [1, 10, 500])  # single point, raw only, smoothed
def test_plot_losses_writes_png(tmp_path, n):
    out = generation.plot_losses(_records(n), tmp_path / "sub" / "losses.png")
    assert out == tmp_path / "sub" / "losses.png"
    _assert_png(out)


def test_plot_losses_skips_rows_missing_a_key(tmp_path):
    records = [{"step": 0, "d_loss": 1.0}, {"step": 1, "g_loss": 2.0}, {"step": 2, "lr": 1e-4}]
    _assert_png(generation.plot_losses(records, tmp_path / "l.png", labels=["D", "G"]))


def test_plot_losses_raises_without_any_key(tmp_path):
    with pytest.raises(ValueError, match="d_loss"):
        generation.plot_losses([{"step": 0, "lr": 1e-4}], tmp_path / "l.png")
    with pytest.raises(ValueError):
        generation.plot_losses([], tmp_path / "l.png")
    assert not (tmp_path / "l.png").exists()


def test_plot_losses_raises_on_label_mismatch(tmp_path):
    with pytest.raises(ValueError):
        generation.plot_losses(_records(3), tmp_path / "l.png", labels=["only one"])


# --- plot_pixel_distribution ---------------------------------------------------


@pytest.mark.parametrize(
    "real, generated",
    [
        (np.zeros((0, 4, 4, 1)), np.zeros((2, 4, 4, 1))),  # empty
        (np.zeros((2, 4, 4, 1)), np.zeros((2, 4, 4, 3))),  # channel mismatch
        (np.zeros((2, 4, 4)), np.zeros((2, 4, 4))),  # rank 3
    ],
)
def test_plot_pixel_distribution_rejects_bad_input(tmp_path, real, generated):
    with pytest.raises(ValueError):
        generation.plot_pixel_distribution(real, generated, tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("log", [False, True])
def test_plot_pixel_distribution_writes_png(tmp_path, log):
    real = _gaussian_images(0.0, seed=0)
    generated = _gaussian_images(0.3, seed=1)
    out = generation.plot_pixel_distribution(real, generated, tmp_path / "a" / "pix.png", log=log)
    assert out == tmp_path / "a" / "pix.png"
    _assert_png(out)
