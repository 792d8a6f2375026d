"""ConditionalBatchNorm against BatchNorm and its per-class affine; the projection head's formula."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmed.errors import UsageError
from jaxmed.nn import BatchNorm
from jaxmed.nn.conditional_batch_norm import ConditionalBatchNorm
from jaxmed.nn.projection import ProjectionHead
from jaxmed.nn.spectral_norm import SpectralVector

X = jax.random.normal(jax.random.key(0), (4, 3, 3, 5)) * 2 + 1
LABELS = jnp.array([0, 2, 1, 2])


def test_fresh_layer_is_plain_batch_norm_in_both_modes():
    conditional = ConditionalBatchNorm(5, 3, rngs=nnx.Rngs(0))
    plain = BatchNorm(5, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(conditional(X, LABELS), plain(X), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(conditional.mean[...], plain.mean[...], rtol=1e-6)
    np.testing.assert_allclose(conditional.var[...], plain.var[...], rtol=1e-6)
    conditional.eval()
    plain.eval()
    np.testing.assert_allclose(conditional(X, LABELS), plain(X), rtol=1e-5, atol=1e-5)


def test_each_row_gets_its_class_gain_and_bias():
    layer = ConditionalBatchNorm(5, 3, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    gain, bias = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    layer.class_gain[...] = jnp.asarray(gain, jnp.float32)
    layer.class_bias[...] = jnp.asarray(bias, jnp.float32)
    x = np.asarray(X, np.float64)
    normalised = (x - x.mean(axis=(0, 1, 2))) / np.sqrt(x.var(axis=(0, 1, 2)) + 1e-5)
    labels = np.asarray(LABELS)
    expected = normalised * gain[labels][:, None, None, :] + bias[labels][:, None, None, :]
    np.testing.assert_allclose(layer(X, LABELS), expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(layer(X, jnp.array([1, 0, 0, 1])), layer(X, LABELS))


def test_only_the_classes_present_receive_gradients():
    layer = ConditionalBatchNorm(5, 4, rngs=nnx.Rngs(0))
    graph, params, stats = nnx.split(layer, nnx.Param, nnx.BatchStat)

    def loss(params):
        return jnp.sum(nnx.merge(graph, params, stats, copy=True)(X, LABELS) ** 3)

    gradients = jax.grad(loss)(params)
    gain_rows = np.abs(np.asarray(gradients["class_gain"][...])).sum(axis=1)
    assert (gain_rows[:3] > 0).all() and gain_rows[3] == 0


def test_projection_head_adds_the_class_embedding_inner_product():
    head = ProjectionHead(6, 3, spectral_norm=False, rngs=nnx.Rngs(0))
    features = jax.random.normal(jax.random.key(1), (4, 6))
    logits = head(features, LABELS)
    h = np.asarray(features)
    embedding = np.asarray(head.embed.kernel[...])
    expected = h @ np.asarray(head.linear.kernel[...])[:, 0] + np.asarray(head.linear.bias[...])[0] + np.sum(
        embedding[np.asarray(LABELS)] * h, axis=1)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert logits.shape == (4,) and logits.dtype == jnp.float32


def test_spectral_projection_head_keeps_one_vector_per_layer():
    head = ProjectionHead(6, 3, rngs=nnx.Rngs(0))
    features = jax.random.normal(jax.random.key(1), (4, 6))
    assert len(jax.tree.leaves(nnx.state(head, SpectralVector))) == 2
    assert not np.allclose(head(features, LABELS), head(features, jnp.array([1, 1, 0, 0])))
    assert ProjectionHead(6, 0, rngs=nnx.Rngs(0))(features).shape == (4,)


def test_labels_must_match_the_conditioning():
    features = jnp.ones((2, 6))
    with pytest.raises(UsageError, match="pass labels"):
        ProjectionHead(6, 3, rngs=nnx.Rngs(0))(features)
    with pytest.raises(UsageError, match="labels must be None"):
        ProjectionHead(6, 0, rngs=nnx.Rngs(0))(features, jnp.zeros(2, jnp.int32))


def test_strength_phases_the_class_in():
    layer = ConditionalBatchNorm(5, 3, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    layer.class_gain[...] = jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)
    layer.class_bias[...] = jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)
    plain = BatchNorm(5, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0))
    # Strength 0: a plain BatchNorm whatever the labels; 1: the full class affine; between: the mean of both.
    np.testing.assert_allclose(layer(X, LABELS, strength=0.0), plain(X), rtol=1e-5, atol=1e-5)
    full, none = layer(X, LABELS), layer(X, LABELS, strength=0.0)
    np.testing.assert_allclose(layer(X, LABELS, strength=0.5), (full + none) / 2, rtol=1e-4, atol=1e-4)
    head = ProjectionHead(6, 3, spectral_norm=False, rngs=nnx.Rngs(0))
    features = jax.random.normal(jax.random.key(1), (4, 6))
    np.testing.assert_allclose(head(features, LABELS, 0.0), head(features, jnp.array([1, 1, 0, 0]), 0.0))
    unconditional = head(features, LABELS, 0.0)
    np.testing.assert_allclose(head(features, LABELS, 0.25), unconditional + 0.25 * (head(features, LABELS) -
                                                                                       unconditional), rtol=1e-5)
