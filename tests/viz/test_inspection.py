"""Tests for jaxmed.viz.inspection: the example montage of `jaxmed data inspect`."""

import numpy as np
from PIL import Image

import jaxmed.data
from jaxmed.viz import figures, inspection


def test_montage_has_one_row_per_class(tmp_path, monkeypatch):
    dataset = jaxmed.data.load("phantom:brain", 16, n=16, seed=7)
    tiles = []
    original = figures.image_grid

    def spy(images, **kwargs):
        tiles.append((np.asarray(images), kwargs))
        return original(images, **kwargs)

    monkeypatch.setattr(figures, "image_grid", spy)
    path = inspection.save_montage(dataset, tmp_path / "plots" / "montage.png", per_class=3)
    [(images, kwargs)] = tiles
    assert kwargs["columns"] == 3 and images.shape == (6, 16, 16, 1)
    for row, label in enumerate((0, 1)):
        for tile in images[3 * row:3 * row + 3]:
            assert any(np.array_equal(tile, candidate) for candidate in dataset.images[dataset.labels == label])
    with Image.open(path) as montage:
        assert montage.format == "PNG" and montage.width > montage.height > 100

    # A class with fewer examples than columns leaves its row's remaining tiles black.
    tiles.clear()
    small = dataset._replace(images=dataset.images[:6], labels=np.array([0, 0, 0, 0, 0, 1], np.int32))
    inspection.save_montage(small, tmp_path / "small.png", per_class=3)
    assert np.all(tiles[0][0][4:] == -1.0) and not np.all(tiles[0][0][3] == -1.0)
