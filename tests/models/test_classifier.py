"""Classifier shapes, parameter layout, train/eval modes and gradients.

Shape and layout checks run on abstract models (`nnx.eval_shape`: traced, never compiled);
only the mode and gradient tests compute, on two small shared models, to stay fast on CPU.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxmed.models.classifier import (CLASSIFIERS, BasicBlock, ResNet18, SeedCNN, build_classifier,
                                      seed_cnn_flatten_size)

SEED_SIZE = 28      # SeedCNN behaviour tests: 28 -> 14 -> 7 -> 3 after the three pools
RESNET_SIZE = 64    # ResNet18 behaviour tests: the ImageNet stem (7x7/2 + max pool)
RESNET_WIDTH = 8


def _images(key: int, batch: int, size: int, channels: int = 1) -> jax.Array:
    return jax.random.uniform(jax.random.key(key), (batch, size, size, channels), minval=-1.0, maxval=1.0)


def _num_params(model: nnx.Module) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _abstract_logits(model: nnx.Module, batch: int, size: int, channels: int) -> jax.ShapeDtypeStruct:
    return nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct((batch, size, size, channels), jnp.float32))


def _rngs(params: int, dropout: int) -> nnx.Rngs:
    # RBG keys: their random-number kernels compile several times faster on CPU than
    # threefry's, and every parameter shape compiles one. The streams behave the same.
    return nnx.Rngs(params=jax.random.key(params, impl="rbg"), dropout=jax.random.key(dropout, impl="rbg"))


# One compiled forward pass per model structure, mode and input shape (eager dispatch would
# compile op by op, which costs more here). State updates (BN statistics, dropout key
# counts) are written back to the model by nnx.jit.
_forward = nnx.jit(lambda model, x: model(x))


@pytest.fixture(scope="module")
def trained_models():
    """One real model of each kind, built once and copied by the tests that change it."""
    return {
        "seed_cnn": SeedCNN(SEED_SIZE, 1, 2, rngs=_rngs(0, 1)),
        "resnet18": ResNet18(RESNET_SIZE, 1, 2, width=RESNET_WIDTH, dropout_rate=0.5, rngs=_rngs(0, 1)),
    }


@pytest.fixture(params=CLASSIFIERS)
def model_and_size(request, trained_models):
    """A fresh copy (tests switch modes and update BN statistics) and its input size."""
    size = SEED_SIZE if request.param == "seed_cnn" else RESNET_SIZE
    return nnx.clone(trained_models[request.param]), size


# --- shapes and layout (abstract) -------------------------------------------------------------


@pytest.mark.parametrize("size, channels, num_classes", [(28, 1, 2), (32, 3, 4), (64, 1, 4), (128, 3, 2)])
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_output_shapes(name, size, channels, num_classes):
    options = {"width": 16} if name == "resnet18" else {}
    model = nnx.eval_shape(lambda: build_classifier(name, size, channels, num_classes, rngs=nnx.Rngs(0), **options))
    logits = _abstract_logits(model, 3, size, channels)
    assert logits.shape == (3, num_classes)
    assert logits.dtype == jnp.float32


@pytest.mark.parametrize("size", [28, 64, 100, 256])
def test_seed_cnn_flatten_size_follows_image_size(size):
    model = nnx.eval_shape(lambda: SeedCNN(size, rngs=nnx.Rngs(0)))
    side = ((size // 2) // 2) // 2  # three "VALID" 2x2/2 pools, each flooring
    assert model.hidden.kernel.shape == (side * side * 128, 128)
    assert model.flatten_size == seed_cnn_flatten_size(size) == side * side * 128
    assert _abstract_logits(model, 2, size, 1).shape == (2, 2)


def test_seed_cnn_layers():
    model = nnx.eval_shape(lambda: SeedCNN(64, 3, 4, rngs=nnx.Rngs(0)))
    assert [conv.kernel.shape for conv in model.convs] == [(3, 3, 3, 32), (3, 3, 32, 64), (3, 3, 64, 128)]
    assert all(conv.bias is None for conv in model.convs)  # BN's shift is the bias of eq. 1
    assert [norm.momentum for norm in model.norms] == [0.9, 0.9, 0.9]
    assert model.classify.kernel.shape == (128, 4)
    assert model.dropout.rate == 0.5


def _seed_cnn_param_count(size: int, channels: int, num_classes: int) -> int:
    features = [channels, 32, 64, 128]
    convs = sum(3 * 3 * f_in * f_out + 2 * f_out for f_in, f_out in zip(features[:-1], features[1:]))  # + BN
    flatten = (size // 8) ** 2 * 128
    return convs + (flatten * 128 + 128) + (128 * num_classes + num_classes)


def _resnet18_param_count(channels: int, num_classes: int, width: int, stem_kernel: int) -> int:
    """He et al. table 1, counted layer by layer (BN: scale and shift; running stats are not parameters)."""
    count = stem_kernel ** 2 * channels * width + 2 * width
    f_in = width
    for stage in range(4):
        f_out = width * 2 ** stage
        for _ in range(2):
            count += 3 * 3 * f_in * f_out + 2 * f_out + 3 * 3 * f_out * f_out + 2 * f_out
            if f_in != f_out:  # projection shortcut, 1x1 + BN
                count += f_in * f_out + 2 * f_out
            f_in = f_out
    return count + f_in * num_classes + num_classes


def test_resnet18_count_formula_matches_torchvision():
    """The formula reproduces torchvision's resnet18 (3 channels, 1000 classes), so it can check ours."""
    assert _resnet18_param_count(3, 1000, 64, 7) == 11_689_512


