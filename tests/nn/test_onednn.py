"""oneDNN convolutions equal their `lax` twins in values and gradients, and fail with a reason.

`conv2d` is checked against `lax.conv_general_dilated` (values, input and kernel
gradients of sum(y * random)) over strides, paddings, kernel sizes, odd and even
sizes and channel counts, including the sub-pixel input gradient of the 4x4
stride-2 layers with few channels; `conv2d_transpose` against the `lax` vjp;
`conv_general_dilated` against lax on what it hands over and what it keeps;
the backend choice where the kernels load. Every test here needs the compiled
kernels (`onednn` marker: skipped with the reason where they cannot be built,
see conftest.py); the build itself is tested in test_onednn_build.py.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from jaxmed.models.dcgan import Discriminator, Generator
from jaxmed.nn import conv_general_dilated_for, onednn, resolve_conv_backend
from jaxmed.nn.conv_backend import describe as describe_conv_backend
from jaxmed.nn.onednn import library
from jaxmed.nn.onednn.conv import _call

pytestmark = pytest.mark.onednn

DN = ("NHWC", "HWIO", "NHWC")


def _problem(seed, x_shape, kernel_shape, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(x_shape), dtype)
    kernel = jnp.asarray(rng.standard_normal(kernel_shape) / np.sqrt(np.prod(kernel_shape[:3])), dtype)
    return x, kernel


def _value_and_grads(conv, x, kernel):
    y = conv(x, kernel)
    cotangent = jnp.asarray(np.random.default_rng(99).standard_normal(y.shape), y.dtype)
    grads = jax.grad(lambda x, k: jnp.sum(conv(x, k).astype(jnp.float32) * cotangent), argnums=(0, 1))(x, kernel)
    return (y,) + grads


def _assert_close(actual, expected, what, rel=1e-4):
    actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
    assert actual.shape == expected.shape, what
    scale = float(np.max(np.abs(expected)))
    assert scale > 0, f"{what}: reference is identically zero, the comparison would prove nothing"
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rel * scale, err_msg=what)


# (x shape, kernel shape, strides, padding): the dcgan128 geometry at odd and even sizes,
# the classifiers' 3x3/1, 1x1/2 and 7x7/2 layers, asymmetric and "VALID" paddings whose
# last rows no window reaches, and the few-channel stride-2 layers (sub-pixel input gradient).
CASES = [
    ((2, 16, 16, 8, ), (4, 4, 8, 16), (2, 2), "SAME"),
    ((2, 9, 7, 3), (4, 4, 3, 5), (2, 2), "SAME"),
    ((2, 12, 10, 1), (4, 4, 1, 6), (2, 2), "SAME"),
    ((2, 13, 8, 4), (4, 4, 4, 3), (2, 2), ((1, 1), (1, 1))),
    ((2, 11, 9, 5), (3, 3, 5, 7), (1, 1), ((1, 1), (1, 1))),
    ((2, 10, 9, 6), (1, 1, 6, 4), (2, 2), ((0, 0), (0, 0))),
    ((1, 20, 17, 2), (7, 7, 2, 4), (2, 2), ((3, 3), (3, 3))),
    ((2, 9, 10, 3), (2, 3, 3, 4), (2, 3), "VALID"),
    ((2, 8, 9, 3), (3, 3, 3, 2), (1, 2), ((0, 2), (1, 0))),
    # Stride 1, at most 4 outputs, inputs in 16s: narrow_conv.h's forward and kernel gradient
    # (the 2x2 sub-pixel form, several tap passes, asymmetric padding, and the dcgan128
    # discriminator's 1 -> 32 layer, whose input gradient is that sub-pixel form).
    ((2, 9, 8, 32), (2, 2, 32, 4), (1, 1), ((1, 1), (1, 1))),
    ((2, 7, 6, 16), (3, 3, 16, 1), (1, 1), "SAME"),
    ((1, 6, 9, 48), (1, 3, 48, 3), (1, 1), ((0, 2), (2, 0))),
    ((2, 8, 7, 32), (5, 5, 32, 2), (1, 1), "VALID"),
    ((2, 12, 10, 1), (4, 4, 1, 32), (2, 2), "SAME"),
    ((2, 11, 9, 1), (4, 4, 1, 16), (2, 2), "SAME"),
    # weight_gradient.h's kernel gradient (AVX2 CPUs; inputs in 4s, outputs in 8s): tiles of 24,
    # 16 and 8 outputs, several row blocks (a wide image), odd sizes, strides 1 and (1, 2), 3x3.
    ((2, 9, 11, 8), (4, 4, 8, 40), (2, 2), "SAME"),
    ((1, 12, 130, 4), (4, 4, 4, 8), (2, 2), ((1, 1), (1, 1))),
    ((2, 7, 9, 12), (3, 3, 12, 16), (1, 1), ((0, 2), (1, 0))),
    ((2, 8, 9, 4), (3, 3, 4, 24), (1, 2), "VALID"),
    # Its one-channel kernel (the two 1 -> 32/16 cases above are the image layers): tiles of 1-4
    # taps (kernel widths 3, 5, 6) and 16 or 8 outputs, strides 1, (1, 2) and (2, 1), cropping pads.
    ((2, 9, 11, 1), (3, 3, 1, 8), (1, 1), ((0, 2), (1, 0))),
    ((2, 10, 13, 1), (5, 5, 1, 24), (1, 2), "VALID"),
    ((1, 7, 12, 1), (2, 6, 1, 40), (2, 1), ((1, 0), (2, 1))),
    # winograd.h (4x4 stride 2, low padding 1, channels in 16s, outputs in 64s, batches whose
    # halves have the tiles it asks for): tiles of 2 (the forward pass at 16x16 and 8x7
    # outputs, the input gradient of the 18x18 input) and of 3 (the others), cropped at the
    # edges; odd inputs; a last input row only the high padding reaches. The AVX2 build runs the
    # 8-channel case above too.
    ((8, 32, 32, 16), (4, 4, 16, 64), (2, 2), "SAME"),
    ((12, 18, 18, 16), (4, 4, 16, 64), (2, 2), "SAME"),
    ((32, 16, 13, 16), (4, 4, 16, 64), (2, 2), "SAME"),
    ((8, 33, 34, 32), (4, 4, 32, 64), (2, 2), "SAME"),
    ((8, 35, 32, 16), (4, 4, 16, 128), (2, 2), ((1, 1), (1, 1))),
]

#: conv2d.cc computes input gradients of 4x4 stride-2 layers with up to this many input channels in sub-pixel form.
SUBPIXEL_MAX_CHANNELS = 4


@pytest.mark.parametrize("x_shape, kernel_shape, strides, padding", CASES)
def test_conv2d_matches_lax(x_shape, kernel_shape, strides, padding):
    x, kernel = _problem(1, x_shape, kernel_shape)
    ours = _value_and_grads(jax.jit(lambda x, k: onednn.conv2d(x, k, strides, padding)), x, kernel)
    theirs = _value_and_grads(lambda x, k: lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=DN),
                              x, kernel)
    for name, a, b in zip(("y", "dx", "dkernel"), ours, theirs):
        _assert_close(a, b, f"{name} for x {x_shape}, kernel {kernel_shape}, strides {strides}, padding {padding}")


def test_subpixel_gradient_covers_the_image_layers():
    # The dcgan128 discriminator's first layer (1 channel) takes the sub-pixel input gradient, with
    # narrow_conv.h's kernel for 16s of output channels, else oneDNN's; the cases above include it
    # at even (12x10) and odd (9x7, 13x8, 11x9) sizes.
    few_channel_cases = [case for case in CASES
                         if case[1][:2] == (4, 4) and case[2] == (2, 2) and case[1][2] <= SUBPIXEL_MAX_CHANNELS]
    assert {case[1][2] for case in few_channel_cases} >= {1, 3, 4}


@pytest.mark.slow
@pytest.mark.multiprocess
def test_avx2_code_paths_in_a_capped_process():
    # The cases here run the widest kernels this CPU has. Capped at AVX2 (oneDNN's
    # ONEDNN_MAX_CPU_ISA, which narrow_conv.h honours too), an AVX-512 machine runs the AVX2
    # build of narrow_conv.h, oneDNN's AVX2 kernels and, having no bfloat16 convolution there,
    # conv2d.cc's float32 fallback for bfloat16 operands: the paths an AVX2-only CPU takes.
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                             "-k", "matches_lax or bfloat16 or equal_lax"], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    assert re.search(r"\b\d{2,} passed", result.stdout), result.stdout[-500:]


def test_conv2d_bfloat16_close_to_float32():
    x, kernel = _problem(2, (4, 16, 16, 16), (4, 4, 16, 32))
    expected = _value_and_grads(lambda x, k: onednn.conv2d(x, k, (2, 2), "SAME"), x, kernel)
    bf16 = _value_and_grads(lambda x, k: onednn.conv2d(x, k, (2, 2), "SAME"), x.astype(jnp.bfloat16),
                            kernel.astype(jnp.bfloat16))
    for name, a, b in zip(("y", "dx", "dkernel"), bf16, expected):
        assert a.dtype == jnp.bfloat16, name
        _assert_close(a, b, f"bf16 {name}", rel=3e-2)


@pytest.mark.parametrize("x_shape, kernel_shape", [((4, 16, 16, 16), (4, 4, 16, 32)),
                                                   ((2, 12, 10, 1), (4, 4, 1, 6))])  # sub-pixel input gradient
def test_bfloat16_operands_with_float32_results_equal_lax(x_shape, kernel_shape):
    """preferred_element_type=float32: lax's own result for bfloat16 operands, gradients in bfloat16."""
    x, kernel = (a.astype(jnp.bfloat16) for a in _problem(8, x_shape, kernel_shape))
    ours = _value_and_grads(lambda x, k: onednn.conv2d(x, k, (2, 2), "SAME", preferred_element_type=jnp.float32),
                            x, kernel)
    theirs = _value_and_grads(lambda x, k: lax.conv_general_dilated(x, k, (2, 2), "SAME", dimension_numbers=DN,
                                                                    preferred_element_type=jnp.float32), x, kernel)
    assert [a.dtype for a in ours] == [jnp.float32, jnp.bfloat16, jnp.bfloat16]
    _assert_close(ours[0], theirs[0], "y", rel=1e-5)  # the same bfloat16 products, summed in float32
    for name, a, b in zip(("dx", "dkernel"), ours[1:], theirs[1:]):
        _assert_close(a, b, name, rel=2e-2)
    # The transposed convolution (the generator's up-sampling) likewise.
    pads = ((1, 1), (1, 1))
    up = onednn.conv2d_transpose(ours[0].astype(jnp.bfloat16), kernel, x.shape, (2, 2), pads,
                                 preferred_element_type=jnp.float32)
    assert up.dtype == jnp.float32
    _assert_close(up, onednn.conv2d_transpose(ours[0].astype(jnp.float32), kernel.astype(jnp.float32), x.shape,
                                              (2, 2), pads), "transposed", rel=1e-2)
    with pytest.raises(ValueError, match="into bfloat16 or float32"):
        onednn.conv2d(x, kernel, preferred_element_type=jnp.float16)


