"""Tests for jaxmed.viz.figures: grid geometry and pixel mapping, PNG output."""

import numpy as np
import pytest
from PIL import Image

from jaxmed.viz import figures


def _images(n=5, h=4, w=6, c=1, value=0.0):
    return np.full((n, h, w, c), value, dtype=np.float32)


def _assert_png(path):
    assert path.exists() and path.stat().st_size > 0
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.verify()


# --- image_grid -------------------------------------------------------------


def test_grid_shape_n5_columns3_padding2():
    # 5 images in 3 columns -> 2 rows; padding around and between every tile:
    # height = 2*4 + 3*2 = 14, width = 3*6 + 4*2 = 26.
    grid = figures.image_grid(_images(5, 4, 6), columns=3, padding=2)
    assert grid.shape == (14, 26)
    assert grid.dtype == np.uint8


def test_grid_default_columns_is_ceil_sqrt():
    # N=5 -> 3 columns, 2 rows.
    grid = figures.image_grid(_images(5, 4, 6), padding=0)
    assert grid.shape == (8, 18)


def test_grid_pixel_mapping_and_layout():
    images = np.stack([_images(1, 2, 2, value=-1.0)[0], _images(1, 2, 2, value=1.0)[0]])
    grid = figures.image_grid(images, columns=2, padding=1)
    assert grid.shape == (4, 7)
    np.testing.assert_array_equal(grid[1:3, 1:3], 0)  # -1 -> 0
    np.testing.assert_array_equal(grid[1:3, 4:6], 255)  # 1 -> 255
    # Padding (border and gutter) is black.
    assert grid[0].max() == 0 and grid[:, 3].max() == 0 and grid[:, 0].max() == 0


def test_grid_midpoint_and_clipping():
    images = np.array([0.0, 5.0, -5.0], dtype=np.float32).reshape(3, 1, 1, 1)
    grid = figures.image_grid(images, columns=3, padding=0)
    np.testing.assert_array_equal(grid, [[128, 255, 0]])


def test_grid_unused_cells_are_black():
    grid = figures.image_grid(_images(5, 2, 2, value=1.0), columns=3, padding=0)
    assert grid[2:, 4:].max() == 0  # cell (row 1, col 2) is empty
    assert grid[:2, :].min() == 255


def test_grid_rgb_keeps_three_channels():
    images = _images(4, 3, 5, c=3)
    images[..., 0] = 1.0  # pure red
    images[..., 1:] = -1.0
    grid = figures.image_grid(images, columns=2, padding=2)
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
        figures.image_grid(bad)


def test_grid_rejects_bad_layout_args():
    with pytest.raises(ValueError):
        figures.image_grid(_images(), columns=0)
    with pytest.raises(ValueError):
        figures.image_grid(_images(), padding=-1)


# --- save_image_grid --------------------------------------------------------


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_save_image_grid_native_size(tmp_path, channels, mode):
    images = _images(5, 4, 6, c=channels, value=0.5)
    out = figures.save_image_grid(images, tmp_path / "nested" / "grid.png", columns=3)
    _assert_png(out)
    with Image.open(out) as img:
        assert img.size == (26, 14)  # PIL reports (width, height)
        assert img.mode == mode
        np.testing.assert_array_equal(np.asarray(img), figures.image_grid(images, columns=3))