@pytest.mark.parametrize("size, stem_kernel", [(32, 3), (64, 7)])
def test_resnet18_parameter_count(size, stem_kernel):
    model = nnx.eval_shape(lambda: ResNet18(size, 1, 2, rngs=nnx.Rngs(0)))
    count = _num_params(model)
    assert count == _resnet18_param_count(1, 2, 64, stem_kernel)
    assert 11.1e6 < count < 11.25e6  # "11.2M" for ResNet-18 at one channel and two classes


@pytest.mark.parametrize("size, channels, num_classes", [(28, 1, 2), (128, 3, 5)])
def test_seed_cnn_parameter_count(size, channels, num_classes):
    model = nnx.eval_shape(lambda: SeedCNN(size, channels, num_classes, rngs=nnx.Rngs(0)))
    assert _num_params(model) == _seed_cnn_param_count(size, channels, num_classes)


def test_resnet18_stems_and_shortcuts():
    small = nnx.eval_shape(lambda: ResNet18(32, rngs=nnx.Rngs(0)))
    large = nnx.eval_shape(lambda: ResNet18(64, rngs=nnx.Rngs(0)))
    assert small.stem.kernel.shape == (3, 3, 1, 64) and small.stem.strides == (1, 1) and small.small_input
    assert large.stem.kernel.shape == (7, 7, 1, 64) and large.stem.strides == (2, 2) and not large.small_input
    assert len(large.blocks) == 8 and all(isinstance(block, BasicBlock) for block in large.blocks)
    # Projections exactly where the shape changes: the first block of stages 2-4.
    projected = [block.shortcut is not None for block in large.blocks]
    assert projected == [False, False, True, False, True, False, True, False]
    assert [large.blocks[i].shortcut.kernel.shape for i in (2, 4, 6)] == [
        (1, 1, 64, 128), (1, 1, 128, 256), (1, 1, 256, 512)]
    assert all(large.blocks[i].shortcut.strides == (2, 2) for i in (2, 4, 6))
    assert large.classify.kernel.shape == (512, 2)
    assert large.dropout is None  # the reference has no dropout


