"""jaxmed.nn.max_pool computes nnx.max_pool's values and gradients (inputs without ties), on XLA and in the kernel."""

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
@pytest.mark.parametrize("use_kernel", [False, pytest.param(True, marks=pytest.mark.onednn)])
def test_values_and_gradients_equal_nnx_max_pool(shape, window, strides, padding, use_kernel):
    x = distinct_values(shape)
    cotangent = distinct_values(nnx.max_pool(x, window, strides=strides, padding=padding).shape, seed=1)

    def pooled_and_gradient(pool):
        y, pullback = jax.vjp(pool, x)
        return y, pullback(cotangent)[0]

    want_y, want_dx = pooled_and_gradient(lambda v: nnx.max_pool(v, window, strides=strides, padding=padding))
    got_y, got_dx = pooled_and_gradient(jax.jit(lambda v: max_pool(v, window, strides, padding, use_kernel)))

    np.testing.assert_array_equal(got_y, want_y)
    np.testing.assert_array_equal(got_dx, want_dx)


@pytest.mark.parametrize("use_kernel", [False, pytest.param(True, marks=pytest.mark.onednn)])
def test_padding_never_wins_even_when_every_value_is_negative(use_kernel):
    x = -1.0 - distinct_values((1, 4, 4, 1)) ** 2

    pooled = max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)), use_kernel)

    assert pooled.shape == (1, 2, 2, 1) and bool(jnp.all(pooled < -0.5))


def test_the_layer_is_the_function_and_keeps_bfloat16():
    x = distinct_values((2, 8, 8, 2)).astype(jnp.bfloat16)
    layer = MaxPool((2, 2), (2, 2))

    assert layer(x).dtype == jnp.bfloat16
    np.testing.assert_array_equal(layer(x), max_pool(x, (2, 2), (2, 2)))
    assert not jax.tree.leaves(nnx.state(layer))  # no parameters, nothing in checkpoints


@pytest.mark.onednn
def test_the_kernel_gives_a_tie_all_of_its_gradient_at_the_first_position():
    """Row-major first in the window, as `reduce_window` does; overlapping windows add up."""
    x = jnp.zeros((1, 3, 3, 2), jnp.float32).at[0, 0, 1, 0].set(1.0)  # channel 1: all tied at 0
    dx = jax.grad(lambda v: max_pool(v, (2, 2), (1, 1), "VALID", use_kernel=True).sum())(x)

    want = np.zeros((3, 3, 2), np.float32)
    want[0, 1, 0] = 2.0                     # the maximum of channel 0 in both top windows
    want[1, 0, 0] = want[1, 1, 0] = 1.0     # bottom windows: the first of four zeros
    want[0, 0, 1], want[0, 1, 1], want[1, 0, 1], want[1, 1, 1] = 1.0, 1.0, 1.0, 1.0  # each window's first
    np.testing.assert_array_equal(dx[0], want)


@pytest.mark.onednn
def test_cases_the_kernel_does_not_take_stay_on_xla():
    x = distinct_values((1, 6, 6, 2)).astype(jnp.bfloat16)

    np.testing.assert_array_equal(max_pool(x, (2, 2), (2, 2), "VALID", use_kernel=True),
                                  nnx.max_pool(x, (2, 2), strides=(2, 2), padding="VALID"))
