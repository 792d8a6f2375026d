"""Image classifiers: the seed paper's lung-nodule CNN and an adapted ResNet-18.

Both map images `x_BxHxWxC` in [-1, 1] (1 or 3 channels, 28-256 px) to float32 logits
`(B, num_classes)`. Binary tasks (nodule / no nodule) use two logits and a softmax, like
every other class count, so one loss and one metric code path serves all tasks.

`SeedCNN` (seed paper, section 3.1): convolution layers y = f(W * x + b) (eq. 1), max
pooling over 2x2 windows with stride 2 (eq. 2) and fully connected layers, with dropout
before the last one. The paper fixes the layer types, not the sizes; this module uses

    [Conv 3x3 "SAME" (no bias) -> BN -> ReLU -> MaxPool 2x2/2] x (32, 64, 128)
    -> flatten (S/8)^2 * 128 -> Dense 128 -> ReLU -> Dropout(0.5) -> Dense num_classes

where S/8 is floor-divided once per pool ("VALID" pooling, as eq. 2: 28 -> 14 -> 7 -> 3),
so the flatten size follows `image_size`.

`ResNet18`: He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016),
table 1: BasicBlocks (two 3x3 convolutions + identity) x [2, 2, 2, 2] at 64, 128, 256,
512 channels, BatchNorm after each convolution, stride 2 at the first block of stages
2-4 with a 1x1 stride-2 convolution + BN ("option B") projection shortcut, global
average pooling and one dense layer. Adaptations:
- Inputs of 64 px or more use the ImageNet stem (7x7/2 convolution, 3x3/2 max pool, an
  overall stride of 4). Smaller inputs (28-32 px) use the CIFAR stem of He et al.,
  section 4.2: one 3x3 stride-1 convolution and no pool, because a 4x reduction of a
  28 px image would leave a 1x1 map before the last stage.
- Padding is explicit and symmetric (3 for 7x7, 1 for 3x3), as in the reference and
  torchvision, rather than "SAME" (which pads stride-2 layers asymmetrically), so
  weights and feature-map sizes match the common PyTorch implementation.
- `width` scales all channel counts (64 in the reference); narrow networks keep CPU
  tests and runs fast. Optional dropout before the head (off by default).
At full width, 1 channel and 2 classes the network has 11.17M parameters (torchvision's
resnet18 has 11.69M with 3 channels and 1000 classes).

Choices common to both, and why:
- Convolutions followed by BatchNorm carry no bias: BN's shift plays the part of b in
  eq. 1 and a bias would be redundant.
- BatchNorm momentum is 0.9 (PyTorch's 0.1), as in `jaxmed.models.dcgan`: the default
  0.99 leaves running statistics stale after short runs.
- Convolution kernels start from He (fan-out, normal) initialisation, as in He et al.
  and torchvision, suited to ReLU networks; dense layers keep the NNX default.
- `model.train()` / `model.eval()` switch dropout (active only in train mode) and BN
  (batch statistics and running-average updates in train mode, running averages in eval
  mode). Dropout keys come from the `dropout` stream of the construction `rngs` (or its
  default stream) and live in the model state, so they advance call by call and are
  checkpointed with the model.
- `dtype` is the computation dtype (e.g. bfloat16); parameters stay float32 and logits
  are returned in float32. On oneDNN, bfloat16 convolutions return float32, and BatchNorm
  and the dense layers run in float32 (`jaxmed.nn.mixed_precision_dtypes` and
  `jaxmed.nn.dense_dtype` say why).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmed.nn import (BatchNorm, ConvBackend, MaxPool, conv_general_dilated_for, convolution_dtype, dense_dtype,
                       mixed_precision_dtypes, resolve_conv_backend)

CLASSIFIERS = ("seed_cnn", "resnet18")

BATCH_NORM_MOMENTUM = 0.9
CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")  # He et al. 2015, as torchvision
SEED_CNN_FEATURES = (32, 64, 128)
SEED_CNN_HIDDEN = 128
RESNET18_BLOCKS = (2, 2, 2, 2)
SMALL_INPUT_SIZE = 64  # below this, ResNet18 uses the CIFAR (3x3, stride 1, no pool) stem


def _check_sizes(image_size: int, channels: int, num_classes: int, minimum_size: int) -> None:
    if image_size < minimum_size:
        raise ValueError(f"image_size must be at least {minimum_size}, got {image_size}")
    if channels < 1:
        raise ValueError(f"channels must be positive, got {channels}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2 (binary tasks use two logits), got {num_classes}")


def _batch_norm(features: int, dtype, backend: str, rngs: nnx.Rngs) -> BatchNorm:
    """BatchNorm after a convolution computing in `dtype` on the resolved `backend` (float32 after
    oneDNN's bfloat16 ones)."""
    _, norm_dtype = mixed_precision_dtypes(dtype, backend)
    return BatchNorm(features, momentum=BATCH_NORM_MOMENTUM, epsilon=1e-5, dtype=norm_dtype,
                     one_pass_sums=(backend == "onednn"), rngs=rngs)


def _conv(in_features: int, out_features: int, kernel: int, stride: int, dtype, backend: str,
          rngs: nnx.Rngs) -> nnx.Conv:
    """Bias-free convolution with symmetric padding kernel // 2 (the reference's padding), on the resolved `backend`."""
    pad = kernel // 2
    outputs, _ = mixed_precision_dtypes(dtype, backend)
    dtype = convolution_dtype(dtype, backend, in_features, out_features, kernel, stride)
    return nnx.Conv(in_features, out_features, kernel_size=(kernel, kernel), strides=(stride, stride),
                    padding=((pad, pad), (pad, pad)), use_bias=False, kernel_init=CONV_INIT, dtype=dtype,
                    preferred_element_type=outputs, conv_general_dilated=conv_general_dilated_for(backend), rngs=rngs)


def _dropout(rate: float, rngs: nnx.Rngs) -> nnx.Dropout:
    # The key stream is forked at construction and kept in the module state: without a
    # `dropout` (or default) stream there is nothing to draw masks from, so fail early.
    try:
        return nnx.Dropout(rate, rngs=rngs)
    except KeyError:
        raise ValueError("dropout_rate > 0 needs a 'dropout' (or default) stream in rngs, "
                         "e.g. nnx.Rngs(params=0, dropout=1)") from None


def seed_cnn_flatten_size(image_size: int, features: Sequence[int] = SEED_CNN_FEATURES) -> int:
    """Length of the flattened SeedCNN feature map for `image_size`.

    Args:
      image_size: input height and width.
      features: channels of the convolution stages (one 2x2/2 pool each).

    Returns:
      (image_size // 2**len(features))**2 * features[-1]: each "VALID" pool floors.
    """
    side = image_size
    for _ in features:
        side //= 2
    return side * side * features[-1]


class SeedCNN(nnx.Module):
    """The seed paper's convolutional classifier (section 3.1; layout in the module docstring).

    Args:
      image_size: input height and width (at least 2**len(features), 28-256 in practice).
      channels: input channels (1 grayscale, 3 RGB).
      num_classes: number of logits (2 for binary tasks).
      features: channels of the convolution stages, one 2x2/2 max pool after each.
      hidden_features: width of the hidden dense layer.
      dropout_rate: dropout probability before the last dense layer (0 disables it).
      dtype: computation dtype (None: float32); parameters stay float32.
      conv_backend: "auto", "xla" or "onednn" (see `jaxmed.nn.conv_backend`); "auto" assumes
        one device, so code that shards the model passes the resolved value, as training does.
      rngs: `params` (or default) stream for initialisation and, if dropout_rate > 0,
        a `dropout` (or default) stream for the dropout masks.
    """

    def __init__(self, image_size: int, channels: int = 1, num_classes: int = 2, *,
                 features: Sequence[int] = SEED_CNN_FEATURES, hidden_features: int = SEED_CNN_HIDDEN,
                 dropout_rate: float = 0.5, dtype=None, conv_backend: ConvBackend = "auto", rngs: nnx.Rngs):
        _check_sizes(image_size, channels, num_classes, minimum_size=2 ** len(features))
        conv_backend = resolve_conv_backend(conv_backend)
        features = [channels, *features]
        self.convs = nnx.List([_conv(f_in, f_out, 3, 1, dtype, conv_backend, rngs)
                               for f_in, f_out in zip(features[:-1], features[1:])])
        self.norms = nnx.List([_batch_norm(f, dtype, conv_backend, rngs) for f in features[1:]])
        self.pool = MaxPool((2, 2), (2, 2), "VALID", use_kernel=(conv_backend == "onednn"))  # eq. 2
        self.flatten_size = seed_cnn_flatten_size(image_size, features[1:])
        linear_dtype = dense_dtype(dtype, conv_backend)
        self.hidden = nnx.Linear(self.flatten_size, hidden_features, dtype=linear_dtype, rngs=rngs)
        self.dropout = _dropout(dropout_rate, rngs) if dropout_rate > 0 else None
        self.classify = nnx.Linear(hidden_features, num_classes, dtype=linear_dtype, rngs=rngs)

    def features(self, x_BxHxWxC: jax.Array) -> jax.Array:
        """The hidden layer's activations (B, hidden_features): what the last dense layer classifies.

        `jaxmed.training.feature_extractor` embeds images with this for the generative metrics.
        """
        x = x_BxHxWxC
        for conv, norm in zip(self.convs, self.norms):
            x = nnx.relu(norm(conv(x)))  # eq. 1, with BN between W * x and f
            x = self.pool(x)
        x_BxF = x.reshape(x.shape[0], -1)
        return nnx.relu(self.hidden(x_BxF))

    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        """Logits for a batch of images.

        Args:
          x_BxHxWxC: images in [-1, 1].

        Returns:
          float32 logits of shape (B, num_classes).
        """
        h_BxD = self.features(x_BxHxWxC)
        if self.dropout is not None:
            h_BxD = self.dropout(h_BxD)
        return self.classify(h_BxD).astype(jnp.float32)


class BasicBlock(nnx.Module):
    """ResNet basic block: relu(BN(conv3x3(relu(BN(conv3x3/stride(x))))) + shortcut(x)).

    Args:
      in_features: input channels.
      out_features: output channels.
      stride: stride of the first convolution (and of the projection shortcut).
      dtype: computation dtype (None: float32); parameters stay float32.
      conv_backend: "auto", "xla" or "onednn" (see `jaxmed.nn.conv_backend`); "auto" assumes
        one device, so code that shards the model passes the resolved value, as training does.
      rngs: parameter initialisation keys.
    """

    def __init__(self, in_features: int, out_features: int, stride: int = 1, *, dtype=None,
                 conv_backend: ConvBackend = "auto", rngs: nnx.Rngs):
        conv_backend = resolve_conv_backend(conv_backend)
        self.conv1 = _conv(in_features, out_features, 3, stride, dtype, conv_backend, rngs)
        self.norm1 = _batch_norm(out_features, dtype, conv_backend, rngs)
        self.conv2 = _conv(out_features, out_features, 3, 1, dtype, conv_backend, rngs)
        # The last BN scale starts at one, not zero (Goyal et al.'s trick), so that every
        # parameter receives a gradient from the first step.
        self.norm2 = _batch_norm(out_features, dtype, conv_backend, rngs)
        if stride != 1 or in_features != out_features:
            # He et al.'s option B: project only where the shape changes, identity elsewhere.
            self.shortcut = _conv(in_features, out_features, 1, stride, dtype, conv_backend, rngs)
            self.shortcut_norm = _batch_norm(out_features, dtype, conv_backend, rngs)
        else:
            self.shortcut = None
            self.shortcut_norm = None

    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        y = nnx.relu(self.norm1(self.conv1(x_BxHxWxC)))
        y = self.norm2(self.conv2(y))
        if self.shortcut is None:
            skip = x_BxHxWxC
        else:
            skip = self.shortcut_norm(self.shortcut(x_BxHxWxC))
        return nnx.relu(y + skip.astype(y.dtype))


class ResNet18(nnx.Module):
    """ResNet-18 (He et al. 2016) for 28-256 px images; adaptations in the module docstring.

    Args:
      image_size: input height and width; below 64 the CIFAR stem is used.
      channels: input channels (1 grayscale, 3 RGB).
      num_classes: number of logits (2 for binary tasks).
      width: channels of the first stage (64 in the reference); stages use 1, 2, 4, 8x.
      dropout_rate: dropout probability before the head (0, the reference, disables it).
      dtype: computation dtype (None: float32); parameters stay float32.
      conv_backend: "auto", "xla" or "onednn" (see `jaxmed.nn.conv_backend`); "auto" assumes
        one device, so code that shards the model passes the resolved value, as training does.
      rngs: `params` (or default) stream for initialisation and, if dropout_rate > 0,
        a `dropout` (or default) stream for the dropout masks.
    """

    def __init__(self, image_size: int, channels: int = 1, num_classes: int = 2, *, width: int = 64,
                 dropout_rate: float = 0.0, dtype=None, conv_backend: ConvBackend = "auto", rngs: nnx.Rngs):
        _check_sizes(image_size, channels, num_classes, minimum_size=8)
        conv_backend = resolve_conv_backend(conv_backend)
        self.small_input = image_size < SMALL_INPUT_SIZE
        if self.small_input:
            self.stem = _conv(channels, width, 3, 1, dtype, conv_backend, rngs)
        else:
            self.stem = _conv(channels, width, 7, 2, dtype, conv_backend, rngs)
            self.stem_pool = MaxPool((3, 3), (2, 2), ((1, 1), (1, 1)), use_kernel=(conv_backend == "onednn"))
        self.stem_norm = _batch_norm(width, dtype, conv_backend, rngs)
        blocks = []
        in_features = width
        for stage, num_blocks in enumerate(RESNET18_BLOCKS):
            out_features = width << stage
            for index in range(num_blocks):
                stride = 2 if (stage > 0 and index == 0) else 1
                blocks.append(BasicBlock(in_features, out_features, stride, dtype=dtype, conv_backend=conv_backend,
                                         rngs=rngs))
                in_features = out_features
        self.blocks = nnx.List(blocks)
        self.dropout = _dropout(dropout_rate, rngs) if dropout_rate > 0 else None
        self.classify = nnx.Linear(in_features, num_classes, dtype=dense_dtype(dtype, conv_backend), rngs=rngs)

    def features(self, x_BxHxWxC: jax.Array) -> jax.Array:
        """The globally pooled last stage (B, 8 * width): what the head classifies.

        `jaxmed.training.feature_extractor` embeds images with this for the generative metrics.
        """
        x = nnx.relu(self.stem_norm(self.stem(x_BxHxWxC)))
        if not self.small_input:
            x = self.stem_pool(x)
        for block in self.blocks:
            x = block(x)
        # Average in float32: summing up to 64x64 bf16 values loses precision.
        return jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(x.dtype)

    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        """Logits for a batch of images.

        Args:
          x_BxHxWxC: images in [-1, 1].

        Returns:
          float32 logits of shape (B, num_classes).
        """
        pooled_BxF = self.features(x_BxHxWxC)
        if self.dropout is not None:
            pooled_BxF = self.dropout(pooled_BxF)
        return self.classify(pooled_BxF).astype(jnp.float32)


def build_classifier(name: str, image_size: int, channels: int = 1, num_classes: int = 2, *, width: int = 64,
                     dropout_rate: float | None = None, dtype=None, conv_backend: ConvBackend = "auto",
                     rngs: nnx.Rngs) -> nnx.Module:
    """Builds a classifier by name.

    Args:
      name: one of `CLASSIFIERS` ("seed_cnn", "resnet18").
      image_size: input height and width.
      channels: input channels.
      num_classes: number of logits.
      width: ResNet-18 base width (64 in the reference). Ignored by "seed_cnn", whose
        layer sizes are fixed, so one config can serve both models.
      dropout_rate: dropout before the last dense layer; None keeps the model's default
        (0.5 for "seed_cnn", 0 for "resnet18").
      dtype: computation dtype (None: float32); parameters stay float32.
      conv_backend: "auto", "xla" or "onednn" (see `jaxmed.nn.conv_backend`); "auto" assumes
        one device, so code that shards the model passes the resolved value, as training does.
      rngs: `params` stream, plus a `dropout` stream when dropout is on.

    Returns:
      The model, in train mode (NNX's default).

    Raises:
      ValueError: if `name` is not one of `CLASSIFIERS`.
    """
    dropout = {} if dropout_rate is None else {"dropout_rate": dropout_rate}
    if name == "seed_cnn":
        return SeedCNN(image_size, channels, num_classes, dtype=dtype, conv_backend=conv_backend, rngs=rngs,
                       **dropout)
    if name == "resnet18":
        return ResNet18(image_size, channels, num_classes, width=width, dtype=dtype, conv_backend=conv_backend,
                        rngs=rngs, **dropout)
    raise ValueError(f"unknown classifier {name!r}; choose one of {', '.join(CLASSIFIERS)}")