@pytest.mark.parametrize("size, final_side", [(28, 4), (64, 2), (256, 8)])
def test_resnet18_feature_map_sizes(size, final_side):
    """The 3x3/1 stem keeps 28-32 px inputs large enough; the 7x7/2 + pool stem divides by 4."""
    model = nnx.eval_shape(lambda: ResNet18(size, width=8, rngs=nnx.Rngs(0)))

    def features(m, x):
        x = nnx.relu(m.stem_norm(m.stem(x)))
        if not m.small_input:
            x = nnx.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for block in m.blocks:
            x = block(x)
        return x

    out = nnx.eval_shape(features, model, jax.ShapeDtypeStruct((1, size, size, 1), jnp.float32))
    assert out.shape == (1, final_side, final_side, 64)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_bfloat16_computation_keeps_float32_parameters_and_logits(name):
    model = nnx.eval_shape(lambda: build_classifier(name, 32, 1, 2, dtype=jnp.bfloat16, rngs=nnx.Rngs(0)))
    dtypes = {leaf.dtype for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))}
    assert dtypes == {jnp.dtype(jnp.float32)}
    assert _abstract_logits(model, 2, 32, 1).dtype == jnp.float32


# --- factory and argument checks ----------------------------------------------------------------


def test_factory_builds_each_name_and_forwards_options():
    assert CLASSIFIERS == ("seed_cnn", "resnet18")
    seed = nnx.eval_shape(lambda: build_classifier("seed_cnn", 28, 1, 2, rngs=nnx.Rngs(0)))
    resnet = nnx.eval_shape(lambda: build_classifier("resnet18", 28, 3, 4, width=16, dropout_rate=0.3,
                                                     rngs=nnx.Rngs(0)))
    assert isinstance(seed, SeedCNN) and seed.dropout.rate == 0.5  # None: the model's default
    assert isinstance(resnet, ResNet18) and resnet.stem.kernel.shape == (3, 3, 3, 16)
    assert resnet.classify.kernel.shape == (128, 4) and resnet.dropout.rate == 0.3
    assert nnx.eval_shape(lambda: build_classifier("resnet18", 28, rngs=nnx.Rngs(0))).dropout is None


def test_factory_width_applies_to_resnet_only():
    """One config (width, dropout_rate) serves both names: SeedCNN keeps the paper's sizes."""
    seed = nnx.eval_shape(lambda: build_classifier("seed_cnn", 28, 1, 2, width=8, dropout_rate=0.25,
                                                   rngs=nnx.Rngs(0)))
    assert [conv.kernel.shape[-1] for conv in seed.convs] == [32, 64, 128]
    assert seed.dropout.rate == 0.25


