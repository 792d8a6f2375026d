"""Tests for jaxmed.data.augment: shapes and range, randomness, exact special cases, noise level, jit, validation."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmed.data.augment import AugmentConfig, affine_resample, augment

# Every transform switched off; tests enable the one they exercise with dataclasses.replace.
OFF = AugmentConfig(
    horizontal_flip=False, vertical_flip=False, max_rotation_degrees=0.0, scale_range=(1.0, 1.0),
    max_translation=0.0, noise_std=0.0, brightness=0.0, contrast=0.0,
)


def _images(batch=4, size=32, channels=1, seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.uniform(-1.0, 1.0, (batch, size, size, channels)), dtype)


def _disc_images(batch=4, size=32):
    """A bright off-centre disc on air: asymmetric, so every transform changes it."""
    yy, xx = np.mgrid[:size, :size]
    disc = np.where((yy - size * 0.4) ** 2 + (xx - size * 0.6) ** 2 < (size * 0.25) ** 2, 0.6, -1.0)
    return jnp.asarray(np.broadcast_to(disc[None, :, :, None], (batch, size, size, 1)), jnp.float32)


# --- shape, dtype, range ----------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_dtype_and_range_preserved(dtype, channels):
    config = AugmentConfig(vertical_flip=True, brightness=0.1, contrast=0.2, noise_std=0.1)
    images = _images(channels=channels, dtype=dtype)
    out = augment(jax.random.key(0), images, config)
    assert out.shape == images.shape
    assert out.dtype == images.dtype
    values = np.asarray(out.astype(jnp.float32))
    assert np.all(np.isfinite(values))
    assert values.min() >= -1.0 and values.max() <= 1.0


def test_non_square_images():
    images = _images(batch=2, size=16)[:, :, :12]
    out = augment(jax.random.key(0), images)
    assert out.shape == (2, 16, 12, 1)


# --- randomness ---------------------------------------------------------------


def test_deterministic_for_a_key():
    images = _disc_images()
    a = augment(jax.random.key(7), images)
    b = augment(jax.random.key(7), images)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_raw_uint32_key_accepted():
    out = augment(jax.random.PRNGKey(7), _disc_images())
    assert out.shape == (4, 32, 32, 1)


def test_differs_across_keys():
    images = _disc_images()
    a = np.asarray(augment(jax.random.key(1), images))
    b = np.asarray(augment(jax.random.key(2), images))
    assert not np.allclose(a, b)


def test_differs_across_examples_in_a_batch():
    # Identical inputs: any difference between outputs comes from per-example parameters.
    config = dataclasses.replace(OFF, max_rotation_degrees=10.0)
    out = np.asarray(augment(jax.random.key(3), _disc_images(batch=6), config))
    for i in range(6):
        for j in range(i + 1, 6):
            assert not np.allclose(out[i], out[j]), (i, j)


def test_disabling_one_transform_keeps_the_others_draws():
    # Fixed random streams per transform: adding noise must not change the geometry.
    images = _disc_images()
    geometric = dataclasses.replace(OFF, max_rotation_degrees=10.0, scale_range=(0.9, 1.1))
    noisy = dataclasses.replace(geometric, noise_std=1e-3)
    a = np.asarray(augment(jax.random.key(5), images, geometric))
    b = np.asarray(augment(jax.random.key(5), images, noisy))
    assert np.abs(a - b).max() < 1e-2


# --- exact special cases --------------------------------------------------------


def test_identity_config_returns_input_exactly():
    images = _images()
    out = augment(jax.random.key(0), images, OFF)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(images))
    assert OFF.is_identity


def test_identity_config_does_not_clip():
    # "Unchanged" means unchanged, even for values outside [-1, 1].
    images = 3.0 * _images()
    np.testing.assert_array_equal(np.asarray(augment(jax.random.key(0), images, OFF)), np.asarray(images))


def test_horizontal_flip_with_probability_one_is_jnp_flip():
    images = _images(channels=3)
    config = dataclasses.replace(OFF, horizontal_flip=True, flip_probability=1.0)
    out = augment(jax.random.key(0), images, config)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(jnp.flip(images, axis=2)))


def test_vertical_flip_with_probability_one_is_jnp_flip():
    images = _images()
    config = dataclasses.replace(OFF, vertical_flip=True, flip_probability=1.0)
    out = augment(jax.random.key(0), images, config)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(jnp.flip(images, axis=1)))


def test_flip_probability_zero_and_half():
    images = _images(batch=64, size=8)
    never = dataclasses.replace(OFF, horizontal_flip=True, flip_probability=0.0)
    np.testing.assert_array_equal(np.asarray(augment(jax.random.key(0), images, never)), np.asarray(images))
    half = dataclasses.replace(OFF, horizontal_flip=True, flip_probability=0.5)
    out = np.asarray(augment(jax.random.key(0), images, half))
    flipped = np.all(out == np.asarray(jnp.flip(images, axis=2)), axis=(1, 2, 3))
    unchanged = np.all(out == np.asarray(images), axis=(1, 2, 3))
    assert np.all(flipped ^ unchanged)  # each example is exactly one of the two
    assert 16 <= flipped.sum() <= 48  # Binomial(64, 0.5): mean 32, std 4


def test_affine_rotation_by_90_degrees_matches_rot90_in_interior():
    image = _images(batch=1, size=17, channels=2)[0]
    out = affine_resample(image, math.pi / 2, 1.0, (0.0, 0.0))
    expected = jnp.rot90(image, k=1, axes=(0, 1))
    # cos(pi/2) is ~4e-8 in float32, so the border can pick up a hair of background.
    np.testing.assert_allclose(np.asarray(out)[1:-1, 1:-1], np.asarray(expected)[1:-1, 1:-1], atol=1e-5)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), atol=1e-5)


def test_affine_rotation_is_counter_clockwise_and_minus_90_is_clockwise():
    image = _images(batch=1, size=12)[0]
    out = affine_resample(image, -math.pi / 2, 1.0, (0.0, 0.0))
    np.testing.assert_allclose(np.asarray(out)[1:-1, 1:-1], np.asarray(jnp.rot90(image, k=-1))[1:-1, 1:-1], atol=1e-5)


def test_rotation_config_accepts_90_degrees():
    config = dataclasses.replace(OFF, max_rotation_degrees=90.0)
    out = augment(jax.random.key(0), _disc_images(), config)
    assert out.shape == (4, 32, 32, 1)


def test_affine_identity_parameters_reproduce_image():
    image = _images(batch=1, size=10, channels=3)[0]
    out = affine_resample(image, 0.0, 1.0, (0.0, 0.0))
    np.testing.assert_allclose(np.asarray(out), np.asarray(image), atol=1e-6)


def test_affine_integer_shift_moves_content_and_fills_background():
    image = _images(batch=1, size=10)[0]
    out = np.asarray(affine_resample(image, 0.0, 1.0, (2.0, -3.0)))  # 2 rows down, 3 columns left
    np.testing.assert_allclose(out[2:, :7], np.asarray(image)[:8, 3:], atol=1e-6)
    np.testing.assert_array_equal(out[:2], -1.0)
    np.testing.assert_array_equal(out[:, 7:], -1.0)


def test_affine_zoom_out_fills_corners_with_background_and_keeps_centre():
    image = jnp.full((21, 21, 1), 0.5, jnp.float32)
    out = np.asarray(affine_resample(image, 0.0, 0.5, (0.0, 0.0)))
    assert out[0, 0, 0] == -1.0 and out[-1, -1, 0] == -1.0
    np.testing.assert_allclose(out[10, 10], 0.5)


def test_augment_clips_to_unit_range():
    images = jnp.full((2, 8, 8, 1), 0.99, jnp.float32)
    out = np.asarray(augment(jax.random.key(0), images, dataclasses.replace(OFF, brightness=0.5, noise_std=0.3)))
    assert out.max() <= 1.0 and out.min() >= -1.0
    assert np.any(out == 1.0)


# --- noise and intensity -----------------------------------------------------------


@pytest.mark.parametrize("std", [0.02, 0.1])
def test_noise_std_matches_config(std):
    images = jnp.zeros((8, 64, 64, 1), jnp.float32)  # mid-grey: no clipping at 0 +- 5 std
    out = np.asarray(augment(jax.random.key(0), images, dataclasses.replace(OFF, noise_std=std)))
    assert abs(out.std() - std) < 0.03 * std  # 32768 samples: relative s.e. of the std ~0.4 %
    assert abs(out.mean()) < 0.03 * std


def test_noise_is_independent_across_examples():
    out = np.asarray(augment(jax.random.key(0), jnp.zeros((2, 32, 32, 1)), dataclasses.replace(OFF, noise_std=0.1)))
    assert abs(np.corrcoef(out[0].ravel(), out[1].ravel())[0, 1]) < 0.1


def test_brightness_shifts_each_image_uniformly_within_bound():
    images = jnp.zeros((16, 8, 8, 1), jnp.float32)
    out = np.asarray(augment(jax.random.key(0), images, dataclasses.replace(OFF, brightness=0.2)))
    offsets = out[:, 0, 0, 0]
    np.testing.assert_allclose(out, np.broadcast_to(offsets[:, None, None, None], out.shape))
    assert np.all(np.abs(offsets) <= 0.2) and offsets.std() > 0.02


def test_contrast_scales_about_the_image_mean():
    images = _images(batch=8, size=16) * 0.5
    out = np.asarray(augment(jax.random.key(0), images, dataclasses.replace(OFF, contrast=0.3)))
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), np.asarray(images).mean(axis=(1, 2, 3)), atol=1e-5)
    ratio = out.std(axis=(1, 2, 3)) / np.asarray(images).std(axis=(1, 2, 3))
    assert np.all((ratio >= 0.7 - 1e-4) & (ratio <= 1.3 + 1e-4)) and ratio.std() > 0.01


# --- jit ------------------------------------------------------------------------


def test_jit_compiles_and_matches_eager():
    images = _disc_images()
    config = AugmentConfig(vertical_flip=True, brightness=0.05, contrast=0.1)
    jitted = jax.jit(augment, static_argnames="config")
    out = jitted(jax.random.key(0), images, config)
    eager = augment(jax.random.key(0), images, config)
    np.testing.assert_allclose(np.asarray(out), np.asarray(eager), atol=1e-5)
    # Equal configs hash equal, so a second call with a fresh equal config reuses the compilation.
    jitted(jax.random.key(1), images, AugmentConfig(vertical_flip=True, brightness=0.05, contrast=0.1))
    assert jitted._cache_size() == 1


def test_jit_default_config_and_inside_a_step():
    @jax.jit
    def step(key, images):
        return jnp.mean(augment(key, images))

    assert np.isfinite(float(step(jax.random.key(0), _disc_images())))


def test_config_is_hashable_and_list_scale_range_normalised():
    config = AugmentConfig(scale_range=[0.8, 1.2])
    assert config.scale_range == (0.8, 1.2)
    assert hash(config) == hash(AugmentConfig(scale_range=(0.8, 1.2)))


# --- validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"horizontal_flip": 1},
        {"vertical_flip": "yes"},
        {"flip_probability": 1.5},
        {"flip_probability": -0.1},
        {"max_rotation_degrees": -1.0},
        {"max_rotation_degrees": 200.0},
        {"max_rotation_degrees": float("nan")},
        {"scale_range": (1.1, 0.9)},
        {"scale_range": (0.0, 1.0)},
        {"scale_range": (0.9,)},
        {"scale_range": 1.0},
        {"max_translation": -0.01},
        {"max_translation": 1.0},
        {"noise_std": -0.02},
        {"noise_std": float("inf")},
        {"brightness": -0.1},
        {"brightness": 2.0},
        {"contrast": 1.0},
        {"contrast": True},
    ],
)
def test_invalid_config_raises(kwargs):
    with pytest.raises(ValueError, match="AugmentConfig"):
        AugmentConfig(**kwargs)


def test_invalid_images_raise():
    with pytest.raises(ValueError, match="rank 4"):
        augment(jax.random.key(0), jnp.zeros((8, 8, 1)))
    with pytest.raises(ValueError, match="floating"):
        augment(jax.random.key(0), jnp.zeros((1, 8, 8, 1), jnp.int32))
    with pytest.raises(ValueError, match="AugmentConfig"):
        augment(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), {"noise_std": 0.1})
    with pytest.raises(ValueError, match="rank 3"):
        affine_resample(jnp.zeros((8, 8)), 0.0, 1.0, (0.0, 0.0))
