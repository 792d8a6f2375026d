"""Every convolution, up-sampling convolution and pooling shape of a model, and its cost.

`model_layers` traces a model abstractly (no parameters are allocated, nothing runs)
and returns its distinct layer shapes, each with the names of the layers that share
it. Two mechanisms, each the exact source of its facts:

- Layers that are modules (`nnx.Conv`, `jaxmed.nn.UpsampleConv`, `jaxmed.nn.MaxPool`):
  their calls are recorded during the trace with the module's path, its input shape and
  its settings.
- Pooling functions (`nnx.max_pool`, `nnx.avg_pool`) are read from the traced program as
  `reduce_window` operations, with their exact windows, strides and padding.

Costs, per example batch `B`, counted as the useful work of the layer (what a direct
implementation must do; padding taps included, bias ignored):

- convolution forward: 2 B H_out W_out C_out k_h k_w C_in floating-point operations;
  the input gradient and the weight gradient each cost the same.
- 4x4 stride-2 up-sampling convolution: every input pixel meets all 16 taps,
  2 B H W 16 C_in C_out; likewise for each gradient.
- pooling forward reads the input and writes the output, (B H W C + B H_out W_out C)
  elements; its input gradient reads the input and the output cotangent and writes
  the input gradient, (2 B H W C + B H_out W_out C) elements.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn.linear import canonicalize_padding
from jax import lax

from jaxmed import families
from jaxmed.nn import MaxPool, UpsampleConv

CONV, UPSAMPLE_CONV, MAX_POOL, AVG_POOL = "conv", "upsample_conv", "max_pool", "avg_pool"
CONV_KINDS = (CONV, UPSAMPLE_CONV)
POOL_KINDS = (MAX_POOL, AVG_POOL)
#: Every model of every registered family (`jaxmed.families`).
MODELS = tuple(model for family in families.all_families() for model in family.config_type.MODELS)
_POOL_PRIMITIVES = {"reduce_window_max": MAX_POOL, "reduce_window_sum": AVG_POOL}

Pair = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class LayerShape:
    """One layer's shape, per example (the batch is chosen when timing).

    Attributes:
      kind: "conv", "upsample_conv" (4x4 stride-2 "SAME" transposed convolution), "max_pool" or "avg_pool".
      height, width: input spatial size.
      in_channels, out_channels: channels (equal for pooling).
      kernel: window (k_h, k_w).
      strides: (s_h, s_w); for "upsample_conv", the up-sampling factor (2, 2).
      padding: ((top, bottom), (left, right)) of the input; for "upsample_conv" ((0, 0), (0, 0)),
        its output is exactly 2H x 2W.
    """

    kind: str
    height: int
    width: int
    in_channels: int
    out_channels: int
    kernel: Pair
    strides: Pair
    padding: tuple[Pair, Pair]

    @property
    def output_size(self) -> Pair:
        """(H_out, W_out)."""
        if self.kind == UPSAMPLE_CONV:
            return 2 * self.height, 2 * self.width
        sizes = []
        for size, k, s, (low, high) in zip((self.height, self.width), self.kernel, self.strides, self.padding):
            sizes.append((size + low + high - k) // s + 1)
        return sizes[0], sizes[1]

    def input_shape(self, batch: int) -> tuple[int, int, int, int]:
        return batch, self.height, self.width, self.in_channels

    def output_shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, *self.output_size, self.out_channels)

    @property
    def kernel_shape(self) -> tuple[int, int, int, int] | None:
        """(k_h, k_w, C_in, C_out) for convolutions, None for pooling."""
        return None if self.kind in POOL_KINDS else (*self.kernel, self.in_channels, self.out_channels)

    def flop(self, batch: int) -> int:
        """Floating-point operations of the forward pass (and of each gradient) computed directly; 0 for pooling."""
        if self.kind == UPSAMPLE_CONV:
            return 2 * batch * self.height * self.width * self.kernel[0] * self.kernel[1] * self.in_channels \
                * self.out_channels
        if self.kind == CONV:
            out_h, out_w = self.output_size
            return 2 * batch * out_h * out_w * self.out_channels * self.kernel[0] * self.kernel[1] * self.in_channels
        return 0

    def bytes_moved(self, batch: int, itemsize: int, direction: str) -> int:
        """Bytes a pooling layer must read and write ("forward" or "input_grad"; see the module docstring)."""
        inputs = batch * self.height * self.width * self.in_channels
        outputs = batch * self.output_size[0] * self.output_size[1] * self.out_channels
        if direction == "forward":
            return (inputs + outputs) * itemsize
        if direction == "input_grad":
            return (2 * inputs + outputs) * itemsize
        raise ValueError(f"direction must be 'forward' or 'input_grad', got {direction!r}")

    def describe(self) -> str:
        """e.g. "conv 4x4/2 64x64x32->64" (input size and channels)."""
        window = f"{self.kernel[0]}x{self.kernel[1]}/{self.strides[0]}"
        channels = f"{self.in_channels}" if self.kind in POOL_KINDS else f"{self.in_channels}->{self.out_channels}"
        return f"{self.kind} {window} {self.height}x{self.width}x{channels}"


@dataclasses.dataclass(frozen=True)
class ModelLayer:
    """A distinct layer shape of a model and the layers that have it.

    Attributes:
      model: the model's label, e.g. "dcgan128".
      names: paths of the layers with this shape, e.g. ("discriminator/down_blocks/1",).
      shape: the shape.
    """

    model: str
    names: tuple[str, ...]
    shape: LayerShape


def _pair(value) -> Pair:
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


def _conv_shape(conv: nnx.Conv, x_shape: tuple[int, ...]) -> LayerShape:
    kernel_h, kernel_w, in_channels, out_channels = conv.kernel.shape
    for setting in ("kernel_dilation", "input_dilation"):
        if _pair(getattr(conv, setting) or 1) != (1, 1):
            raise ValueError(f"dilated convolutions are not benchmarked ({setting}={getattr(conv, setting)})")
    if conv.feature_group_count != 1:
        raise ValueError(f"grouped convolutions are not benchmarked (feature_group_count={conv.feature_group_count})")
    height, width = x_shape[-3], x_shape[-2]
    strides = _pair(conv.strides or 1)
    padding = canonicalize_padding(conv.padding, 2)
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            raise ValueError(f"padding {padding!r} is not benchmarked")
        padding = lax.padtype_to_pads((height, width), (kernel_h, kernel_w), strides, padding)
    return LayerShape(CONV, height, width, in_channels, out_channels, (kernel_h, kernel_w), strides,
                      (_pair(padding[0]), _pair(padding[1])))


def _upsample_shape(layer: UpsampleConv, x_shape: tuple[int, ...]) -> LayerShape:
    kernel_h, kernel_w, in_channels, out_channels = layer.kernel.shape
    return LayerShape(UPSAMPLE_CONV, x_shape[-3], x_shape[-2], in_channels, out_channels, (kernel_h, kernel_w),
                      (2, 2), ((0, 0), (0, 0)))


def _max_pool_shape(layer: MaxPool, x_shape: tuple[int, ...]) -> LayerShape:
    height, width, channels = x_shape[-3:]
    padding = layer.padding
    if isinstance(padding, str):
        padding = lax.padtype_to_pads((height, width), layer.window, layer.strides, padding)
    return LayerShape(MAX_POOL, height, width, channels, channels, _pair(layer.window), _pair(layer.strides),
                      (_pair(padding[0]), _pair(padding[1])))


_LAYER_SHAPES = {nnx.Conv: _conv_shape, UpsampleConv: _upsample_shape, MaxPool: _max_pool_shape}


@contextlib.contextmanager
def _recording_layer_calls(calls: list, module_paths: dict[int, str]) -> Iterator[None]:
    """While active, every call of a convolution layer appends (path, LayerShape) to `calls`.

    The classes' `__call__` is wrapped for the duration only (Python looks special
    methods up on the class); the wrapped call still computes, so the trace is complete.
    """
    originals = {cls: cls.__call__ for cls in _LAYER_SHAPES}

    def recording(cls, original):
        def call(self, x, *args, **kwargs):
            calls.append((module_paths.get(id(self), type(self).__name__), _LAYER_SHAPES[cls](self, x.shape)))
            return original(self, x, *args, **kwargs)
        return call

    try:
        for cls, original in originals.items():
            cls.__call__ = recording(cls, original)
        yield
    finally:
        for cls, original in originals.items():
            cls.__call__ = original


def _pool_shapes(jaxpr) -> Iterator[LayerShape]:
    """The NHWC spatial `reduce_window` operations of a (closed) jaxpr, sub-jaxprs included, in order."""
    for eqn in jaxpr.eqns:
        kind = _POOL_PRIMITIVES.get(eqn.primitive.name)
        if kind is not None:
            window, strides, padding = (eqn.params[name] for name in ("window_dimensions", "window_strides",
                                                                     "padding"))
            _, height, width, channels = eqn.invars[0].aval.shape
            if window[0] != 1 or window[3] != 1:
                raise ValueError(f"only spatial NHWC pooling is benchmarked, got window {window}")
            yield LayerShape(kind, height, width, channels, channels, _pair(window[1:3]), _pair(strides[1:3]),
                             (_pair(padding[1]), _pair(padding[2])))
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _pool_shapes(inner)


def trace_layers(module: nnx.Module, input_shape: tuple[int, ...], model: str,
                 prefix: str = "") -> list[tuple[str, LayerShape]]:
    """(layer name, shape) of every convolution and pooling call in `module(x)`, in call order per kind.

    Args:
      module: an NNX module (may be abstract, from `nnx.eval_shape`).
      input_shape: shape of its input, batch included (the batch size does not matter).
      model: label used in error messages.
      prefix: prepended to layer names, e.g. "generator/".
    """
    graphdef, state = nnx.split(module)
    calls: list[tuple[str, LayerShape]] = []

    def forward(state, x):
        live = nnx.merge(graphdef, state)
        paths = {id(m): prefix + "/".join(str(part) for part in path) for path, m in nnx.iter_modules(live)}
        with _recording_layer_calls(calls, paths):
            return live(x)

    closed = jax.make_jaxpr(forward)(state, jax.ShapeDtypeStruct(input_shape, jnp.float32))
    pools = [(f"{prefix}{shape.kind}#{index}", shape) for index, shape in enumerate(_pool_shapes(closed.jaxpr), 1)]
    if not calls and not pools:
        raise ValueError(f"{model}: no convolution or pooling layer found")
    return calls + pools


def group_distinct(model: str, named_shapes: list[tuple[str, LayerShape]]) -> list[ModelLayer]:
    """One `ModelLayer` per distinct shape, in order of first appearance, naming every layer that has it."""
    names: dict[LayerShape, list[str]] = {}
    for name, shape in named_shapes:
        names.setdefault(shape, []).append(name)
    return [ModelLayer(model, tuple(layer_names), shape) for shape, layer_names in names.items()]


def merge_across_models(layers: list[ModelLayer]) -> list[ModelLayer]:
    """One `ModelLayer` per distinct shape over several models: later models' layers join the first's names.

    A joined name carries its model, e.g. "vae128:decoder/up_blocks/0" (the VAE is built
    from the DCGAN's layers, so a benchmark need not time its shapes twice).
    """
    merged: dict[LayerShape, ModelLayer] = {}
    for layer in layers:
        first = merged.get(layer.shape)
        if first is None:
            merged[layer.shape] = layer
        else:
            joined = first.names + tuple(f"{layer.model}:{name}" for name in layer.names)
            merged[layer.shape] = dataclasses.replace(first, names=joined)
    return list(merged.values())


def model_label(model: str, image_size: int) -> str:
    """"dcgan128" and "vae128" for generators (their size is part of their name), else e.g. "seed_cnn"."""
    generative = families.for_model(model).generates
    return f"{model}{image_size}" if generative else model


def model_layers(model: str, image_size: int = 128, *, channels: int = 1, latent_dim: int = 100,
                 resnet_width: int = 64) -> list[ModelLayer]:
    """The distinct convolution, up-sampling and pooling shapes of a model.

    Args:
      model: a model of a registered family, e.g. "dcgan" (generator and discriminator), "vae"
        (encoder and decoder), "seed_cnn" or "resnet18".
      image_size: image side (the DCGAN reference is 128).
      channels: image channels.
      latent_dim: generators' noise length (and the VAE's latent size).
      resnet_width: ResNet-18 base width (64 in the reference).

    Raises:
      ValueError: for an unknown model or a layer this benchmark cannot time.
    """
    family = families.for_model(model)
    if family is None:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    defaults = family.config_type()
    # XLA's convolutions: tracing needs only shapes, and must not build kernels.
    fields = {"model": model, "image_size": image_size, "channels": channels, "latent_dim": latent_dim,
              "width": resnet_width, "conv_backend": "xla"}
    config = dataclasses.replace(defaults, **{key: value for key, value in fields.items() if hasattr(defaults, key)})
    label = model_label(model, image_size)
    named = [layer for prefix, (network, input_shape) in family.networks(config).items()
             for layer in trace_layers(network, input_shape, label, prefix)]
    return group_distinct(label, named)
