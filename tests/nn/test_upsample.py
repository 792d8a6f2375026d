"""`upsample_conv` / `UpsampleConv` equal `lax.conv_transpose` / `nnx.ConvTranspose` (4x4, stride 2, SAME).

Values and gradients (w.r.t. input, kernel and bias of sum(y * random)) are compared
with the reference for both formulations, odd/even/non-square sizes 1-128 and
channel counts 1-256; the module is checked for parameter and weight compatibility
with `nnx.ConvTranspose`, jit, no bias, bf16 and leading batch dimensions.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmed.nn import CONV3X3_MAX_OUT_FEATURES, UpsampleConv, upsample_conv

METHODS = ("matmul", "conv3x3", "onednn")
DN = ("NHWC", "HWIO", "NHWC")


def _reference(x, kernel, bias=None):
    y = jax.lax.conv_transpose(x, kernel, strides=(2, 2), padding="SAME", dimension_numbers=DN)
    return y if bias is None else y + bias.reshape(1, 1, 1, -1)


def _random_problem(seed, batch, height, width, c_in, c_out):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((batch, height, width, c_in)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((4, 4, c_in, c_out)) / np.sqrt(4 * c_in), jnp.float32)
    bias = jnp.asarray(rng.standard_normal((c_out,)), jnp.float32)
    cotangent = jnp.asarray(rng.standard_normal((batch, 2 * height, 2 * width, c_out)), jnp.float32)
    return x, kernel, bias, cotangent


def _value_and_grads(fn, x, kernel, bias, cotangent):
    """y = fn(x, kernel, bias) and the gradients of sum(y * cotangent) w.r.t. (x, kernel[, bias])."""
    def loss(*args):
        y = fn(*args)
        return jnp.sum(y * cotangent), y
    args = (x, kernel) if bias is None else (x, kernel, bias)
    (_, y), grads = jax.value_and_grad(loss, argnums=tuple(range(len(args))), has_aux=True)(*args)
    return y, grads


# All problems of a test go through one compilation and XLA's cheapest optimisation level:
# compilation, not execution, dominates this file's run time on a busy 2-core machine.
@functools.partial(jax.jit, static_argnames="methods", compiler_options={"xla_backend_optimization_level": 0})
def _reference_and_ours(problems, methods):
    """For each (x, kernel, bias, cotangent): (y, grads) of the reference and of upsample_conv per method."""
    results = []
    for x, kernel, bias, cotangent in problems:
        expected = _value_and_grads(_reference, x, kernel, bias, cotangent)
        ours = {m: _value_and_grads(functools.partial(upsample_conv, method=m), x, kernel, bias, cotangent)
                for m in methods}
        results.append((expected, ours))
    return results


def _assert_close(actual, expected, rel=1e-4, what=""):
    """Equal up to float32 rounding: |actual - expected| <= rel * max|expected| elementwise."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, what
    scale = float(np.max(np.abs(expected)))
    assert scale > 0, f"{what}: reference is identically zero, the comparison would prove nothing"
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rel * scale, err_msg=what)


def _check_against_reference(shapes, methods=METHODS, use_bias=True):
    """Values and x/kernel/bias gradients of upsample_conv equal the reference for every
    (batch, height, width, c_in, c_out) in `shapes` and every method."""
    problems = []
    for i, (batch, height, width, c_in, c_out) in enumerate(shapes):
        x, kernel, bias, cotangent = _random_problem(i, batch, height, width, c_in, c_out)
        problems.append((x, kernel, bias if use_bias else None, cotangent))
    results = _reference_and_ours(problems, methods=tuple(methods))
    for shape, ((y_ref, grads_ref), ours) in zip(shapes, results):
        batch, height, width, _, c_out = shape
        assert set(ours) == set(methods)
        for method, (y, grads) in ours.items():
            what = f"{method} at (B, H, W, C_in, C_out)={shape}"
            assert y.shape == (batch, 2 * height, 2 * width, c_out), what
            _assert_close(y, y_ref, what=f"{what}: y")
            assert len(grads) == len(grads_ref) == (3 if use_bias else 2)
            for name, grad, grad_ref in zip(("x", "kernel", "bias"), grads, grads_ref):
                _assert_close(grad, grad_ref, what=f"{what}: d/d{name}")