def test_conv2d_transpose_is_the_input_gradient():
    x, kernel = _problem(3, (2, 10, 12, 6), (4, 4, 6, 5))
    y, vjp = jax.vjp(lambda x: lax.conv_general_dilated(x, kernel, (2, 2), "SAME", dimension_numbers=DN), x)
    cotangent, weights = _problem(4, y.shape, (1, 1, 1, 1))
    (expected,) = vjp(cotangent)
    pads = ((1, 1), (1, 1))
    _assert_close(onednn.conv2d_transpose(cotangent, kernel, x.shape, (2, 2), pads), expected, "value")
    # Its own gradients (through the forward and backward-weights kernels) against lax's.
    def reference(c, k):
        return jax.vjp(lambda x: lax.conv_general_dilated(x, k, (2, 2), "SAME", dimension_numbers=DN), x)[1](c)[0]
    ours = _value_and_grads(lambda c, k: onednn.conv2d_transpose(c, k, x.shape, (2, 2), pads), cotangent, kernel)
    theirs = _value_and_grads(reference, cotangent, kernel)
    for name, a, b in zip(("value", "d cotangent", "d kernel"), ours, theirs):
        _assert_close(a, b, name)


def test_conv2d_transpose_rejects_a_wrong_shape():
    x, kernel = _problem(5, (1, 4, 4, 8), (4, 4, 3, 8))
    with pytest.raises(ValueError, match="convolution of"):
        onednn.conv2d_transpose(x, kernel, (1, 10, 10, 3), (2, 2), ((1, 1), (1, 1)))


