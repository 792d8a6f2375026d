"""jaxmed.nn.GroupNorm computes nnx.GroupNorm's values and gradients, with XLA's sums or the one-pass kernel."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmed.nn import GroupNorm
from jaxmed.nn.onednn import image_channel_sums

ONE_PASS = [False, pytest.param(True, marks=pytest.mark.onednn)]


def layer_pair(features, groups, one_pass_sums=False):
    """The same randomly initialised layer as nnx.GroupNorm and as jaxmed's GroupNorm."""
    reference = nnx.GroupNorm(features, num_groups=groups, epsilon=1e-5, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    reference.scale[...] = jnp.asarray(rng.normal(1.0, 0.5, features), jnp.float32)
    reference.bias[...] = jnp.asarray(rng.normal(0.0, 0.5, features), jnp.float32)
    fast = GroupNorm(features, num_groups=groups, epsilon=1e-5, one_pass_sums=one_pass_sums, rngs=nnx.Rngs(0))
    nnx.update(fast, nnx.state(reference))
    return reference, fast


def values_and_gradients(layer, x, cotangent):
    """Output and the gradients w.r.t. input, scale and bias (one vjp)."""
    graph, params = nnx.split(layer)

    def apply(x, params):
        return nnx.merge(graph, params)(x)

    y, pullback = jax.vjp(jax.jit(apply), x, params)
    dx, dparams = pullback(cotangent)
    return y, dx, dparams["scale"][...], dparams["bias"][...]


@pytest.mark.parametrize("one_pass_sums", ONE_PASS)
@pytest.mark.parametrize(("shape", "groups"), [((4, 6, 5, 8), 4), ((2, 7, 7, 6), 3), ((3, 10), 2), ((2, 4, 4, 5), 5)])
def test_values_and_gradients_equal_nnx_group_norm(shape, groups, one_pass_sums):
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(0.7, 3.0, shape), jnp.float32)
    cotangent = jnp.asarray(rng.normal(size=shape), jnp.float32)
    reference, fast = layer_pair(shape[-1], groups, one_pass_sums)

    want = values_and_gradients(reference, x, cotangent)
    got = values_and_gradients(fast, x, cotangent)

    for name, g, w in zip(("y", "dx", "dscale", "dbias"), got, want):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5 * float(jnp.abs(w).max()), err_msg=name)


def test_a_mask_goes_to_nnx_group_norm():
    reference, fast = layer_pair(4, 2)
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 3, 3, 4)), jnp.float32)
    mask = jnp.arange(x.size).reshape(x.shape) % 3 > 0

    np.testing.assert_allclose(fast(x, mask=mask), reference(x, mask=mask), rtol=1e-6, atol=1e-6)


@pytest.mark.onednn
def test_image_channel_sums_equal_numpy():
    """The per-image form of the one-pass custom call: both sums, channels not a multiple of 16."""
    rng = np.random.default_rng(4)
    a, b = (rng.normal(0.5, 2.0, (5, 9, 7, 37)).astype(np.float32) for _ in range(2))
    total, total_of_products = jax.jit(image_channel_sums)(a, b)
    np.testing.assert_allclose(total, a.astype(np.float64).sum((1, 2)), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(total_of_products, (a.astype(np.float64) * b).sum((1, 2)), rtol=1e-5, atol=1e-3)
