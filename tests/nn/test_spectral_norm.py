"""SpectralNorm: the estimate against numpy's SVD, modes, gradients and the split/merge round trip."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmed.nn.spectral_norm import SpectralNorm, SpectralVector


def random_linear(fan_in=6, out=4, seed=0, use_bias=True):
    layer = nnx.Linear(fan_in, out, use_bias=use_bias, rngs=nnx.Rngs(seed))
    layer.kernel[...] = jnp.asarray(np.random.default_rng(seed).normal(size=(fan_in, out)) * 3, jnp.float32)
    return layer


def largest_singular_value(matrix):
    return np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)[0]


def test_estimate_converges_to_the_largest_singular_value():
    wrapped = SpectralNorm(random_linear(), rngs=nnx.Rngs(1))
    first = float(wrapped.sigma(update=True))
    for _ in range(60):
        estimate = float(wrapped.sigma(update=True))
    expected = largest_singular_value(wrapped.layer.kernel[...])
    assert estimate == pytest.approx(expected, rel=1e-4)
    assert first <= expected * (1 + 1e-5)  # v^T W u never exceeds sigma_max


def test_normalised_linear_has_spectral_norm_one():
    wrapped = SpectralNorm(random_linear(use_bias=False), rngs=nnx.Rngs(1), n_steps=60)
    effective = wrapped(jnp.eye(6))  # rows of W / sigma
    assert largest_singular_value(effective) == pytest.approx(1.0, rel=1e-4)


@pytest.mark.slow
def test_normalised_conv_is_the_conv_of_the_normalised_kernel():
    conv = nnx.Conv(3, 5, kernel_size=(3, 3), padding="SAME", rngs=nnx.Rngs(0))
    conv.bias[...] = jnp.arange(5.0)
    wrapped = SpectralNorm(conv, rngs=nnx.Rngs(1), n_steps=80)
    x = jax.random.normal(jax.random.key(2), (2, 6, 6, 3))
    y = wrapped(x)
    sigma = largest_singular_value(conv.kernel[...].reshape(-1, 5))
    reference = jax.lax.conv_general_dilated(x, conv.kernel[...] / sigma, (1, 1), "SAME",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
    reference = reference + conv.bias[...][None, None, None]
    np.testing.assert_allclose(y, reference, rtol=1e-4, atol=1e-5)


def test_u_is_updated_in_train_mode_and_frozen_in_eval_mode():
    wrapped = SpectralNorm(random_linear(), rngs=nnx.Rngs(1))
    x = jnp.ones((2, 6))
    before = np.asarray(wrapped.u[...])
    wrapped(x)
    trained = np.asarray(wrapped.u[...])
    assert not np.allclose(before, trained)
    wrapped.eval()
    first = wrapped(x)
    np.testing.assert_array_equal(wrapped.u[...], trained)
    np.testing.assert_array_equal(wrapped(x), first)
    wrapped.train()
    wrapped(x)
    assert not np.allclose(wrapped.u[...], trained)


def test_no_gradient_flows_through_u():
    """d/dW of x W / (v^T W u) with u, v constants: x (I/sigma - W v u^T / sigma^2) summed over outputs."""
    wrapped = SpectralNorm(random_linear(use_bias=False), rngs=nnx.Rngs(1))
    wrapped.eval()
    x = jnp.asarray(np.random.default_rng(3).normal(size=(1, 6)), jnp.float32)
    graph, params, stats = nnx.split(wrapped, nnx.Param, nnx.BatchStat)

    def loss(params):
        return jnp.sum(nnx.merge(graph, params, stats, copy=True)(x))

    gradient = np.asarray(jax.grad(loss)(params)["layer"]["kernel"][...], np.float64)
    kernel = np.asarray(wrapped.layer.kernel[...], np.float64)
    u = np.asarray(wrapped.u[...], np.float64)
    v = kernel @ u / np.linalg.norm(kernel @ u)
    sigma = v @ kernel @ u
    x_np = np.asarray(x, np.float64)[0]
    expected = np.outer(x_np, np.ones(4)) / sigma - (x_np @ kernel).sum() / sigma**2 * np.outer(v, u)
    np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-5)


def test_u_is_a_batch_stat_and_round_trips_through_split_and_merge():
    wrapped = SpectralNorm(random_linear(), rngs=nnx.Rngs(1))
    x = jnp.ones((2, 6))
    graph, params, stats = nnx.split(wrapped, nnx.Param, nnx.BatchStat)
    assert {path for path, _ in nnx.to_flat_state(params)} == {("layer", "kernel"), ("layer", "bias")}
    assert isinstance(stats["u"], SpectralVector)
    assert len(jax.tree.leaves(nnx.state(wrapped, SpectralVector))) == 1

    def step(params, stats):
        module = nnx.merge(graph, params, stats, copy=True)
        return module(x), nnx.state(module, nnx.BatchStat)

    y, new_stats = jax.jit(step)(params, stats)
    np.testing.assert_allclose(y, wrapped(x), rtol=1e-6)  # the same single power iteration
    np.testing.assert_allclose(new_stats["u"][...], wrapped.u[...], rtol=1e-6)
    restored = nnx.merge(graph, params, new_stats)
    np.testing.assert_array_equal(restored.u[...], new_stats["u"][...])


def test_a_layer_without_kernel_is_rejected():
    with pytest.raises(TypeError, match="kernel"):
        SpectralNorm(nnx.BatchNorm(3, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(0))
