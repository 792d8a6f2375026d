"""jaxmed.nn.max_pool computes nnx.max_pool's values and gradients (inputs without ties)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmed.nn import MaxPool, max_pool


def distinct_values(shape, seed=0):
    """Every value different, so the maximum of each window is unique (no tie-breaking)."""
    values = np.random.default_rng(seed).permutation(np.prod(shape)).astype(np.float32)
    return jnp.asarray(values.reshape(shape) / values.size - 0.5)


@pytest.mark.parametrize(("shape", "window", "strides", "padding"), [
    ((2, 8, 8, 3), (2, 2), (2, 2), "VALID"),
    ((2, 9, 7, 3), (2, 2), (2, 2), "VALID"),        # odd sizes: the last row/column is dropped
    ((2, 16, 16, 4), (3, 3), (2, 2), ((1, 1), (1, 1))),  # ResNet's stem pool
    ((1, 11, 10, 2), (3, 3), (2, 2), "SAME"),
    ((1, 6, 6, 1), (3, 2), (1, 2), "VALID"),        # overlapping along one axis only
])
def test_values_and_gradients_equal_nnx_max_pool(shape, window, strides, padding):
    x = distinct_values(shape)
    cotangent = distinct_values(nnx.max_pool(x, window, strides=strides, padding=padding).shape, seed=1)

    def pooled_and_gradient(pool):
        y, pullback = jax.vjp(pool, x)
        return y, pullback(cotangent)[0]

    want_y, want_dx = pooled_and_gradient(lambda v: nnx.max_pool(v, window, strides=strides, padding=padding))
    got_y, got_dx = pooled_and_gradient(lambda v: max_pool(v, window, strides, padding))

    np.testing.assert_array_equal(got_y, want_y)
    np.testing.assert_array_equal(got_dx, want_dx)


def test_padding_never_wins_even_when_every_value_is_negative():
    x = -1.0 - distinct_values((1, 4, 4, 1)) ** 2

    pooled = max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))

    assert pooled.shape == (1, 2, 2, 1) and bool(jnp.all(pooled < -0.5))


def test_the_layer_is_the_function_and_keeps_bfloat16():
    x = distinct_values((2, 8, 8, 2)).astype(jnp.bfloat16)
    layer = MaxPool((2, 2), (2, 2))

    assert layer(x).dtype == jnp.bfloat16
    np.testing.assert_array_equal(layer(x), max_pool(x, (2, 2), (2, 2)))
    assert not jax.tree.leaves(nnx.state(layer))  # no parameters, nothing in checkpoints
