"""U-Net shapes, parameter layout, conditioning paths and a training step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxmed.diffusion.objective import diffusion_loss
from jaxmed.diffusion.schedule import cosine_schedule
from jaxmed.models.unet import UNET_SIZES, UNet, build_unet, timestep_embedding

TINY = dict(base_features=8, channel_multipliers=(1, 2), num_res_blocks=1, attention_resolutions=(8,),
            head_features=8, norm_groups=4, conv_backend="xla")


@jax.jit(static_argnums=0)
def _forward(graphdef, state, x, t, labels):
    return nnx.merge(graphdef, state)(x, t, labels)


def _apply(model, x, t, labels=None):
    """A jitted forward pass, compiled once per model structure (eager NNX calls are slow)."""
    return _forward(*nnx.split(model), x, t, labels)


def _random_unet(*args, seed=0, **kwargs):
    """A UNet with random parameters drawn on the host, shaped by `nnx.eval_shape`.

    Random (not the zero-initialised output layers) so every input reaches the output; drawn by
    NumPy because compiling one initialiser per parameter shape dominates these tests' run time.
    """
    abstract = nnx.eval_shape(lambda: UNet(*args, rngs=nnx.Rngs(0), **{**TINY, **kwargs}))
    graphdef, state = nnx.split(abstract)
    generator = np.random.default_rng(seed)

    def draw(leaf):
        fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 10
        return jnp.asarray(generator.normal(size=leaf.shape) / np.sqrt(fan_in), jnp.float32)

    return nnx.merge(graphdef, jax.tree.map(draw, state))


def _expected_small_parameters(image_size, in_channels, num_classes):
    """The "small" size's parameter count, summed layer by layer from the module docstring's layout."""
    sizes = UNET_SIZES["small"]
    base = sizes["base_features"]
    embedding = 4 * base

    def conv(cin, cout, kernel=3):
        return kernel * kernel * cin * cout + cout

    def norm(features):
        return 2 * features

    def res(cin, cout):
        skip = conv(cin, cout, 1) if cin != cout else 0
        return norm(cin) + conv(cin, cout) + embedding * cout + cout + norm(cout) + conv(cout, cout) + skip

    def attention(features):
        return norm(features) + features * 3 * features + 3 * features + features * features + features

    widths = [base * m for m in sizes["channel_multipliers"]]
    attends = [(image_size >> level) in sizes["attention_resolutions"] for level in range(len(widths))]
    total = base * embedding + embedding + embedding * embedding + embedding  # time MLP
    total += (num_classes + 1) * embedding if num_classes else 0
    total += conv(in_channels, base)
    width, skips = base, [base]
    for level, out in enumerate(widths):
        total += res(width, out) + (attention(out) if attends[level] else 0)
        width = out
        skips.append(width)
        if level < len(widths) - 1:
            total += conv(width, width)
            skips.append(width)
    total += 2 * res(width, width) + attention(width)
    for level in reversed(range(len(widths))):
        for _ in range(2):
            total += res(width + skips.pop(), widths[level]) + (attention(widths[level]) if attends[level] else 0)
            width = widths[level]
        if level > 0:
            total += conv(width, width)
    return total + norm(width) + conv(width, in_channels)


@pytest.mark.parametrize("image_size,num_classes", [(32, None), (32, 3), (64, None), (64, 3)])
def test_small_config_layout_shapes_and_parameter_count(image_size, num_classes):
    """Traced, not compiled (`eval_shape`): the whole forward pass, at no compilation cost."""
    model = nnx.eval_shape(lambda: build_unet("small", image_size, 1, num_classes=num_classes, conv_backend="xla",
                                              rngs=nnx.Rngs(0)))
    count = sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert count == _expected_small_parameters(image_size, 1, num_classes)
    assert 1_000_000 < count < 3_000_000  # the documented "about 1.6M"
    attends = [(image_size >> level) <= 16 for level in range(4)]  # 64 px: 64, 32, 16, 8; 32 px: 32, 16, 8, 4
    assert [len(level.attentions) > 0 for level in model.down] == attends
    assert [len(level.attentions) > 0 for level in model.up] == attends[::-1]
    labels = None if num_classes is None else jax.ShapeDtypeStruct((2,), jnp.int32)
    graphdef, state = nnx.split(model)
    out = jax.eval_shape(lambda state, x, t, labels: nnx.merge(graphdef, state)(x, t, labels), state,
                         jax.ShapeDtypeStruct((2, image_size, image_size, 1), jnp.float32),
                         jax.ShapeDtypeStruct((2,), jnp.float32), labels)
    assert out.shape == (2, image_size, image_size, 1) and out.dtype == jnp.float32


@pytest.mark.slow
def test_untrained_small_model_predicts_zero():
    """The zero-initialised output layer: a fresh network's prediction is exactly 0 (as improved-diffusion)."""
    model = build_unet("small", 32, 1, num_classes=3, conv_backend="xla", rngs=nnx.Rngs(0))
    out = _apply(model, jnp.ones((2, 32, 32, 1)), jnp.array([0.1, 0.9]), jnp.array([0, 3]))
    assert out.shape == (2, 32, 32, 1)
    np.testing.assert_array_equal(out, 0.0)