def test_matches_conv_transpose_at_spatial_sizes():
    # Sizes 1, 3, 4, 5, 7, 8, 16, 33, 64, 128, odd and even on both axes, square and not;
    # one image and few channels at the large sizes.
    _check_against_reference([(2, 1, 1, 3, 2), (2, 3, 4, 3, 2), (2, 5, 7, 3, 2), (2, 8, 16, 3, 2),
                              (1, 33, 64, 3, 2), (1, 64, 33, 3, 2), (1, 128, 128, 2, 2)])


def test_matches_conv_transpose_at_channel_counts():
    # Few pixels at 256 -> 128 channels: the reference gradient runs on an unvectorised XLA:CPU path.
    _check_against_reference([(2, 3, 5, 1, 1), (2, 3, 5, 3, 8), (1, 3, 2, 256, 128), (2, 3, 5, 32, 1)])


def test_without_bias_and_auto_method():
    # C_out 3 and 6 fall on either side of the "auto" switch between the two formulations.
    assert 3 <= CONV3X3_MAX_OUT_FEATURES < 6
    _check_against_reference([(2, 6, 5, 4, 3), (2, 5, 6, 4, 6)], methods=("auto",) + METHODS, use_bias=False)


def test_function_under_jit():
    x, kernel, bias, _ = _random_problem(2, 2, 5, 8, 4, 6)
    expected = _reference(x, kernel, bias)
    for method in ("auto",) + METHODS:
        jitted = jax.jit(functools.partial(upsample_conv, method=method))
        _assert_close(jitted(x, kernel, bias), expected, what=method)


@pytest.mark.parametrize("bad", ["kernel_3x3", "channels", "bias", "rank", "method"])
def test_rejects_bad_arguments(bad):
    x, kernel, bias, _ = _random_problem(3, 1, 4, 4, 3, 2)
    args = {"x_BxHxWxCin": x, "kernel": kernel, "bias": bias}
    kwargs = {}
    if bad == "kernel_3x3":
        args["kernel"] = kernel[:3, :3]
    elif bad == "channels":
        args["x_BxHxWxCin"] = x[..., :2]
    elif bad == "bias":
        args["bias"] = jnp.zeros((3,))
    elif bad == "rank":
        args["x_BxHxWxCin"] = x[0]
    else:
        kwargs["method"] = "fft"
    with pytest.raises(ValueError):
        upsample_conv(**args, **kwargs)


# ----------------------------------------------------------------------------- module
# Random initialisers cost seconds of compilation per new kernel shape on CPU, so apart from
# the default-initialiser test the modules start from zeros and get NumPy weights.

ZEROS = nnx.initializers.zeros_init()


def _conv_transpose(in_features, out_features, seed=0, **kwargs):
    return nnx.ConvTranspose(in_features, out_features, kernel_size=(4, 4), strides=(2, 2), padding="SAME",
                             rngs=nnx.Rngs(seed), **kwargs)


def _zero_init(cls, in_features, out_features, **kwargs):
    if cls is nnx.ConvTranspose:
        return _conv_transpose(in_features, out_features, kernel_init=ZEROS, **kwargs)
    return UpsampleConv(in_features, out_features, kernel_init=ZEROS, rngs=nnx.Rngs(0), **kwargs)


def _set_random_weights(module, seed):
    rng = np.random.default_rng(seed)
    module.kernel[...] = jnp.asarray(rng.standard_normal(module.kernel.shape) * 0.3, module.kernel.dtype)
    if module.bias is not None:
        module.bias[...] = jnp.asarray(rng.standard_normal(module.bias.shape), module.bias.dtype)
    return module


def _param_signature(module):
    """{path: (shape, dtype)} of the module's nnx.Param leaves."""
    state = nnx.state(module, nnx.Param)
    return {path: (tuple(v.shape), v.dtype) for path, v in nnx.to_flat_state(state)}


@nnx.jit
def _apply(module, x):
    return module(x)


@pytest.mark.parametrize("use_bias", [True, False])
def test_params_and_default_init_match_conv_transpose(use_bias):
    ours = UpsampleConv(3, 2, use_bias=use_bias, rngs=nnx.Rngs(4))
    theirs = _conv_transpose(3, 2, seed=4, use_bias=use_bias)
    expected_names = {("kernel",), ("bias",)} if use_bias else {("kernel",)}
    assert set(_param_signature(ours)) == expected_names
    assert _param_signature(ours) == _param_signature(theirs)
    assert ours.kernel.shape == (4, 4, 3, 2)
    # Same default initialisers consuming the same keys in the same order: identical weights.
    assert float(jnp.std(ours.kernel[...])) > 0
    np.testing.assert_array_equal(np.asarray(ours.kernel[...]), np.asarray(theirs.kernel[...]))
    if use_bias:
        np.testing.assert_array_equal(np.asarray(ours.bias[...]), np.asarray(theirs.bias[...]))
    else:
        assert ours.bias is None and theirs.bias is None


