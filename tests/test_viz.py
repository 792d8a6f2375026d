"""Tests for jaxmed.viz: grid geometry and pixel mapping, PNG output, histogram distance."""

import numpy as np
import pytest
from PIL import Image

from jaxmed import viz


def _images(n=5, h=4, w=6, c=1, value=0.0):
    return np.full((n, h, w, c), value, dtype=np.float32)


def _gaussian_images(mean, *, seed, n=8, size=16, std=0.2):
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(mean, std, size=(n, size, size, 1)), -1.0, 1.0)


def _assert_png(path):
    assert path.exists() and path.stat().st_size > 0
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.verify()


# --- image_grid -------------------------------------------------------------


def test_grid_shape_n5_columns3_padding2():
    # 5 images in 3 columns -> 2 rows; padding around and between every tile:
    # height = 2*4 + 3*2 = 14, width = 3*6 + 4*2 = 26.
    grid = viz.image_grid(_images(5, 4, 6), columns=3, padding=2)
    assert grid.shape == (14, 26)
    assert grid.dtype == np.uint8


def test_grid_default_columns_is_ceil_sqrt():
    # N=5 -> 3 columns, 2 rows.
    grid = viz.image_grid(_images(5, 4, 6), padding=0)
    assert grid.shape == (8, 18)


def test_grid_pixel_mapping_and_layout():
    images = np.stack([_images(1, 2, 2, value=-1.0)[0], _images(1, 2, 2, value=1.0)[0]])
    grid = viz.image_grid(images, columns=2, padding=1)
    assert grid.shape == (4, 7)
    np.testing.assert_array_equal(grid[1:3, 1:3], 0)  # -1 -> 0
    np.testing.assert_array_equal(grid[1:3, 4:6], 255)  # 1 -> 255
    # Padding (border and gutter) is black.
    assert grid[0].max() == 0 and grid[:, 3].max() == 0 and grid[:, 0].max() == 0


def test_grid_midpoint_and_clipping():
    images = np.array([0.0, 5.0, -5.0], dtype=np.float32).reshape(3, 1, 1, 1)
    grid = viz.image_grid(images, columns=3, padding=0)
    np.testing.assert_array_equal(grid, [[128, 255, 0]])


def test_grid_unused_cells_are_black():
    grid = viz.image_grid(_images(5, 2, 2, value=1.0), columns=3, padding=0)
    assert grid[2:, 4:].max() == 0  # cell (row 1, col 2) is empty
    assert grid[:2, :].min() == 255


def test_grid_rgb_keeps_three_channels():
    images = _images(4, 3, 5, c=3)
    images[..., 0] = 1.0  # pure red
    images[..., 1:] = -1.0
    grid = viz.image_grid(images, columns=2, padding=2)
    assert grid.shape == (2 * 3 + 3 * 2, 2 * 5 + 3 * 2, 3)
    np.testing.assert_array_equal(grid[2, 2], [255, 0, 0])


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((0, 4, 4, 1)),  # empty
        np.zeros((4, 4, 1)),  # rank 3
        np.zeros((2, 4, 4, 2)),  # 2 channels
        np.full((1, 2, 2, 1), np.nan),  # diverged generator
    ],
)
def test_grid_rejects_bad_images(bad):
    with pytest.raises(ValueError):
        viz.image_grid(bad)


def test_grid_rejects_bad_layout_args():
    with pytest.raises(ValueError):
        viz.image_grid(_images(), columns=0)
    with pytest.raises(ValueError):
        viz.image_grid(_images(), padding=-1)


# --- save_image_grid --------------------------------------------------------


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_save_image_grid_native_size(tmp_path, channels, mode):
    images = _images(5, 4, 6, c=channels, value=0.5)
    out = viz.save_image_grid(images, tmp_path / "nested" / "grid.png", columns=3)
    _assert_png(out)
    with Image.open(out) as img:
        assert img.size == (26, 14)  # PIL reports (width, height)
        assert img.mode == mode
        np.testing.assert_array_equal(np.asarray(img), viz.image_grid(images, columns=3))


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
    out = viz.plot_losses(_records(n), tmp_path / "sub" / "losses.png")
    assert out == tmp_path / "sub" / "losses.png"
    _assert_png(out)


def test_plot_losses_skips_rows_missing_a_key(tmp_path):
    records = [{"step": 0, "d_loss": 1.0}, {"step": 1, "g_loss": 2.0}, {"step": 2, "lr": 1e-4}]
    _assert_png(viz.plot_losses(records, tmp_path / "l.png", labels=["D", "G"]))


