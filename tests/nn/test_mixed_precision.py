"""Mixed precision per layer: on oneDNN's backend the dense layers of bfloat16 models compute in float32.

XLA:CPU computes a bfloat16 `dot_general` in float32 after widening its operands, so a
bfloat16 dense layer there only adds conversions (`jaxmed.nn.dense_dtype`); on XLA's backend
(GPU, TPU, several devices) the layers keep the model's dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmed.models import dcgan, resnet_gan
from jaxmed.models.classifier import ResNet18, SeedCNN
from jaxmed.models.unet import UNet
from jaxmed.models.vae import VAE
from jaxmed.nn import dense_dtype


def test_dense_dtype_widens_reduced_precision_on_onednn_only():
    assert dense_dtype(jnp.bfloat16, "onednn") == jnp.float32
    assert dense_dtype(jnp.float32, "onednn") == jnp.float32
    assert dense_dtype(None, "onednn") is None  # float32 models stay as they are
    assert dense_dtype(jnp.bfloat16, "xla") == jnp.bfloat16
    assert dense_dtype(None, "xla") is None


def _linear_dtypes(model: nnx.Module) -> set:
    return {jnp.dtype(layer.dtype) for _, layer in nnx.iter_graph(model) if isinstance(layer, nnx.Linear)}


@pytest.mark.onednn
@pytest.mark.parametrize("backend, expected", [("onednn", jnp.float32), ("xla", jnp.bfloat16)])
def test_bfloat16_models_build_their_dense_layers_in_the_backends_dtype(backend, expected):
    bf16 = dict(dtype=jnp.bfloat16, conv_backend=backend)
    builders = [
        lambda rngs: SeedCNN(32, **bf16, rngs=rngs),
        lambda rngs: ResNet18(32, width=8, **bf16, rngs=rngs),
        lambda rngs: UNet(16, base_features=8, channel_multipliers=(1, 2), attention_resolutions=(8,),
                          head_features=8, norm_groups=4, **bf16, rngs=rngs),
        lambda rngs: dcgan.Generator(32, base_features=32, **bf16, rngs=rngs),
        lambda rngs: dcgan.Discriminator(32, base_features=32, **bf16, rngs=rngs),
        lambda rngs: VAE(32, base_features=32, **bf16, rngs=rngs),
        lambda rngs: resnet_gan.Generator(32, num_classes=2, base_features=8, max_features=16, **bf16, rngs=rngs),
        lambda rngs: resnet_gan.Discriminator(32, num_classes=2, base_features=8, max_features=16, **bf16, rngs=rngs),
    ]
    models = [nnx.eval_shape(lambda build=build: build(rngs=nnx.Rngs(0))) for build in builders]
    for model in models:
        assert _linear_dtypes(model) == {jnp.dtype(expected)}, type(model).__name__
        parameter_dtypes = {leaf.dtype for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))}
        assert parameter_dtypes == {jnp.dtype(jnp.float32)}, type(model).__name__


@pytest.mark.onednn
def test_bfloat16_seed_cnn_matches_float32_at_bfloat16_tolerance():
    """Same parameters, float32 and bfloat16 computation: loss and gradients agree to bfloat16's precision, and
    every gradient is float32 like the parameters it updates."""
    x = jax.random.uniform(jax.random.key(1), (4, 32, 32, 1), minval=-1, maxval=1)
    results = {}
    for dtype in (None, jnp.bfloat16):
        model = SeedCNN(32, dropout_rate=0.0, dtype=dtype, conv_backend="onednn", rngs=nnx.Rngs(0))
        model.eval()  # normalisation by the running averages: a pure function of the parameters
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss(params, graphdef=graphdef, rest=rest):
            logits = nnx.merge(graphdef, params, rest)(x)
            return jnp.mean(jax.nn.log_softmax(logits)[:, 0])

        results[dtype] = jax.value_and_grad(loss)(params)
    (value_fp32, grads_fp32), (value_bf16, grads_bf16) = results[None], results[jnp.bfloat16]
    assert value_bf16.dtype == jnp.float32
    np.testing.assert_allclose(value_bf16, value_fp32, rtol=2e-2, atol=1e-3)
    assert value_bf16 != value_fp32  # the first convolution really ran in bfloat16
    for (path, bf16), fp32 in zip(jax.tree_util.tree_leaves_with_path(grads_bf16), jax.tree.leaves(grads_fp32)):
        assert bf16.dtype == jnp.float32, jax.tree_util.keystr(path)
        # A gradient sums many bfloat16 products that largely cancel at initialisation, and the first layers'
        # pass through the later layers' bfloat16 input gradients: compare whole tensors, with room for that (a
        # wrong layout or a transposed kernel is off by 100% or more).
        error = float(jnp.linalg.norm(bf16 - fp32) / jnp.linalg.norm(fp32))
        assert error <= 0.15, (jax.tree_util.keystr(path), error)
