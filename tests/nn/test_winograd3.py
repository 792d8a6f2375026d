"""The 3x3 stride-1 Winograd kernels equal `lax` in values and gradients, and run where their rule says.

winograd_3x3.h computes float32 3x3 stride-1 "SAME" convolutions (forward, input gradient,
kernel gradient) with F(4x4, 3x3) (outputs of at least 8x8) or F(2x2, 3x3) where
`jaxmed_winograd_3x3_tile` (the library's own selection rule) says so, and leaves the rest to
oneDNN. The cases cover odd and even sizes, tiles cropped at the edges, batch 1 and more,
channel counts in and out of whole vectors (the latter run oneDNN: checked for the same values
through the same entry point), the layer shapes the rule must pick, and (slow tier) a narrow
ResNet-18's loss and gradients against XLA's kernels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from jaxmed.models.classifier import ResNet18
from jaxmed.nn import convolution_dtype, onednn
from jaxmed.nn.onednn import library

pytestmark = pytest.mark.onednn

DN = ("NHWC", "HWIO", "NHWC")
FORWARD, INPUT_GRADIENT, KERNEL_GRADIENT = 0, 1, 2


def _widest_lanes() -> int:
    """float32 lanes of the widest vectors the kernels use here (16 with AVX-512, else 8)."""
    return 16 if "avx512" in (library.cpu_isa() or "") else 8


def _value_and_grads(conv, x, kernel):
    y = conv(x, kernel)
    cotangent = jnp.asarray(np.random.default_rng(99).standard_normal(y.shape), y.dtype)
    grads = jax.grad(lambda x, k: jnp.sum(conv(x, k) * cotangent), argnums=(0, 1))(x, kernel)
    return (y,) + grads


def _assert_close(actual, expected, what, rel=1e-4):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, what
    scale = float(np.max(np.abs(expected)))
    assert scale > 0, f"{what}: reference is identically zero"
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rel * scale, err_msg=what)


# (x shape, outputs): channels in 32s (whole AVX-512 half register tiles) run every direction
# with Winograd, in 64s with the full register tile; 16 input channels run the forward pass
# and kernel gradient with it (their products are over K) and the input gradient with oneDNN;
# 24 and 8 (not whole AVX-512 vectors) only oneDNN. Tiles of 4 from 8x8 outputs, else of 2.
CASES = [
    ((2, 6, 6, 64), 64),
    ((1, 7, 5, 64), 64),
    ((3, 9, 8, 64), 128),
    ((2, 5, 4, 16), 64),
    ((2, 4, 7, 128), 64),
    ((1, 3, 3, 32), 64),
    ((2, 8, 9, 96), 32),
    ((1, 5, 5, 32), 32),
    ((2, 12, 11, 64), 64),
    ((1, 16, 16, 32), 64),
    ((24, 5, 5, 256), 320),  # a transformed kernel over 4 MB: all of a part's 108 tiles in one block
    ((2, 6, 5, 24), 64),
    ((2, 5, 6, 8), 16),
]


@pytest.mark.parametrize("x_shape, outputs", CASES)
def test_3x3_same_matches_lax(x_shape, outputs):
    rng = np.random.default_rng(x_shape[1] * 100 + x_shape[3])
    x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, x_shape[3], outputs)) / np.sqrt(9 * x_shape[3]), jnp.float32)
    ours = _value_and_grads(jax.jit(lambda x, k: onednn.conv2d(x, k, (1, 1), "SAME")), x, kernel)
    theirs = _value_and_grads(lambda x, k: lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=DN),
                              x, kernel)
    for name, a, b in zip(("y", "dx", "dkernel"), ours, theirs):
        _assert_close(a, b, f"{name} for x {x_shape}, {outputs} outputs")


def test_cases_run_the_winograd_kernels_where_intended():
    # The value tests above prove something about winograd_3x3.h only if it ran them, with both tile sides.
    directions = (FORWARD, INPUT_GRADIENT, KERNEL_GRADIENT)
    assert [library.winograd_3x3_tile(1, 6, 6, 64, 64, d) for d in directions] == [2, 2, 2]
    assert [library.winograd_3x3_tile(1, 12, 11, 64, 64, d) for d in directions] == [4, 4, 4]
    assert [library.winograd_3x3_tile(1, 8, 9, 96, 32, d) for d in directions] == [4, 4, 4]  # half register tiles
    assert [library.winograd_3x3_tile(1, 3, 3, 32, 64, d) for d in directions] == [2, 2, 2]
    assert [library.winograd_3x3_tile(12, 5, 5, 256, 320, d) for d in directions] == [2, 2, 2]
    assert library.winograd_3x3_tile(1, 5, 4, 16, 64, FORWARD) == 2
    assert library.winograd_3x3_tile(1, 5, 4, 16, 64, INPUT_GRADIENT) == (2 if _widest_lanes() == 8 else 0)  # 16 outputs: AVX2 only
    assert [library.winograd_3x3_tile(16, 4, 4, 512, 512, d) for d in directions] == [2, 2, 2]  # resnet18's layers at batch 32
    assert [library.winograd_3x3_tile(16, 8, 8, 256, 256, d) for d in directions] == [4, 4, 4]
    ragged = 24 if _widest_lanes() == 16 else 12
    assert [library.winograd_3x3_tile(1, 6, 5, ragged, 64, d) for d in directions] == [0, 0, 0]


@pytest.mark.slow
def test_resnet18_is_the_same_function_with_either_backend():
    # A narrow ResNet-18 on 16 px images: its 3x3 stride-1 layers run tiles of 4 (16x16, 8x8) and
    # of 2 (4x4, 2x2) in every direction, inside a model whose loss and parameter gradients must
    # equal those on XLA's kernels.
    x = jnp.asarray(np.random.default_rng(5).standard_normal((2, 16, 16, 1)), jnp.float32)
    assert library.winograd_3x3_tile(1, 8, 8, 64, 64, INPUT_GRADIENT) == 4 and library.winograd_3x3_tile(1, 4, 4, 128, 128, INPUT_GRADIENT) == 2
    results = {}
    for backend in ("xla", "onednn"):
        model = ResNet18(16, width=32, conv_backend=backend, rngs=nnx.Rngs(0))
        model.eval()  # batch statistics from the running averages: a pure function of the parameters
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss(params, x, graphdef=graphdef, rest=rest):
            return jnp.sum(nnx.merge(graphdef, params, rest)(x) ** 2)

        results[backend] = jax.value_and_grad(loss)(params, x)
    (value_xla, grads_xla), (value_onednn, grads_onednn) = results["xla"], results["onednn"]
    _assert_close(value_onednn, value_xla, "loss")
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(grads_onednn), jax.tree.leaves(grads_xla)):
        _assert_close(a, b, f"gradient {jax.tree_util.keystr(path)}", rel=1e-3)


def test_bfloat16_models_compute_the_winograd_layers_in_float32_without_amx():
    """Where the kernels take a 3x3 stride-1 layer of at most 128 channels (and no AMX is there), float32 is the
    faster way to compute it; from 256 channels oneDNN's bfloat16 kernels are."""
    if "amx" in (library.cpu_isa() or ""):  # oneDNN's AMX bfloat16 kernels beat float32 Winograd: no widening
        assert convolution_dtype(jnp.bfloat16, "onednn", 64, 64, 3, 1) == jnp.bfloat16
        return
    # The channel counts below are whole vectors with AVX-512 and with AVX2 alike: the same answers on both.
    assert convolution_dtype(jnp.bfloat16, "onednn", 64, 64, 3, 1) == jnp.float32
    assert convolution_dtype(jnp.bfloat16, "onednn", 96, 32, 3, 1) == jnp.float32
    assert convolution_dtype(jnp.bfloat16, "onednn", 128, 128, 3, 1) == jnp.float32
    assert convolution_dtype(jnp.bfloat16, "onednn", 256, 256, 3, 1) == jnp.bfloat16  # bfloat16 products win
    assert convolution_dtype(jnp.bfloat16, "onednn", 128, 256, 3, 1) == jnp.bfloat16
    assert convolution_dtype(jnp.bfloat16, "onednn", 64, 128, 3, 2) == jnp.bfloat16  # strided: oneDNN's
    assert convolution_dtype(jnp.bfloat16, "onednn", 1, 32, 3, 1) == jnp.bfloat16    # 1 channel: oneDNN's
    assert convolution_dtype(jnp.bfloat16, "xla", 64, 64, 3, 1) == jnp.bfloat16
    assert convolution_dtype(None, "onednn", 64, 64, 3, 1) is None

    model = nnx.eval_shape(lambda: ResNet18(32, 1, 2, width=32, dtype=jnp.bfloat16, conv_backend="onednn",
                                            rngs=nnx.Rngs(0)))
    dtypes = {(layer.in_features, layer.strides): layer.dtype for _, layer in nnx.iter_graph(model)
              if isinstance(layer, nnx.Conv) and layer.kernel_size == (3, 3)}
    assert dtypes[(32, (1, 1))] == jnp.float32 and dtypes[(128, (1, 1))] == jnp.float32
    assert dtypes[(256, (1, 1))] == jnp.bfloat16
    assert dtypes[(64, (2, 2))] == jnp.bfloat16
