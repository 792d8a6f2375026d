"""Layer discovery covers every convolution and pooling layer, and the cost formulas are the textbook ones."""

import jax
import pytest
from flax import nnx

from jaxmed.bench import compare, layers
from jaxmed.models.classifier import build_classifier
from jaxmed.models.dcgan import Discriminator, Generator
from jaxmed.nn import UpsampleConv


def _conv_modules(*modules):
    return [m for module in modules for _, m in nnx.iter_modules(module) if isinstance(m, (nnx.Conv, UpsampleConv))]


def _param_count(module):
    return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(module, nnx.Param)))


@pytest.mark.parametrize("model, size", [("dcgan", 32), ("seed_cnn", 32), ("resnet18", 64)])
def test_every_convolution_layer_is_listed_once(model, size):
    found = layers.model_layers(model, size, resnet_width=8)
    if model == "dcgan":
        modules = _conv_modules(nnx.eval_shape(lambda: Generator(size, rngs=nnx.Rngs(0))),
                                nnx.eval_shape(lambda: Discriminator(size, rngs=nnx.Rngs(0))))
    else:
        modules = _conv_modules(nnx.eval_shape(lambda: build_classifier(model, size, width=8, rngs=nnx.Rngs(0))))
    conv_names = [name for layer in found if layer.shape.kind in layers.CONV_KINDS for name in layer.names]
    assert len(conv_names) == len(set(conv_names)) == len(modules)
    # Distinct shapes only: no two rows share one.
    assert len({layer.shape for layer in found}) == len(found)


def test_pooling_layers_are_found_with_their_windows():
    seed_pools = [layer for layer in layers.model_layers("seed_cnn", 32) if layer.shape.kind == layers.MAX_POOL]
    assert [layer.shape.height for layer in seed_pools] == [32, 16, 8]
    assert all(layer.shape.kernel == (2, 2) and layer.shape.strides == (2, 2) for layer in seed_pools)
    resnet_pools = [layer for layer in layers.model_layers("resnet18", 64, resnet_width=8)
                    if layer.shape.kind == layers.MAX_POOL]
    assert [(p.shape.kernel, p.shape.strides, p.shape.padding) for p in resnet_pools] == [
        ((3, 3), (2, 2), ((1, 1), (1, 1)))]
    assert resnet_pools[0].shape.output_size == (16, 16)


def test_dcgan128_shapes_and_flop_formula():
    found = {layer.names[0]: layer.shape for layer in layers.model_layers("dcgan", 128)}
    first = found["discriminator/down_blocks/0"]
    assert (first.height, first.in_channels, first.out_channels, first.output_size) == (128, 1, 32, (64, 64))
    # 2 * B * H_out * W_out * C_out * k_h * k_w * C_in
    assert first.flop(32) == 2 * 32 * 64 * 64 * 32 * 4 * 4 * 1
    up = found["generator/up_blocks/0"]
    assert (up.kind, up.height, up.in_channels, up.out_channels, up.output_size) == (
        layers.UPSAMPLE_CONV, 8, 256, 128, (16, 16))
    # every input pixel meets all 16 taps: equals 2 * B * (2H)(2W) * C_out * 4 * C_in
    assert up.flop(32) == 2 * 32 * 16 * 16 * 128 * 4 * 256
    assert sum(1 for shape in found.values() if shape.kind == layers.UPSAMPLE_CONV) == 4
    assert sum(1 for shape in found.values() if shape.kind == layers.CONV) == 4


def test_pool_bytes_count_reads_and_writes():
    shape = layers.LayerShape(layers.MAX_POOL, 8, 8, 4, 4, (2, 2), (2, 2), ((0, 0), (0, 0)))
    inputs, outputs = 2 * 8 * 8 * 4, 2 * 4 * 4 * 4
    assert shape.bytes_moved(2, 4, "forward") == 4 * (inputs + outputs)
    assert shape.bytes_moved(2, 2, "input_grad") == 2 * (2 * inputs + outputs)
    assert shape.flop(2) == 0


def test_unknown_model_is_an_error():
    with pytest.raises(ValueError, match="unknown model"):
        layers.model_layers("vgg", 32)


@pytest.mark.parametrize("size", [32, 128])
def test_dcgan_parameter_formula_equals_the_model(size):
    expected = compare.dcgan_parameter_counts(size)
    generator = nnx.eval_shape(lambda: Generator(size, rngs=nnx.Rngs(0)))
    discriminator = nnx.eval_shape(lambda: Discriminator(size, rngs=nnx.Rngs(0)))
    assert expected == {"generator": _param_count(generator), "discriminator": _param_count(discriminator)}


def test_vae_layers_are_the_dcgans_and_are_timed_once():
    vae = layers.model_layers("vae", 32)
    dcgan = layers.model_layers("dcgan", 32)
    assert vae[0].model == "vae32" and {layer.shape for layer in vae} == {layer.shape for layer in dcgan}
    assert {name for layer in vae for name in layer.names} >= {"encoder/down_blocks/0", "decoder/to_image"}
    merged = layers.merge_across_models(dcgan + vae)
    assert [layer.shape for layer in merged] == [layer.shape for layer in dcgan]
    assert all(layer.model == "dcgan32" for layer in merged)
    vae_names = {layer.shape: layer.names for layer in vae}
    for layer, dcgan_layer in zip(merged, dcgan):
        assert layer.names == dcgan_layer.names + tuple(f"vae32:{name}" for name in vae_names[layer.shape])