def test_in_and_out_channels_and_conditioning_paths():
    model = _random_unet(16, 3, 2, num_classes=2)
    assert model.null_label == 2
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    t = jnp.array([0.5, 0.5])
    base = _apply(model, x, t, jnp.array([1, 1]))
    assert base.shape == (2, 16, 16, 2)
    assert not np.allclose(_apply(model, x, jnp.array([0.1, 0.1]), jnp.array([1, 1])), base, atol=1e-4)  # time
    assert not np.allclose(_apply(model, x, t, jnp.array([0, 0])), base, atol=1e-4)  # label
    np.testing.assert_allclose(_apply(model, x, t, None), _apply(model, x, t, jnp.array([2, 2])))  # None = null
    assert not np.allclose(_apply(model, x, t, None), base, atol=1e-4)


def test_timestep_embedding_separates_neighbouring_steps():
    embedding = timestep_embedding(jnp.array([0.0, 0.001, 0.002]), 32)
    assert embedding.shape == (3, 32)
    np.testing.assert_allclose(embedding[0], np.r_[np.ones(16), np.zeros(16)])
    assert float(jnp.linalg.norm(embedding[1] - embedding[0])) > 0.5  # one step of a 1000-step schedule


@pytest.mark.slow
def test_gradient_step_lowers_the_diffusion_loss():
    """The pure-step pattern of the train steps: split, merge inside the loss, optax update."""
    graphdef, params = nnx.split(_random_unet(16, 1, num_classes=2), nnx.Param)
    schedule = cosine_schedule(100)
    images = jnp.tile(jnp.linspace(-1, 1, 16).reshape(1, 16, 1, 1), (4, 1, 16, 1))
    labels = jnp.array([0, 1, 0, 1])
    key = jax.random.key(3)

    def loss_fn(params):
        model_fn = nnx.merge(graphdef, params)
        return diffusion_loss(model_fn, schedule, images, key, labels, label_dropout=0.2,
                              null_label=model_fn.null_label)[0]

    optimizer = optax.adam(1e-3)

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, grads

    opt_state = optimizer.init(params)
    params, opt_state, first, grads = step(params, opt_state)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(grads))
    assert all(np.any(leaf != 0) for leaf in jax.tree.leaves(grads))  # every parameter takes part
    for _ in range(3):
        params, opt_state, loss, _ = step(params, opt_state)
    assert float(loss) < float(first)


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_parameters_and_output():
    model = _random_unet(16, 1, num_classes=2, dtype=jnp.bfloat16)
    assert model.stem.kernel.dtype == jnp.float32
    out = _apply(model, jnp.ones((2, 16, 16, 1)), jnp.array([0.3, 0.6]), jnp.array([0, 1]))
    assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))


def test_bad_sizes_and_labels_are_named():
    with pytest.raises(ValueError, match="image_size 18"):
        UNet(18, 1, rngs=nnx.Rngs(0), **{**TINY, "channel_multipliers": (1, 2, 2)})
    with pytest.raises(ValueError, match="norm_groups"):
        UNet(16, 1, rngs=nnx.Rngs(0), **{**TINY, "norm_groups": 3})
    with pytest.raises(ValueError, match="unknown UNet size"):
        build_unet("huge", 64, rngs=nnx.Rngs(0))
    model = _random_unet(16, 1)
    with pytest.raises(ValueError, match="unconditional"):
        model(jnp.ones((1, 16, 16, 1)), jnp.array([0.3]), jnp.array([0]))
    with pytest.raises(ValueError, match="null label"):
        model.null_label


@pytest.mark.slow
def test_onednn_and_xla_convolutions_agree():
    """The CPU's oneDNN kernels ("auto" picks them on one CPU device) compute the same network."""
    x = jax.random.normal(jax.random.key(5), (2, 16, 16, 1))
    t, labels = jnp.array([0.2, 0.7]), jnp.array([0, 1])
    on_xla = _apply(_random_unet(16, 1, num_classes=2), x, t, labels)
    on_onednn = _apply(_random_unet(16, 1, num_classes=2, conv_backend="onednn"), x, t, labels)
    assert float(jnp.max(jnp.abs(on_xla))) > 0.1
    np.testing.assert_allclose(on_onednn, on_xla, rtol=1e-3, atol=1e-3)
