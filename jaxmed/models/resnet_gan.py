"""SNGAN/BigGAN-style residual generator and discriminator, any size 32-256, optionally class-conditional.

The DCGAN (`jaxmed.models.dcgan`) overfits and collapses with a few hundred training
images; the residual networks of SNGAN (Miyato et al. 2018) and BigGAN (Brock et al.
2019), with a spectrally normalised discriminator, train stably there together with
`jaxmed.nn.diffaugment` and the regularisers of `jaxmed.losses`.

    Generator      z -> Linear -> 4x4xF0
                   -> [GeneratorBlock: BN, ReLU, 2x nearest upsample, conv3x3, BN, ReLU, conv3x3;
                       shortcut conv1x1 then upsample] per factor of two up to the image size
                   -> BN -> ReLU -> conv3x3 -> tanh                         images in [-1, 1]
    Discriminator  [DiscriminatorBlock: (ReLU), conv3x3, ReLU, conv3x3, 2x2 average pool;
                    shortcut conv1x1 and pool] per factor of two down to 4x4, then one block at 4x4
                   -> ReLU -> sum over space -> ProjectionHead            one logit per image

Every discriminator convolution is spectrally normalised (`jaxmed.nn.spectral_norm`),
its u vectors kept as batch statistics; the discriminator has no BatchNorm, so the
R1 penalty's per-image gradients are exact (R1 differentiates D twice: on the CPU,
build a discriminator that R1 regularises with conv_backend="xla", see
`jaxmed.losses.r1_penalty`). With `num_classes > 0` the generator's
BatchNorms become `ConditionalBatchNorm`s (except the last, as in BigGAN) and the
discriminator gets the projection head's class term; both then take `labels_B`.

Channels: F at the 4x4 end, halving per block towards the image, from
`base_features` at the image end, at most `max_features` (32 and 256: 32, 64, 128,
256, 256... at 32, 16, 8, 4 px). The first discriminator block pools before its
shortcut convolution and has no leading ReLU (SNGAN's "optimized" block, since the
input is an image). Weights start from Xavier-uniform, as in SNGAN's code.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmed.nn import (BatchNorm, ConvBackend, conv_general_dilated_for, dense_dtype, mixed_precision_dtypes,
                       resolve_conv_backend)
from jaxmed.nn.conditional_batch_norm import ConditionalBatchNorm
from jaxmed.nn.projection import ProjectionHead, check_labels
from jaxmed.nn.spectral_norm import SpectralNorm

BOTTLENECK_SIZE = 4
BATCH_NORM_MOMENTUM = 0.9
WEIGHT_INIT = nnx.initializers.xavier_uniform()


def num_blocks(image_size: int) -> int:
    """Resolution-changing blocks between 4x4 and `image_size`.

    Raises:
      ValueError: if `image_size` is not a power of two in [32, 256].
    """
    if image_size not in (32, 64, 128, 256):
        raise ValueError(f"ResNet GAN image size must be 32, 64, 128 or 256, got {image_size}")
    return int(math.log2(image_size // BOTTLENECK_SIZE))


def block_features(image_size: int, base_features: int, max_features: int) -> list[int]:
    """Channels from the 4x4 end to the image end: base_features << k, capped at max_features."""
    blocks = num_blocks(image_size)
    return [min(max_features, base_features << (blocks - index)) for index in range(blocks + 1)]


def upsample_nearest(x_BxHxWxC: jax.Array) -> jax.Array:
    """2x nearest-neighbour upsampling."""
    batch, height, width, channels = x_BxHxWxC.shape
    x = jnp.broadcast_to(x_BxHxWxC[:, :, None, :, None, :], (batch, height, 2, width, 2, channels))
    return x.reshape(batch, 2 * height, 2 * width, channels)


def average_pool(x_BxHxWxC: jax.Array) -> jax.Array:
    """2x2 average pooling with stride 2."""
    batch, height, width, channels = x_BxHxWxC.shape
    return x_BxHxWxC.reshape(batch, height // 2, 2, width // 2, 2, channels).mean(axis=(2, 4))


class _Layers:
    """Builds the convolutions and normalisations of one network for its dtype and backend; `dense_dtype` is what
    its dense layers compute in."""

    def __init__(self, dtype, conv_backend: ConvBackend, rngs: nnx.Rngs):
        self.backend = resolve_conv_backend(conv_backend)
        self.conv_outputs, self.norm_dtype = mixed_precision_dtypes(dtype, self.backend)
        self.dtype = dtype
        self.dense_dtype = dense_dtype(dtype, self.backend)
        self.rngs = rngs

    def conv(self, in_features: int, out_features: int, kernel: int, spectral_norm: bool) -> nnx.Module:
        pad = kernel // 2
        conv = nnx.Conv(in_features, out_features, kernel_size=(kernel, kernel), padding=((pad, pad), (pad, pad)),
                        kernel_init=WEIGHT_INIT, dtype=self.dtype, preferred_element_type=self.conv_outputs,
                        conv_general_dilated=conv_general_dilated_for(self.backend), rngs=self.rngs)
        return SpectralNorm(conv, rngs=self.rngs) if spectral_norm else conv

    def norm(self, features: int, num_classes: int = 0) -> nnx.Module:
        kwargs = dict(momentum=BATCH_NORM_MOMENTUM, epsilon=1e-5, dtype=self.norm_dtype,
                      one_pass_sums=(self.backend == "onednn"), rngs=self.rngs)
        if num_classes > 0:
            return ConditionalBatchNorm(features, num_classes, **kwargs)
        return BatchNorm(features, **kwargs)


def _normalize(norm: nnx.Module, x: jax.Array, labels_B: jax.Array | None, strength) -> jax.Array:
    return norm(x) if labels_B is None else norm(x, labels_B, strength=strength)


class GeneratorBlock(nnx.Module):
    """Residual block doubling the resolution: (c)BN, ReLU, upsample, conv3x3, (c)BN, ReLU, conv3x3 + shortcut."""

    def __init__(self, in_features: int, out_features: int, num_classes: int, layers: _Layers):
        self.norm1 = layers.norm(in_features, num_classes)
        self.conv1 = layers.conv(in_features, out_features, 3, spectral_norm=False)
        self.norm2 = layers.norm(out_features, num_classes)
        self.conv2 = layers.conv(out_features, out_features, 3, spectral_norm=False)
        self.shortcut = layers.conv(in_features, out_features, 1, spectral_norm=False)

    def __call__(self, x: jax.Array, labels_B: jax.Array | None = None, strength=1.0) -> jax.Array:
        h = upsample_nearest(jax.nn.relu(_normalize(self.norm1, x, labels_B, strength)))
        h = self.conv1(h)
        h = self.conv2(jax.nn.relu(_normalize(self.norm2, h, labels_B, strength)))
        # A 1x1 convolution commutes with nearest upsampling: convolve the smaller map.
        return h + upsample_nearest(self.shortcut(x))


class DiscriminatorBlock(nnx.Module):
    """Residual block with spectrally normalised convolutions, optionally halving the resolution."""

    def __init__(self, in_features: int, out_features: int, *, downsample: bool, first: bool, layers: _Layers):
        self.first = first
        self.downsample = downsample
        self.conv1 = layers.conv(in_features, out_features, 3, spectral_norm=True)
        self.conv2 = layers.conv(out_features, out_features, 3, spectral_norm=True)
        learned_shortcut = downsample or in_features != out_features
        self.shortcut = nnx.data(layers.conv(in_features, out_features, 1, spectral_norm=True)
                                 if learned_shortcut else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv1(x if self.first else jax.nn.relu(x))
        h = self.conv2(jax.nn.relu(h))
        if self.downsample:
            h = average_pool(h)
        if self.first:  # pool first: the 1x1 convolution then runs on a quarter of the pixels
            return h + self.shortcut(average_pool(x))
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return h + (average_pool(shortcut) if self.downsample else shortcut)


class Generator(nnx.Module):
    """Maps latent vectors z (and class labels) to images in [-1, 1].

    Args:
      image_size: output height and width (32, 64, 128 or 256).
      channels: output channels (1 grayscale, 3 RGB).
      latent_dim: length of z.
      num_classes: 0 for an unconditional generator; else labels in [0, num_classes) are required.
      base_features: channels of the last block (at the image size).
      max_features: channel cap towards the 4x4 end.
      dtype: computation dtype (None: float32); parameters stay float32.
      conv_backend: "auto", "xla" or "onednn" (see `jaxmed.nn.conv_backend`).
      rngs: parameter initialisation keys.
    """

    def __init__(self, image_size: int = 128, channels: int = 1, latent_dim: int = 128, *, num_classes: int = 0,
                 base_features: int = 32, max_features: int = 256, dtype=None, conv_backend: ConvBackend = "auto",
                 rngs: nnx.Rngs):
        features = block_features(image_size, base_features, max_features)
        layers = _Layers(dtype, conv_backend, rngs)
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.bottleneck_features = features[0]
        self.project = nnx.Linear(latent_dim, BOTTLENECK_SIZE * BOTTLENECK_SIZE * features[0],
                                  kernel_init=WEIGHT_INIT, dtype=layers.dense_dtype, rngs=rngs)
        self.blocks = nnx.List([GeneratorBlock(f_in, f_out, num_classes, layers)
                                for f_in, f_out in zip(features[:-1], features[1:])])
        self.out_norm = layers.norm(features[-1])
        self.to_image = layers.conv(features[-1], channels, 3, spectral_norm=False)

    def __call__(self, z_BxZ: jax.Array, labels_B: jax.Array | None = None,
                 strength: jax.Array | float = 1.0) -> jax.Array:
        """Images from noise; `strength` in [0, 1] weighs the class (0: ignored; see ConditionalBatchNorm)."""
        check_labels(self.num_classes, labels_B)
        x = self.project(z_BxZ).reshape(z_BxZ.shape[0], BOTTLENECK_SIZE, BOTTLENECK_SIZE, self.bottleneck_features)
        for block in self.blocks:
            x = block(x, labels_B, strength)
        x = jax.nn.relu(self.out_norm(x))
        # tanh in float32 so bf16 runs still produce exactly bounded images.
        return jnp.tanh(self.to_image(x).astype(jnp.float32))


class Discriminator(nnx.Module):
    """Maps images in [-1, 1] (and class labels) to one real-versus-fake logit each, float32 (B,).

    Args:
      image_size: input height and width (32, 64, 128 or 256).
      channels: input channels.
      num_classes: 0 for an unconditional discriminator; else the projection head's class term.
      base_features: channels of the first block (at the image size).
      max_features: channel cap towards the 4x4 end.
      dtype: computation dtype (None: float32); parameters stay float32.
      conv_backend: "auto", "xla" or "onednn" (see `jaxmed.nn.conv_backend`).
      rngs: parameter initialisation keys.
    """

    def __init__(self, image_size: int = 128, channels: int = 1, *, num_classes: int = 0, base_features: int = 32,
                 max_features: int = 256, dtype=None, conv_backend: ConvBackend = "auto", rngs: nnx.Rngs):
        features = [channels] + block_features(image_size, base_features, max_features)[::-1]
        layers = _Layers(dtype, conv_backend, rngs)
        self.num_classes = num_classes
        down = [DiscriminatorBlock(f_in, f_out, downsample=True, first=(index == 0), layers=layers)
                for index, (f_in, f_out) in enumerate(zip(features[:-2], features[1:-1]))]
        last = DiscriminatorBlock(features[-2], features[-1], downsample=False, first=False, layers=layers)
        self.blocks = nnx.List(down + [last])
        self.head = ProjectionHead(features[-1], num_classes, dtype=layers.dense_dtype, rngs=rngs)

    def __call__(self, x_BxHxWxC: jax.Array, labels_B: jax.Array | None = None,
                 strength: jax.Array | float = 1.0) -> jax.Array:
        """Logits; `strength` in [0, 1] weighs the projection's class term (0: unconditional)."""
        check_labels(self.num_classes, labels_B)
        x = x_BxHxWxC
        for block in self.blocks:
            x = block(x)
        pooled_BxF = jnp.sum(jax.nn.relu(x).astype(jnp.float32), axis=(1, 2))
        return self.head(pooled_BxF, labels_B, strength)
