"""Tests for jaxmed.metrics.pixels: the pixel-histogram Wasserstein distance."""

import numpy as np
import pytest

from jaxmed.metrics import pixels


def _images(n=5, h=4, w=6, c=1, value=0.0):
    return np.full((n, h, w, c), value, dtype=np.float32)


def _gaussian_images(mean, *, seed, n=8, size=16, std=0.2):
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(mean, std, size=(n, size, size, 1)), -1.0, 1.0)


def test_distance_zero_for_identical():
    a = _gaussian_images(0.0, seed=0)
    assert pixels.pixel_histogram_distance(a, a.copy()) == 0.0


def test_distance_positive_monotone_and_symmetric():
    real = _gaussian_images(0.0, seed=0)
    near = _gaussian_images(0.1, seed=1)
    far = _gaussian_images(0.5, seed=2)
    d_near = pixels.pixel_histogram_distance(real, near)
    d_far = pixels.pixel_histogram_distance(real, far)
    assert 0.0 < d_near < d_far
    assert pixels.pixel_histogram_distance(near, real) == d_near
    # W1 of a pure shift is the shift (up to binning and sampling noise).
    assert d_far == pytest.approx(0.5, abs=0.05)


def test_distance_of_point_masses_at_the_extremes():
    # All mass moves from the first bin's centre to the last bin's: 2 - 2/bins.
    d = pixels.pixel_histogram_distance(_images(value=-1.0), _images(value=1.0), bins=64)
    assert d == pytest.approx(2.0 - 2.0 / 64)


def test_distance_allows_different_batch_and_image_sizes():
    d = pixels.pixel_histogram_distance(_images(2, 4, 4), _images(3, 8, 6))
    assert d == 0.0


@pytest.mark.parametrize(
    "real, generated",
    [
        (np.zeros((0, 4, 4, 1)), np.zeros((2, 4, 4, 1))),  # empty
        (np.zeros((2, 4, 4, 1)), np.zeros((2, 4, 4, 3))),  # channel mismatch
        (np.zeros((2, 4, 4)), np.zeros((2, 4, 4))),  # rank 3
    ],
)
def test_distance_rejects_bad_input(real, generated):
    with pytest.raises(ValueError):
        pixels.pixel_histogram_distance(real, generated)


def test_distance_rejects_bad_bins():
    with pytest.raises(ValueError):
        pixels.pixel_histogram_distance(_images(), _images(), bins=0)
