"""jaxmed.nn.BatchNorm computes nnx.BatchNorm's values, gradients and running statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmed.nn import BatchNorm
from jaxmed.nn.onednn import channel_sums


def layer_pair(features, one_pass_sums=False, **kwargs):
    """The same randomly initialised layer as nnx.BatchNorm and as jaxmed's BatchNorm."""
    reference = nnx.BatchNorm(features, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0), **kwargs)
    rng = np.random.default_rng(1)
    reference.scale[...] = jnp.asarray(rng.normal(1.0, 0.5, features), reference.scale[...].dtype)
    reference.bias[...] = jnp.asarray(rng.normal(0.0, 0.5, features), reference.bias[...].dtype)
    reference.mean[...] = jnp.asarray(rng.normal(0.0, 1.0, features), jnp.float32)
    reference.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, features), jnp.float32)
    fast = BatchNorm(features, momentum=0.9, epsilon=1e-5, one_pass_sums=one_pass_sums, rngs=nnx.Rngs(0), **kwargs)
    nnx.update(fast, nnx.state(reference))
    return reference, fast


def values_gradients_statistics(layer, x, cotangent):
    """Output, gradients w.r.t. input, scale and bias (one vjp), and the updated running statistics."""
    graph, params, stats = nnx.split(layer, nnx.Param, nnx.BatchStat)

    def apply(x, params):
        module = nnx.merge(graph, params, stats, copy=True)
        return module(x), nnx.state(module, nnx.BatchStat)

    y, pullback, new_stats = jax.vjp(apply, x, params, has_aux=True)
    dx, dparams = pullback(cotangent)
    return y, dx, dparams["scale"][...], dparams["bias"][...], new_stats["mean"][...], new_stats["var"][...]


@pytest.mark.parametrize("one_pass_sums", [False, True])
@pytest.mark.parametrize("shape", [(8, 6, 5, 4), (32, 16, 16, 32), *(pytest.param(shape, marks=pytest.mark.slow)
                                                    for shape in [(3, 7, 7, 1), (16, 12), (600, 37)])])
def test_training_mode_equals_nnx_batch_norm(shape, one_pass_sums):
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(0.7, 3.0, shape), jnp.float32)
    cotangent = jnp.asarray(rng.normal(size=shape), jnp.float32)
    reference, fast = layer_pair(shape[-1], one_pass_sums=one_pass_sums)

    want = values_gradients_statistics(reference, x, cotangent)
    got = values_gradients_statistics(fast, x, cotangent)

    for name, g, w in zip(("y", "dx", "dscale", "dbias", "mean", "var"), got, want):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5 * float(jnp.abs(w).max()), err_msg=name)


@pytest.mark.slow
def test_gradient_through_a_following_activation_and_loss_equals_nnx():
    """What the DCGAN does: BatchNorm, LeakyReLU, a scalar loss, gradients of all inputs."""
    x = jax.random.normal(jax.random.key(3), (16, 8, 8, 8)) * 2 + 1
    reference, fast = layer_pair(8)

    def loss(layer, x):
        return jnp.mean(nnx.leaky_relu(layer(x), 0.2) ** 2)

    want_loss, want_grads = nnx.value_and_grad(loss, argnums=(0, 1))(reference, x)
    got_loss, got_grads = nnx.value_and_grad(loss, argnums=(0, 1))(fast, x)

    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
    for got, want in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_bfloat16_computation_keeps_float32_statistics():
    x = jax.random.normal(jax.random.key(4), (8, 4, 4, 16)).astype(jnp.bfloat16)
    reference, fast = layer_pair(16, dtype=jnp.bfloat16)

    want, got = reference(x), fast(x)

    assert got.dtype == jnp.bfloat16 and fast.mean[...].dtype == jnp.float32
    np.testing.assert_allclose(got.astype(jnp.float32), want.astype(jnp.float32), atol=0.05)
    np.testing.assert_allclose(fast.mean[...], reference.mean[...], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast.var[...], reference.var[...], rtol=1e-5, atol=1e-6)


def test_evaluation_mode_uses_the_running_statistics_like_nnx():
    x = jax.random.normal(jax.random.key(5), (4, 3, 3, 6))
    reference, fast = layer_pair(6)
    reference.eval()
    fast.eval()

    np.testing.assert_allclose(fast(x), reference(x), rtol=1e-6, atol=1e-6)
    assert float(jnp.abs(fast(x) - fast(x[:1].repeat(4, axis=0))).max()) > 0  # per-sample, not batch statistics


def test_state_is_nnx_batch_norm_state_so_checkpoints_move_between_them():
    reference, fast = layer_pair(5)

    want = jax.tree.map(lambda a: (a.shape, a.dtype), nnx.state(reference))
    got = jax.tree.map(lambda a: (a.shape, a.dtype), nnx.state(fast))

    assert got == want


def test_channel_sums_equal_numpy():
    """The one-pass custom call (jaxmed.nn.onednn.channel_sums): both sums, channels not a multiple of 16."""
    rng = np.random.default_rng(4)
    a, b = (rng.normal(0.5, 2.0, (7, 33, 5, 37)).astype(np.float32) for _ in range(2))
    total, total_of_products = jax.jit(channel_sums)(a, b)
    np.testing.assert_allclose(total, a.astype(np.float64).sum((0, 1, 2)), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(total_of_products, (a.astype(np.float64) * b).sum((0, 1, 2)), rtol=1e-5, atol=1e-3)
