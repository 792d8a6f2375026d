"""DiffAugment: shape, determinism per key, probability p, gradients; the ADA controller."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmed.errors import UsageError
from jaxmed.nn.ada import real_sign_mean, update_probability
from jaxmed.nn.diffaugment import augment


def images(shape=(6, 16, 16, 3), seed=0):
    return jax.random.uniform(jax.random.key(seed), shape, jnp.float32, -1.0, 1.0)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_and_dtype_are_kept(dtype, channels):
    x = images((4, 16, 8, channels)).astype(dtype)
    y = augment(x, jax.random.key(1))
    assert y.shape == x.shape and y.dtype == dtype


def test_p_zero_is_identity():
    x = images()
    np.testing.assert_array_equal(augment(x, jax.random.key(1), 0.0), x)


@pytest.mark.parametrize("policy", [("color",), ("translation",), ("cutout",), ("color", "translation", "cutout")])
def test_p_one_changes_every_sample(policy):
    x = images((16, 16, 16, 1), seed=3)
    y = augment(x, jax.random.key(2), 1.0, policy)
    changed = np.abs(np.asarray(y - x)).reshape(16, -1).max(axis=1) > 0
    if policy == ("translation",):
        # A zero shift on both axes is one of the 5 x 5 outcomes; allow it, but not often.
        assert changed.sum() >= 12
    else:
        assert changed.all()


def test_p_half_augments_some_samples_only():
    x = images((64, 8, 8, 1))
    y = augment(x, jax.random.key(5), 0.5, ("cutout",))
    changed = np.abs(np.asarray(y - x)).reshape(64, -1).max(axis=1) > 0
    assert 10 < changed.sum() < 54


def test_same_key_same_geometric_transform_on_different_batches():
    """Translation and cutout move or blank the same pixel positions whatever the images hold."""
    x, y = images(seed=0), images(seed=1)
    key = jax.random.key(7)
    policy = ("translation", "cutout")
    # Linear in the images for a fixed key (fill 0): the transforms of x, y and x + 2y agree.
    np.testing.assert_allclose(augment(x + 2 * y, key, 1.0, policy),
                               augment(x, key, 1.0, policy) + 2 * augment(y, key, 1.0, policy), atol=1e-6)
    # Pixel positions: an image of pixel indices maps to where each output pixel came from.
    index = jnp.broadcast_to(jnp.arange(1.0, 16 * 16 + 1).reshape(1, 16, 16, 1), (6, 16, 16, 3))
    moved = augment(index, key, 1.0, policy)
    np.testing.assert_array_equal(augment(index + 0.0, key, 1.0, policy), moved)
    assert not np.array_equal(augment(index, jax.random.key(8), 1.0, policy), moved)
    source = np.asarray(moved[..., 0]).astype(int) - 1  # -1 where filled
    x_np = np.asarray(x).reshape(6, 256, 3)
    expected = np.where(source[..., None] >= 0, np.take_along_axis(x_np, np.maximum(source, 0).reshape(6, 256, 1),
                                                                   axis=1).reshape(6, 16, 16, 3), 0.0)
    np.testing.assert_allclose(augment(x, key, 1.0, policy), expected, atol=1e-6)


@pytest.mark.slow
def test_translation_shifts_by_at_most_an_eighth_and_keeps_the_content():
    x = images((32, 16, 16, 1))
    y = np.asarray(augment(x, jax.random.key(4), 1.0, ("translation",)))
    x = np.asarray(x)
    for sample in range(32):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.allclose(y[sample, 2:-2, 2:-2], x[sample, 2 + dy:14 + dy, 2 + dx:14 + dx])]
        assert len(matches) == 1


def test_cutout_blanks_a_quarter_of_the_area_at_most():
    x = images((32, 16, 16, 1)) * 0.5 + 0.6  # never 0, so zeros are cut out
    y = np.asarray(augment(x, jax.random.key(4), 1.0, ("cutout",)))
    blanked = (y == 0).reshape(32, -1).sum(axis=1)
    assert blanked.max() == 64 and blanked.min() > 0  # an 8 x 8 square, clipped at the border


@pytest.mark.parametrize("channels", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_gradient_matches_finite_differences(channels):
    x = images((2, 8, 8, channels), seed=2)
    key = jax.random.key(9)
    weights = images((2, 8, 8, channels), seed=3)

    def scalar(x):
        return jnp.sum(weights * augment(x, key, 1.0) ** 2)

    gradient = np.asarray(jax.grad(scalar)(x))
    assert np.abs(gradient).max() > 0
    rng = np.random.default_rng(0)
    for _ in range(6):
        direction = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
        epsilon = 1e-2
        numeric = (scalar(x + epsilon * direction) - scalar(x - epsilon * direction)) / (2 * epsilon)
        np.testing.assert_allclose(np.sum(gradient * np.asarray(direction)), numeric, rtol=2e-2, atol=2e-3)


def test_jit_with_traced_probability():
    x = images()
    jitted = jax.jit(augment, static_argnames="policy")
    np.testing.assert_array_equal(jitted(x, jax.random.key(1), jnp.float32(0.0)), x)
    np.testing.assert_allclose(jitted(x, jax.random.key(1), jnp.float32(1.0)), augment(x, jax.random.key(1), 1.0),
                               atol=1e-6)


def test_bad_policy_and_input_are_rejected():
    with pytest.raises(UsageError, match="'rotation' is unknown"):
        augment(images(), jax.random.key(0), 1.0, ("rotation",))
    with pytest.raises(UsageError, match=r"\(B, H, W, C\)"):
        augment(jnp.zeros((16, 16, 1)), jax.random.key(0))


def test_ada_probability_moves_towards_the_target_from_both_sides():
    """Overfitting D (r_t above 0.6) raises p, underfitting lowers it."""
    assert float(real_sign_mean(jnp.array([3.0, 2.0, 1.0, 4.0, -1.0]))) == pytest.approx(0.6)
    step = 64 / 500_000  # 64 images of the 500k that take p from 0 to 1
    assert float(update_probability(0.2, 0.9, 64)) == pytest.approx(0.2 + step)
    assert float(update_probability(0.2, 0.1, 64)) == pytest.approx(0.2 - step)
    assert float(update_probability(0.2, 0.6, 64)) == pytest.approx(0.2)
    assert float(update_probability(0.2, 0.9, 64, images_to_full=640)) == pytest.approx(0.3)


def test_ada_probability_is_clipped_and_crosses_zero_to_one_in_images_to_full():
    p = jnp.float32(0.0)
    for _ in range(10):
        p = update_probability(p, 1.0, 100, images_to_full=1000)
    assert float(p) == pytest.approx(1.0)
    assert float(update_probability(p, 1.0, 100, images_to_full=1000)) == 1.0
    assert float(update_probability(0.01, -1.0, 100, images_to_full=1000)) == 0.0
    assert float(jax.jit(update_probability)(0.5, 0.7, 32)) > 0.5