@pytest.mark.parametrize("c_out", [1, 8])  # both "auto" formulations
def test_weights_load_from_conv_transpose_and_back(c_out):
    x, _, _, _ = _random_problem(5, 2, 7, 6, 4, c_out)

    # ConvTranspose -> UpsampleConv.
    theirs = _set_random_weights(_zero_init(nnx.ConvTranspose, 4, c_out), seed=1)
    ours = _zero_init(UpsampleConv, 4, c_out)
    assert not np.allclose(_apply(ours, x), _apply(theirs, x))  # different weights before loading
    nnx.update(ours, nnx.state(theirs, nnx.Param))
    _assert_close(_apply(ours, x), _apply(theirs, x))

    # UpsampleConv -> ConvTranspose.
    ours = _set_random_weights(_zero_init(UpsampleConv, 4, c_out), seed=2)
    theirs = _zero_init(nnx.ConvTranspose, 4, c_out)
    nnx.update(theirs, nnx.state(ours, nnx.Param))
    _assert_close(_apply(theirs, x), _apply(ours, x))


def test_module_param_grads_match_conv_transpose():
    x, _, _, cotangent = _random_problem(6, 2, 5, 7, 6, 9)
    theirs = _set_random_weights(_zero_init(nnx.ConvTranspose, 6, 9), seed=3)
    ours = _zero_init(UpsampleConv, 6, 9)
    nnx.update(ours, nnx.state(theirs, nnx.Param))

    @nnx.jit
    def param_grads(module, x, cotangent):
        return nnx.grad(lambda m: jnp.sum(m(x) * cotangent))(module)

    grads_ours = nnx.to_flat_state(param_grads(ours, x, cotangent))
    grads_theirs = dict(nnx.to_flat_state(param_grads(theirs, x, cotangent)))
    assert {path for path, _ in grads_ours} == set(grads_theirs) == {("kernel",), ("bias",)}
    for path, grad in grads_ours:
        _assert_close(grad[...], grads_theirs[path][...], what=str(path))


def test_module_under_jit_and_without_bias():
    x, _, _, _ = _random_problem(8, 2, 5, 4, 3, 6)
    theirs = _set_random_weights(_zero_init(nnx.ConvTranspose, 3, 6, use_bias=False), seed=4)
    ours = _zero_init(UpsampleConv, 3, 6, use_bias=False)
    assert ours.bias is None
    nnx.update(ours, nnx.state(theirs, nnx.Param))
    y_jit = _apply(ours, x)
    _assert_close(y_jit, _apply(theirs, x))
    _assert_close(ours(x), y_jit)  # eager and jitted agree
    graphdef, state = nnx.split(ours)
    _assert_close(jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))(state, x), y_jit)  # plain jax.jit


def test_bfloat16_computation_dtype():
    x, _, _, _ = _random_problem(9, 2, 6, 6, 8, 16)
    ours = _set_random_weights(_zero_init(UpsampleConv, 8, 16, dtype=jnp.bfloat16), seed=5)
    assert ours.kernel.dtype == jnp.float32  # parameters stay float32
    y = _apply(ours, x)
    assert y.dtype == jnp.bfloat16
    expected = jax.jit(_reference)(x, ours.kernel[...], ours.bias[...])
    _assert_close(y.astype(jnp.float32), expected, rel=3e-2)


def test_leading_batch_dimensions():
    x, _, _, _ = _random_problem(10, 6, 5, 3, 2, 4)
    ours = _set_random_weights(_zero_init(UpsampleConv, 2, 4), seed=6)
    batched = _apply(ours, x)
    assert batched.shape == (6, 10, 6, 4)
    _assert_close(_apply(ours, x[0]), batched[0])  # unbatched (H, W, C)
    _assert_close(_apply(ours, x.reshape(2, 3, 5, 3, 2)), batched.reshape(2, 3, 10, 6, 4))