def test_conv2d_rejects_unsupported_operands():
    x, kernel = _problem(6, (1, 8, 8, 2), (3, 3, 2, 2))
    with pytest.raises(ValueError, match="one dtype"):
        onednn.conv2d(x, kernel.astype(jnp.bfloat16))
    with pytest.raises(ValueError, match="NHWC"):
        onednn.conv2d(x[0], kernel)
    with pytest.raises(ValueError, match="negative padding"):
        onednn.conv2d(x, kernel, (1, 1), ((-1, 0), (0, 0)))


def test_kernel_errors_reach_python_and_leave_the_kernels_usable():
    # Past the Python checks (a float16 call straight to the custom call), the asynchronous
    # handler must fail the computation with its reason, not crash or hang, and later calls work.
    x, kernel = _problem(7, (2, 8, 8, 4), (4, 4, 4, 8))
    with pytest.raises(Exception, match="oneDNN convolution forward: .*float32 and bfloat16 only"):
        jax.block_until_ready(jax.jit(lambda a, b: _call("forward", (2, 4, 4, 8), jnp.float16, a, b, (2, 2),
                                                         ((1, 1), (1, 1))))(x.astype(jnp.float16),
                                                                            kernel.astype(jnp.float16)))
    _assert_close(onednn.conv2d(x, kernel, (2, 2), "SAME"),
                  lax.conv_general_dilated(x, kernel, (2, 2), "SAME", dimension_numbers=DN), "after the error")


