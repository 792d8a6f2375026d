"""Tests for jaxmed.data.preprocess."""

import numpy as np
import pytest

from jaxmed.data.preprocess import (
    from_model_range,
    preprocess,
    resize,
    to_grayscale,
    to_model_range,
)


# --- to_model_range / from_model_range -------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "top"),
    [(np.uint8, 255), (np.uint16, 65535)],
)
def test_to_model_range_integer_uses_full_dtype_range(dtype, top):
    images = np.array([[0, top // 2, top]], dtype=dtype)
    out = to_model_range(images)
    assert out.dtype == np.float32
    assert out.shape == images.shape
    np.testing.assert_allclose(out, [[-1.0, (top // 2) / top * 2 - 1, 1.0]], atol=1e-6)


def test_to_model_range_float_in_unit_interval():
    images = np.array([0.0, 0.25, 1.0], dtype=np.float64)
    out = to_model_range(images)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [-1.0, -0.5, 1.0], atol=1e-7)


def test_to_model_range_intensity_range_clips_and_scales():
    # A CT-style window on int16 Hounsfield units: the range overrides the dtype range.
    images = np.array([-2000, -1000, 0, 500, 3000], dtype=np.int16)
    out = to_model_range(images, intensity_range=(-1000, 1000))
    np.testing.assert_allclose(out, [-1.0, -1.0, 0.0, 0.5, 1.0], atol=1e-6)
    floats = np.array([-5.0, 5.0, 15.0, 30.0])
    np.testing.assert_allclose(to_model_range(floats, (5.0, 15.0)), [-1.0, -1.0, 1.0, 1.0], atol=1e-6)


def test_to_model_range_float_out_of_range_names_min_max():
    with pytest.raises(ValueError, match=r"\[-3, 7\].*intensity_range"):
        to_model_range(np.array([-3.0, 0.0, 7.0], dtype=np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_to_model_range_rejects_non_finite(bad):
    with pytest.raises(ValueError, match="NaN or infinite"):
        to_model_range(np.array([0.0, bad, 0.5], dtype=np.float32))


def test_to_model_range_rejects_bad_intensity_range_and_empty():
    with pytest.raises(ValueError, match="lo < hi"):
        to_model_range(np.zeros(3), intensity_range=(1.0, 1.0))
    with pytest.raises(ValueError, match="empty"):
        to_model_range(np.zeros((0, 4, 4), dtype=np.uint8))


def test_from_model_range_inverts_to_model_range_and_clips():
    rng = np.random.default_rng(0)
    images = rng.random((3, 5, 5, 1)).astype(np.float32)
    back = from_model_range(to_model_range(images))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, images, atol=1e-6)
    np.testing.assert_array_equal(from_model_range(np.array([-1.5, 1.5])), [0.0, 1.0])


# --- to_grayscale ------------------------------------------------------------------------


def test_to_grayscale_uses_bt601_weights():
    pixel = np.array([200.0, 100.0, 50.0], dtype=np.float32).reshape(1, 1, 1, 3)
    out = to_grayscale(pixel)
    assert out.shape == (1, 1, 1, 1)
    assert out.dtype == np.float32
    # 0.299*200 + 0.587*100 + 0.114*50 = 59.8 + 58.7 + 5.7
    np.testing.assert_allclose(out[0, 0, 0, 0], 124.2, rtol=1e-6)


def test_to_grayscale_rgba_drops_alpha():
    rgb = np.random.default_rng(1).random((2, 4, 4, 3)).astype(np.float32)
    alpha_a = np.concatenate([rgb, np.zeros((2, 4, 4, 1), np.float32)], axis=-1)
    alpha_b = np.concatenate([rgb, np.ones((2, 4, 4, 1), np.float32)], axis=-1)
    expected = to_grayscale(rgb)
    np.testing.assert_allclose(to_grayscale(alpha_a), expected, rtol=1e-6)
    np.testing.assert_allclose(to_grayscale(alpha_b), expected, rtol=1e-6)


def test_to_grayscale_adds_channel_axis_to_rank3():
    images = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    out = to_grayscale(images)
    assert out.shape == (2, 3, 3, 1)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], images)


@pytest.mark.parametrize(
    ("shape", "match"),
    [((4, 4), "rank 3 or 4"), ((1, 4, 4, 2), "channel count 2"), ((1, 2, 4, 4, 1), "rank 3 or 4")],
)
def test_to_grayscale_rejects_bad_shapes(shape, match):
    with pytest.raises(ValueError, match=match):
        to_grayscale(np.zeros(shape, dtype=np.float32))


# --- resize ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_hw", "size"),
    [((8, 8), 16), ((16, 16), 5), ((12, 7), 9), ((7, 12), 4)],
    ids=["up", "down", "non-square-tall", "non-square-wide"],
)
def test_resize_output_shape(in_hw, size):
    images = np.random.default_rng(2).random((3, *in_hw, 2)).astype(np.float32)
    out = resize(images, size)
    assert out.shape == (3, size, size, 2)
    assert out.dtype == np.float32


@pytest.mark.parametrize("size", [3, 20])
def test_resize_constant_image_stays_constant(size):
    images = np.full((2, 10, 6, 1), 0.3, dtype=np.float32)
    images[1] = -0.7
    out = resize(images, size)
    np.testing.assert_allclose(out[0], 0.3, atol=1e-6)
    np.testing.assert_allclose(out[1], -0.7, atol=1e-6)


def test_resize_is_per_image_and_per_channel():
    # Channels and images must not be mixed up by the per-plane loop.
    images = np.zeros((2, 6, 6, 3), dtype=np.float32)
    images[0, ..., 1] = 1.0
    images[1, ..., 2] = -1.0
    out = resize(images, 4)
    np.testing.assert_allclose(out[0, ..., 1], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[1, ..., 2], -1.0, atol=1e-6)
    np.testing.assert_allclose(out[0, ..., [0, 2]], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[1, ..., [0, 1]], 0.0, atol=1e-6)


def test_resize_same_size_returns_equal_copy():
    images = np.random.default_rng(3).random((2, 5, 5, 1)).astype(np.float32)
    out = resize(images, 5)
    np.testing.assert_array_equal(out, images)
    out[0, 0, 0, 0] = 42.0
    assert images[0, 0, 0, 0] != 42.0


def test_resize_downscale_antialiases():
    # A 1-pixel checkerboard averages to ~0.5 when downscaled with antialiasing;
    # plain point-sampling bicubic would return values near 0 or 1.
    board = (np.indices((32, 32)).sum(axis=0) % 2).astype(np.float32)[None, ..., None]
    out = resize(board, 4)
    np.testing.assert_allclose(out, 0.5, atol=0.05)


@pytest.mark.parametrize(
    ("images", "size", "match"),
    [
        (np.zeros((4, 4, 1), np.float32), 2, "rank 4"),
        (np.zeros((1, 4, 4, 1), np.float32), 0, "at least 1"),
        (np.zeros((0, 4, 4, 1), np.float32), 2, "empty"),
        (np.full((1, 4, 4, 1), np.nan, np.float32), 2, "NaN"),
    ],
)
def test_resize_rejects_bad_input(images, size, match):
    with pytest.raises(ValueError, match=match):
        resize(images, size)


# --- preprocess --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("images", "kwargs"),
    [
        (np.random.default_rng(4).integers(0, 256, (3, 12, 10), dtype=np.uint8), {}),
        (np.random.default_rng(5).integers(0, 65536, (3, 20, 20, 1), dtype=np.uint16), {}),
        (np.random.default_rng(6).integers(0, 256, (3, 9, 9, 3), dtype=np.uint8), {}),
        (np.random.default_rng(7).random((3, 6, 6, 4)), {}),
        (np.random.default_rng(8).normal(0, 500, (3, 16, 16)), {"intensity_range": (-1000, 1000)}),
    ],
    ids=["uint8-gray-rank3", "uint16-gray", "uint8-rgb", "float-rgba", "float-hu-window"],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_preprocess_shape_dtype_range(images, kwargs, channels):
    out = preprocess(images, image_size=8, channels=channels, **kwargs)
    assert out.shape == (3, 8, 8, channels)
    assert out.dtype == np.float32
    assert out.min() >= -1.0
    assert out.max() <= 1.0
    assert out.std() > 0.0  # the data was not collapsed to a constant


def test_preprocess_clips_bicubic_overshoot():
    # A hard black/white edge upscaled with bicubic overshoots; the output must stay in range.
    images = np.zeros((1, 4, 4), dtype=np.uint8)
    images[:, :, 2:] = 255
    assert resize(to_model_range(images)[..., None], 16).max() > 1.0  # the premise: overshoot happens
    out = preprocess(images, image_size=16)
    assert out.min() >= -1.0
    assert out.max() <= 1.0


def test_preprocess_gray_to_three_channels_replicates():
    images = np.random.default_rng(9).integers(0, 256, (2, 8, 8, 1), dtype=np.uint8)
    out = preprocess(images, image_size=8, channels=3)
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_allclose(out[..., 0], images[..., 0] / 255 * 2 - 1, atol=1e-6)


def test_preprocess_rgb_to_gray_matches_luma():
    images = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    images[...] = (255, 0, 0)
    out = preprocess(images, image_size=2, channels=1)
    np.testing.assert_allclose(out, 0.299 * 2 - 1, atol=1e-6)


@pytest.mark.parametrize(
    ("images", "kwargs", "match"),
    [
        (np.zeros((8, 8), np.uint8), {}, "rank 3 or 4"),
        (np.zeros((1, 8, 8, 2), np.uint8), {}, "channel count 2"),
        (np.zeros((1, 8, 8, 1), np.uint8), {"channels": 2}, "channels must be 1 or 3"),
        (np.zeros((1, 8, 8, 1), np.uint8), {"image_size": 0}, "at least 1"),
        (np.zeros((0, 8, 8), np.uint8), {}, "empty"),
        (np.full((1, 8, 8), 2.0), {}, "intensity_range"),
        (np.full((1, 8, 8), np.inf), {}, "NaN or infinite"),
    ],
)
def test_preprocess_rejects_bad_input(images, kwargs, match):
    kwargs = {"image_size": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        preprocess(images, **kwargs)