def test_factory_rejects_unknown_names():
    with pytest.raises(ValueError, match="seed_cnn, resnet18"):
        build_classifier("vgg16", 28, 1, 2, rngs=nnx.Rngs(0))


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="at least 8"):
        SeedCNN(7, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_classes"):
        ResNet18(32, num_classes=1, rngs=nnx.Rngs(0))
    # Dropout needs keys: a params-only Rngs fails at construction, not at the first call.
    with pytest.raises(ValueError, match="dropout"):
        nnx.eval_shape(lambda: SeedCNN(28, rngs=nnx.Rngs(params=0)))
    assert nnx.eval_shape(lambda: SeedCNN(28, dropout_rate=0.0, rngs=nnx.Rngs(params=0))).dropout is None


# --- modes (computed, on the shared small models) -----------------------------------------------


def test_eval_mode_is_deterministic_and_batch_independent(model_and_size):
    model, size = model_and_size
    x = _images(0, 4, size)
    # The same first example among different companions (same shape: no recompilation).
    x_other = jnp.concatenate([x[:1], _images(1, 3, size)])
    model.eval()
    logits = _forward(model, x)
    assert logits.shape == (4, 2) and logits.dtype == jnp.float32 and np.all(np.isfinite(logits))
    np.testing.assert_allclose(_forward(model, x_other)[:1], logits[:1], atol=1e-5)
    np.testing.assert_array_equal(_forward(model, x), logits)


def test_features_are_what_the_last_layer_classifies(model_and_size):
    model, size = model_and_size
    model.eval()  # dropout off: the head sees the features as they are
    x = _images(0, 3, size)
    features = model.features(x)
    width = 128 if isinstance(model, SeedCNN) else 8 * RESNET_WIDTH
    assert features.shape == (3, width)
    np.testing.assert_allclose(model.classify(features), _forward(model, x), rtol=1e-5, atol=1e-5)


def test_train_mode_dropout_advances_its_rng(model_and_size):
    model, size = model_and_size
    x = _images(2, 4, size)
    replica = nnx.clone(model)
    count = int(model.dropout.rngs.count[...])
    first = _forward(model, x)
    second = _forward(model, x)
    assert int(model.dropout.rngs.count[...]) == count + 2  # one key per call, kept in the model state
    assert not np.allclose(first, second, atol=1e-5)  # BN statistics are the same: dropout differs
    # Same state, same keys: a copy reproduces the first call exactly.
    np.testing.assert_array_equal(_forward(replica, x), first)
    model.eval()
    np.testing.assert_array_equal(_forward(model, x), _forward(model, x))


def test_dropout_keys_come_from_the_dropout_stream():
    """Same `params` seed, different `dropout` seed: same network, different masks."""
    a = SeedCNN(SEED_SIZE, rngs=_rngs(0, 1))
    b = SeedCNN(SEED_SIZE, rngs=_rngs(0, 2))
    x = _images(3, 4, SEED_SIZE)
    assert not np.allclose(_forward(a, x), _forward(b, x), atol=1e-5)
    a.eval()
    b.eval()
    np.testing.assert_array_equal(_forward(a, x), _forward(b, x))


def test_batch_norm_statistics_update_only_in_train_mode(model_and_size):
    model, size = model_and_size
    x = _images(4, 4, size)
    initial = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    _forward(model, x)
    after_train = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    changed = jax.tree.leaves(jax.tree.map(lambda a, b: not np.allclose(a, b), initial, after_train))
    assert len(changed) > 0 and all(changed)  # every running mean and variance moved
    model.eval()
    _forward(model, x)
    after_eval = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    jax.tree.map(np.testing.assert_array_equal, after_eval, after_train)


def test_batch_norm_momentum_is_0_9(trained_models):
    """After one train-mode call from mean 0, the running mean is 0.1 x the batch mean."""
    model = nnx.clone(trained_models["seed_cnn"])
    x = _images(5, 4, SEED_SIZE)
    batch_mean = jnp.mean(model.convs[0](x), axis=(0, 1, 2))
    _forward(model, x)
    np.testing.assert_allclose(model.norms[0].mean[...], 0.1 * batch_mean, rtol=1e-4, atol=1e-6)


# --- gradients (train mode: batch statistics and dropout in the graph) --------------------------


def _loss(model: nnx.Module, x: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(model(x), labels).mean()


def _assert_every_gradient_flows(grads, params) -> None:
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    paths_and_grads = jax.tree_util.tree_leaves_with_path(grads)
    assert len(paths_and_grads) == len(jax.tree.leaves(params)) > 0
    for path, grad in paths_and_grads:
        grad = np.asarray(grad)
        assert np.all(np.isfinite(grad)), jax.tree_util.keystr(path)
        assert np.any(grad != 0), f"zero gradient at {jax.tree_util.keystr(path)}"


def test_gradients_reach_every_parameter_nnx_grad(trained_models):
    model = nnx.clone(trained_models["seed_cnn"])
    x, labels = _images(6, 4, SEED_SIZE), jnp.array([0, 1, 1, 0])
    grads = nnx.jit(nnx.grad(_loss))(model, x, labels)
    _assert_every_gradient_flows(grads, nnx.state(model, nnx.Param))


def test_gradients_reach_every_parameter_split_merge(trained_models):
    """The functional form a jitted train step uses: params differentiated, the rest carried."""
    model = nnx.clone(trained_models["resnet18"])
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x, labels = _images(7, 4, RESNET_SIZE), jnp.array([0, 1, 1, 0])

    def loss_fn(params):
        # copy=True: the state comes from outside the trace (flax 0.12 raises otherwise).
        return _loss(nnx.merge(graphdef, params, rest, copy=True), x, labels)

    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params)
    assert np.isfinite(loss)
    _assert_every_gradient_flows(grads, params)