def test_conv_general_dilated_hands_over_only_what_it_supports():
    x, kernel = _problem(7, (2, 9, 9, 4), (3, 3, 4, 6))
    hook = functools.partial(onednn.conv_general_dilated, dimension_numbers=DN)
    pads = ((1, 1), (1, 1))
    cases = {"plain": {}, "dilated kernel": {"rhs_dilation": (2, 2)}, "dilated input": {"lhs_dilation": (2, 1)}}
    for name, extra in cases.items():
        expected = lax.conv_general_dilated(x, kernel, (1, 1), pads, dimension_numbers=DN, **extra)
        _assert_close(hook(x, kernel, (1, 1), pads, **extra), expected, name)
    grouped_kernel = kernel[:, :, :2]
    expected = lax.conv_general_dilated(x, grouped_kernel, (1, 1), "SAME", dimension_numbers=DN, feature_group_count=2)
    _assert_close(hook(x, grouped_kernel, (1, 1), "SAME", feature_group_count=2), expected, "grouped")
    lowered = jax.jit(lambda x, k: hook(x, k, (1, 1), "SAME")).lower(x, kernel).as_text()
    assert library.target_name("forward") in lowered
    lowered = jax.jit(lambda x, k: hook(x, k, (1, 1), "SAME", rhs_dilation=(2, 2))).lower(x, kernel).as_text()
    assert library.target_name("forward") not in lowered


@pytest.mark.slow
def test_dcgan_is_the_same_function_with_either_backend():
    x, _ = _problem(8, (2, 32, 32, 1), (1, 1, 1, 1))
    z, _ = _problem(9, (2, 16), (1, 1, 1, 1))
    for build, inputs in ((lambda b: Discriminator(32, conv_backend=b, rngs=nnx.Rngs(0)), x),
                          (lambda b: Generator(32, latent_dim=16, conv_backend=b, rngs=nnx.Rngs(0)), z)):
        results = {}
        for backend in ("xla", "onednn"):
            model = build(backend)
            model.eval()  # batch statistics from the running averages: a pure function of the parameters
            graphdef, params, rest = nnx.split(model, nnx.Param, ...)
            def loss(params, inputs, graphdef=graphdef, rest=rest):
                return jnp.sum(nnx.merge(graphdef, params, rest)(inputs) ** 2)
            results[backend] = jax.value_and_grad(loss, argnums=(0, 1))(params, inputs)
        (value_xla, grads_xla), (value_onednn, grads_onednn) = results["xla"], results["onednn"]
        _assert_close(value_onednn, value_xla, f"{type(model).__name__} loss")
        for a, b in zip(jax.tree.leaves(grads_onednn), jax.tree.leaves(grads_xla)):
            _assert_close(a, b, f"{type(model).__name__} gradient", rel=1e-3)


def test_backend_resolution():
    assert resolve_conv_backend("xla") == "xla"
    assert resolve_conv_backend("auto", num_devices=1) == "onednn"  # the kernels load (else skipped)
    assert resolve_conv_backend("auto", num_devices=2) == "xla"  # XLA would replicate the custom calls
    assert resolve_conv_backend("onednn", num_devices=2) == "onednn"  # asked for: correct, if not sharded
    assert conv_general_dilated_for("xla") is lax.conv_general_dilated
    assert conv_general_dilated_for("onednn") is onednn.conv_general_dilated
    with pytest.raises(ValueError, match="conv_backend must be one of"):
        resolve_conv_backend("cudnn")


def test_backend_description_names_the_loaded_kernels():
    described = describe_conv_backend()
    assert described["backend"] == "onednn"
    assert described["cache"] == str(library.load())
    assert described["isa"] and not described["isa"].startswith("0x")  # a name from oneDNN's header
    assert describe_conv_backend(num_devices=2)["backend"] == "xla"
    assert "2 devices" in describe_conv_backend(num_devices=2)["reason"]


def test_build_is_cached_by_content():
    first = library.build()  # the session's build (conftest.py), not rebuilt
    assert first.is_file() and first.is_relative_to(os.environ["JAXMED_BUILD_CACHE"])
    modified = first.stat().st_mtime_ns
    assert library.build() == first and first.stat().st_mtime_ns == modified
