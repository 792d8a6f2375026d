"""DCGAN shapes, parameter layout and modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmed.models.dcgan import Discriminator, Generator, num_stages


@pytest.mark.parametrize("size", [32, *(pytest.param(size, marks=pytest.mark.slow) for size in (64, 128))])
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_and_discriminator_shapes(size, channels):
    generator = Generator(size, channels, latent_dim=100, rngs=nnx.Rngs(0))
    discriminator = Discriminator(size, channels, rngs=nnx.Rngs(1))
    images = generator(jax.random.normal(jax.random.key(0), (2, 100)))
    assert images.shape == (2, size, size, channels)
    assert float(jnp.max(jnp.abs(images))) <= 1.0  # tanh output
    assert discriminator(images).shape == (2,)


@pytest.mark.slow
def test_reference_architecture_at_128():
    """The dcgan128 layer sizes of docs/design.md, checked through the parameter shapes."""
    generator = Generator(128, 1, 100, rngs=nnx.Rngs(0))
    assert generator.project.kernel.shape == (100, 8 * 8 * 256)
    assert generator.project.bias is None
    assert [block.kernel.shape for block in generator.up_blocks] == [
        (4, 4, 256, 128), (4, 4, 128, 64), (4, 4, 64, 32)]
    assert all(block.bias is None for block in generator.up_blocks)
    assert generator.to_image.kernel.shape == (4, 4, 32, 1)

    discriminator = Discriminator(128, 1, rngs=nnx.Rngs(0))
    assert [conv.kernel.shape for conv in discriminator.down_blocks] == [
        (4, 4, 1, 32), (4, 4, 32, 64), (4, 4, 64, 128), (4, 4, 128, 256)]
    assert len(discriminator.down_norms) == 3  # no BatchNorm after the first convolution
    assert discriminator.classify.kernel.shape == (8 * 8 * 256, 1)


def test_unsupported_size_is_rejected():
    with pytest.raises(ValueError, match="32, 64, 128 or 256"):
        num_stages(96)


def test_eval_mode_uses_running_statistics():
    """Train mode normalises with batch statistics (outputs depend on the batch); eval mode does not."""
    generator = Generator(32, 1, 8, rngs=nnx.Rngs(0))
    z = jax.random.normal(jax.random.key(1), (4, 8))
    together = generator(z)
    alone = generator(z[:1])
    assert not np.allclose(together[:1], alone, atol=1e-5)
    generator.eval()
    np.testing.assert_allclose(generator(z)[:1], generator(z[:1]), atol=1e-5)


def test_bfloat16_computation_keeps_float32_parameters():
    generator = Generator(32, 1, 8, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert generator.project.kernel.dtype == jnp.float32
    images = generator(jnp.ones((2, 8)))
    assert images.dtype == jnp.float32
    assert np.all(np.isfinite(images))


def test_bfloat16_on_onednn_normalises_in_float32_and_stays_close_to_float32():
    """oneDNN's bf16 convolutions hand float32 to BatchNorm; XLA's backend keeps bfloat16 throughout."""
    z = jax.random.normal(jax.random.key(1), (4, 8))
    reference = Generator(32, 1, 8, conv_backend="onednn", rngs=nnx.Rngs(0))
    mixed = Generator(32, 1, 8, dtype=jnp.bfloat16, conv_backend="onednn", rngs=nnx.Rngs(0))
    on_xla = Generator(32, 1, 8, dtype=jnp.bfloat16, conv_backend="xla", rngs=nnx.Rngs(0))

    assert all(block.preferred_element_type == jnp.float32 for block in mixed.up_blocks)
    assert all(norm.dtype is None for norm in mixed.up_norms) and mixed.project_norm.dtype is None
    assert all(norm.dtype == jnp.bfloat16 for norm in on_xla.up_norms)
    upsampled = mixed.up_blocks[0](jnp.ones((1, 8, 8, 256), jnp.bfloat16))
    assert upsampled.dtype == jnp.float32
    np.testing.assert_allclose(mixed(z), reference(z), atol=5e-2)
    assert not np.array_equal(mixed(z), reference(z))  # it really computed in bfloat16
