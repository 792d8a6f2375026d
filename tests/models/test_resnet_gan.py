"""ResNet GAN shapes, parameter layout, conditioning, state split and one training step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxmed.errors import UsageError
from jaxmed.losses import discriminator_loss
from jaxmed.models.resnet_gan import Discriminator, Generator, block_features, num_blocks
from jaxmed.nn.spectral_norm import SpectralVector

# ResNet GAN shapes and steps: many compilations.
pytestmark = pytest.mark.slow

SMALL = dict(base_features=8, max_features=32)


def count(module, kind=nnx.Param):
    return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(module, kind)))


@pytest.mark.parametrize("size, channels, num_classes", [(32, 1, 0), (32, 3, 5), (64, 1, 3)])
def test_shapes_and_ranges(size, channels, num_classes):
    generator = Generator(size, channels, 16, num_classes=num_classes, rngs=nnx.Rngs(0), **SMALL)
    discriminator = Discriminator(size, channels, num_classes=num_classes, rngs=nnx.Rngs(1), **SMALL)
    labels = jnp.array([0, num_classes - 1]) if num_classes else None
    images = generator(jax.random.normal(jax.random.key(0), (2, 16)), labels)
    assert images.shape == (2, size, size, channels) and images.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(images))) <= 1.0
    logits = discriminator(images, labels)
    assert logits.shape == (2,) and logits.dtype == jnp.float32


def test_number_of_blocks_and_channels_follow_the_size():
    assert [num_blocks(size) for size in (32, 64, 128, 256)] == [3, 4, 5, 6]
    assert block_features(64, 32, 256) == [256, 256, 128, 64, 32]
    assert len(Generator(64, 1, 16, rngs=nnx.Rngs(0), **SMALL).blocks) == 4
    assert len(Discriminator(64, 1, rngs=nnx.Rngs(0), **SMALL).blocks) == 5  # four halve 64 to 4, one at 4x4
    with pytest.raises(ValueError, match="32, 64, 128 or 256"):
        num_blocks(48)


@pytest.mark.parametrize("num_classes", [0, 4])
def test_parameter_counts_match_the_architecture(num_classes):
    """32 px, 1 channel, z of 16, channels [32, 32, 16, 8] from 4x4 to the image."""
    features = [32, 32, 16, 8]
    norm = 2 * max(num_classes, 1)  # gain and bias per class (one pair unconditional)
    expected_generator = (16 + 1) * 16 * 32 + 2 * 8 + 9 * 8 + 1 + sum(
        norm * f_in + 9 * f_in * f_out + f_out + norm * f_out + 9 * f_out * f_out + f_out + f_in * f_out + f_out
        for f_in, f_out in zip(features[:-1], features[1:]))
    generator = Generator(32, 1, 16, num_classes=num_classes, rngs=nnx.Rngs(0), **SMALL)
    assert count(generator) == expected_generator

    d_features = [1, 8, 16, 32, 32]
    expected_discriminator = (32 + 1) + num_classes * 32 + sum(
        9 * f_in * f_out + f_out + 9 * f_out * f_out + f_out + (f_in * f_out + f_out if learned else 0)
        for f_in, f_out, learned in zip(d_features[:-1], d_features[1:], [True, True, True, False]))
    discriminator = Discriminator(32, 1, num_classes=num_classes, rngs=nnx.Rngs(0), **SMALL)
    assert count(discriminator) == expected_discriminator
    # One u per spectrally normalised layer: 2 convolutions a block, 3 shortcuts, the head's 1 or 2 layers.
    assert len(jax.tree.leaves(nnx.state(discriminator, SpectralVector))) == 8 + 3 + 1 + (num_classes > 0)


def test_discriminator_state_splits_into_parameters_and_spectral_vectors_only():
    discriminator = Discriminator(32, 1, rngs=nnx.Rngs(0), **SMALL)
    _, params, stats, rest = nnx.split(discriminator, nnx.Param, nnx.BatchStat, ...)
    assert not jax.tree.leaves(rest)
    assert all(isinstance(variable, SpectralVector)
               for variable in jax.tree.leaves(stats, is_leaf=lambda x: isinstance(x, nnx.Variable)))
    assert count(discriminator, nnx.BatchStat) == sum(leaf.size for leaf in jax.tree.leaves(stats))


def test_labels_change_the_outputs():
    generator = Generator(32, 1, 16, num_classes=3, rngs=nnx.Rngs(0), **SMALL)
    # Fresh class gains are 1 and biases 0 (a plain BatchNorm): give the classes different biases.
    first_norm = generator.blocks[0].norm1
    first_norm.class_bias[...] = jax.random.normal(jax.random.key(3), first_norm.class_bias.shape)
    generator.eval()
    z = jax.random.normal(jax.random.key(0), (2, 16))
    a, b = generator(z, jnp.array([0, 1])), generator(z, jnp.array([2, 1]))
    assert not np.allclose(a[0], b[0]) and np.allclose(a[1], b[1], atol=1e-6)

    discriminator = Discriminator(32, 1, num_classes=3, rngs=nnx.Rngs(1), **SMALL)
    discriminator.eval()
    logits_a, logits_b = discriminator(a, jnp.array([0, 1])), discriminator(a, jnp.array([2, 1]))
    assert logits_a[0] != logits_b[0] and logits_a[1] == pytest.approx(float(logits_b[1]), abs=1e-6)


def test_labels_are_required_exactly_when_conditional():
    z = jnp.ones((2, 16))
    with pytest.raises(UsageError, match="pass labels"):
        Generator(32, 1, 16, num_classes=3, rngs=nnx.Rngs(0), **SMALL)(z)
    with pytest.raises(UsageError, match="labels must be None"):
        Discriminator(32, 1, rngs=nnx.Rngs(0), **SMALL)(jnp.zeros((2, 32, 32, 1)), jnp.zeros(2, jnp.int32))


def one_step_losses(model, loss_of_model):
    """The loss before and after one Adam step, computed functionally as the GAN step does."""
    graph, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)

    def loss(params, stats):
        merged = nnx.merge(graph, params, stats, copy=True)
        return loss_of_model(merged), nnx.state(merged, nnx.BatchStat)

    @jax.jit
    def before_and_after(params, stats):
        (before, stats), grads = jax.value_and_grad(loss, has_aux=True)(params, stats)
        optimizer = optax.adam(1e-3)
        updates, _ = optimizer.update(grads, optimizer.init(params), params)
        after, _ = loss(optax.apply_updates(params, updates), stats)
        return before, after

    return tuple(float(value) for value in before_and_after(params, stats))


def test_one_discriminator_step_reduces_its_loss():
    discriminator = Discriminator(32, 1, num_classes=2, rngs=nnx.Rngs(0), **SMALL)
    real = jax.random.uniform(jax.random.key(1), (4, 32, 32, 1), minval=-1, maxval=1)
    fake = jnp.tanh(jax.random.normal(jax.random.key(2), (4, 32, 32, 1)))
    labels = jnp.array([0, 1, 0, 1])
    before, after = one_step_losses(
        discriminator, lambda d: discriminator_loss(d(real, labels), d(fake, labels), "hinge"))
    assert after < before


def test_one_generator_step_reduces_a_reconstruction_loss():
    generator = Generator(32, 1, 16, num_classes=2, rngs=nnx.Rngs(0), **SMALL)
    z = jax.random.normal(jax.random.key(1), (4, 16))
    target = jnp.zeros((4, 32, 32, 1)).at[:, 8:24, 8:24].set(0.8)
    labels = jnp.array([0, 1, 1, 0])
    before, after = one_step_losses(generator, lambda g: jnp.mean(jnp.square(g(z, labels) - target)))
    assert after < before


def test_bfloat16_computation_keeps_float32_parameters_and_outputs():
    generator = Generator(32, 1, 16, dtype=jnp.bfloat16, rngs=nnx.Rngs(0), **SMALL)
    discriminator = Discriminator(32, 1, dtype=jnp.bfloat16, rngs=nnx.Rngs(0), **SMALL)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(nnx.state(generator, nnx.Param)))
    images = generator(jnp.ones((2, 16)))
    assert images.dtype == jnp.float32 and discriminator(images).dtype == jnp.float32
    assert np.isfinite(np.asarray(discriminator(images))).all()