def test_plot_losses_raises_without_any_key(tmp_path):
    with pytest.raises(ValueError, match="d_loss"):
        viz.plot_losses([{"step": 0, "lr": 1e-4}], tmp_path / "l.png")
    with pytest.raises(ValueError):
        viz.plot_losses([], tmp_path / "l.png")
    assert not (tmp_path / "l.png").exists()


def test_plot_losses_raises_on_label_mismatch(tmp_path):
    with pytest.raises(ValueError):
        viz.plot_losses(_records(3), tmp_path / "l.png", labels=["only one"])


# --- pixel_histogram_distance / plot_pixel_distribution ---------------------


def test_distance_zero_for_identical():
    a = _gaussian_images(0.0, seed=0)
    assert viz.pixel_histogram_distance(a, a.copy()) == 0.0


def test_distance_positive_monotone_and_symmetric():
    real = _gaussian_images(0.0, seed=0)
    near = _gaussian_images(0.1, seed=1)
    far = _gaussian_images(0.5, seed=2)
    d_near = viz.pixel_histogram_distance(real, near)
    d_far = viz.pixel_histogram_distance(real, far)
    assert 0.0 < d_near < d_far
    assert viz.pixel_histogram_distance(near, real) == d_near
    # W1 of a pure shift is the shift (up to binning and sampling noise).
    assert d_far == pytest.approx(0.5, abs=0.05)


def test_distance_of_point_masses_at_the_extremes():
    # All mass moves from the first bin's centre to the last bin's: 2 - 2/bins.
    d = viz.pixel_histogram_distance(_images(value=-1.0), _images(value=1.0), bins=64)
    assert d == pytest.approx(2.0 - 2.0 / 64)


def test_distance_allows_different_batch_and_image_sizes():
    d = viz.pixel_histogram_distance(_images(2, 4, 4), _images(3, 8, 6))
    assert d == 0.0


@pytest.mark.parametrize(
    "real, generated",
    [
        (np.zeros((0, 4, 4, 1)), np.zeros((2, 4, 4, 1))),  # empty
        (np.zeros((2, 4, 4, 1)), np.zeros((2, 4, 4, 3))),  # channel mismatch
        (np.zeros((2, 4, 4)), np.zeros((2, 4, 4))),  # rank 3
    ],
)
def test_distance_and_plot_reject_bad_input(tmp_path, real, generated):
    with pytest.raises(ValueError):
        viz.pixel_histogram_distance(real, generated)
    with pytest.raises(ValueError):
        viz.plot_pixel_distribution(real, generated, tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def test_distance_rejects_bad_bins():
    with pytest.raises(ValueError):
        viz.pixel_histogram_distance(_images(), _images(), bins=0)


@pytest.mark.parametrize("log", [False, True])
def test_plot_pixel_distribution_writes_png(tmp_path, log):
    real = _gaussian_images(0.0, seed=0)
    generated = _gaussian_images(0.3, seed=1)
    out = viz.plot_pixel_distribution(real, generated, tmp_path / "a" / "pix.png", log=log)
    assert out == tmp_path / "a" / "pix.png"
    _assert_png(out)


def test_plot_nearest_training_writes_png_and_checks_its_pairs(tmp_path):
    images = np.linspace(-1, 1, 3 * 16 * 16).reshape(3, 16, 16, 1)
    path = viz.plot_nearest_training(images, -images, [0.5, 0.9, 1.0], tmp_path / "pairs.png")
    assert Image.open(path).size[0] > Image.open(path).size[1] > 100
    with pytest.raises(ValueError, match="differ in shape"):
        viz.plot_nearest_training(images, images[:2], [0.5, 0.9], tmp_path / "x.png")
    with pytest.raises(ValueError, match="similarity has 2 entries for 3 pairs"):
        viz.plot_nearest_training(images, images, [0.5, 0.9], tmp_path / "x.png")


def test_plot_feature_embedding_writes_png_and_checks_widths(tmp_path):
    rng = np.random.default_rng(0)
    path = viz.plot_feature_embedding({"real": rng.normal(size=(50, 6)), "generated": rng.normal(size=(40, 6)) + 2},
                                      tmp_path / "features.png")
    assert Image.open(path).size == (960, 540)
    with pytest.raises(ValueError, match="one width"):
        viz.plot_feature_embedding({"real": np.zeros((5, 6)), "generated": np.zeros((5, 7))}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="finite"):
        viz.plot_feature_embedding({"real": np.full((5, 6), np.nan)}, tmp_path / "x.png")
