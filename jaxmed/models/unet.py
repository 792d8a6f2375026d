"""A time- and class-conditional U-Net: the denoiser of the diffusion family (and reusable image-to-image).

The layout follows Ho et al. (DDPM, 2020) as refined by Nichol & Dhariwal (improved-diffusion,
2021) and Dhariwal & Nichol (guided-diffusion, 2021):

    x (B, S, S, in_channels) -> Conv 3x3 -> base
    down, per level l:  [ResBlock (+ SelfAttention)] x num_res_blocks, then Conv 3x3/2 (not after the last)
    middle:             ResBlock -> SelfAttention -> ResBlock
    up, per level l:    [concat skip -> ResBlock (+ SelfAttention)] x (num_res_blocks + 1),
                        then nearest x2 -> Conv 3x3 (not after the first)
    out:                GroupNorm -> SiLU -> Conv 3x3 -> out_channels

ResBlock: GroupNorm -> SiLU -> Conv 3x3 -> + Dense(embedding) -> GroupNorm -> SiLU -> Conv 3x3,
plus the input (through a 1x1 convolution where the width changes). Level l has
`base_features * channel_multipliers[l]` channels at `image_size / 2**l` pixels; self-attention
runs at the levels whose side is in `attention_resolutions` (and always in the middle).

Conditioning: a sinusoidal embedding of the time -> Dense -> SiLU -> Dense (4 * base wide), plus,
when `num_classes` is set, a learned embedding of the label. Label `num_classes` is the extra
"null" class (`UNet.null_label`) that classifier-free guidance trains with and samples from as
the unconditional model.

Time is continuous, t in [0, 1] (0 clean, 1 pure noise), not an integer step: the network is then
independent of how many discrete steps a schedule has, and a sampler with any step count (or a
continuous-time one) queries it the same way. `jaxmed.diffusion.schedule.model_time` maps a
schedule's integer steps to t. The embedding scales t by 1000, the usual range of step indices,
so its frequencies resolve neighbouring steps of a 1000-step schedule.

Choices, and why:
- GroupNorm, not BatchNorm: the loss mixes noise levels within a batch, so batch statistics
  would couple unrelated examples; GroupNorm also needs no running state.
- The last convolution of every residual branch, of the attention output and of the output
  layer starts at zero (as in improved-diffusion), so each block starts as the identity and
  the untrained network predicts zero.
- `dtype` is the computation dtype; parameters stay float32, normalisation and the softmax of
  attention run in float32, and the output is float32. On oneDNN the dense layers and the
  attention run in float32 too (`jaxmed.nn.dense_dtype` says why).

Sizes (`UNET_SIZES`):
- "small" (CPU, 32-64 px): base 32, multipliers (1, 2, 2, 2), one ResBlock per level,
  attention at 16 px and below (so none at 64 or 32 px), 8 groups. At 64 px the levels
  are 64, 32, 16 and 8 px; about 1.6M parameters.
- "large" (accelerator, 128-256 px): base 128, multipliers (1, 1, 2, 3, 4), two ResBlocks per
  level, attention at 32, 16 and 8 px, 32 groups (near guided-diffusion's 128 px model at half
  its width); about 92M parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmed.nn import (ConvBackend, GroupNorm, conv_general_dilated_for, convolution_dtype, dense_dtype,
                       mixed_precision_dtypes, resolve_conv_backend)

TIME_SCALE = 1000.0  # t in [0, 1] is embedded as TIME_SCALE * t (the range of DDPM step indices)
MAX_PERIOD = 10000.0  # the longest wavelength of the sinusoidal embedding (Vaswani et al.)
ZERO_INIT = nnx.initializers.zeros_init()

UNET_SIZES: dict[str, dict] = {
    "small": dict(base_features=32, channel_multipliers=(1, 2, 2, 2), num_res_blocks=1,
                  attention_resolutions=(16, 8, 4), head_features=32, norm_groups=8),
    "large": dict(base_features=128, channel_multipliers=(1, 1, 2, 3, 4), num_res_blocks=2,
                  attention_resolutions=(32, 16, 8), head_features=64, norm_groups=32),
}


def timestep_embedding(t_B: jax.Array, features: int) -> jax.Array:
    """Sinusoidal embedding (B, features) of times t in [0, 1] (Vaswani et al.; DDPM's time embedding).

    Args:
      t_B: times in [0, 1].
      features: embedding width (even).

    Returns:
      float32 [cos(TIME_SCALE * t * f_k), sin(TIME_SCALE * t * f_k)] over geometric frequencies f_k.
    """
    half = features // 2
    frequencies_F = jnp.exp(-math.log(MAX_PERIOD) * jnp.arange(half, dtype=jnp.float32) / half)
    angles_BxF = TIME_SCALE * t_B.astype(jnp.float32)[:, None] * frequencies_F[None, :]
    return jnp.concatenate([jnp.cos(angles_BxF), jnp.sin(angles_BxF)], axis=-1)


class _Convs:
    """Builds the network's convolutions for one dtype and backend (so each call site names only sizes).

    `dense_dtype` is what the network's dense layers (and the attention around them) compute in.
    """

    def __init__(self, dtype, backend: str, rngs: nnx.Rngs):
        self.dtype = dtype
        self.dense_dtype = dense_dtype(dtype, backend)
        self.outputs, _ = mixed_precision_dtypes(dtype, backend)
        self.conv_general_dilated = conv_general_dilated_for(backend)
        self.backend = backend
        self.one_pass_sums = backend == "onednn"
        self.rngs = rngs

    def __call__(self, in_features: int, out_features: int, kernel: int = 3, stride: int = 1,
                 zero: bool = False) -> nnx.Conv:
        extra = {"kernel_init": ZERO_INIT} if zero else {}
        return nnx.Conv(in_features, out_features, kernel_size=(kernel, kernel), strides=(stride, stride),
                        padding="SAME", dtype=convolution_dtype(self.dtype, self.backend, in_features, out_features,
                                                                kernel, stride),
                        preferred_element_type=self.outputs,
                        conv_general_dilated=self.conv_general_dilated, rngs=self.rngs, **extra)


def _group_norm(features: int, groups: int, one_pass_sums: bool, rngs: nnx.Rngs) -> GroupNorm:
    # float32 statistics: bfloat16 means and variances over up to 64x64 pixels lose precision.
    return GroupNorm(features, num_groups=groups, epsilon=1e-5, dtype=jnp.float32, one_pass_sums=one_pass_sums,
                     rngs=rngs)


class ResBlock(nnx.Module):
    """Two 3x3 convolutions with the conditioning embedding added in between, plus a skip connection.

    Args:
      in_features, out_features: channels in and out.
      embedding_features: width of the time (+ class) embedding.
      norm_groups: GroupNorm groups (must divide both channel counts).
      convs: the network's convolution builder.
      rngs: parameter initialisation keys.
    """

    def __init__(self, in_features: int, out_features: int, embedding_features: int, norm_groups: int,
                 convs: _Convs, rngs: nnx.Rngs):
        self.norm1 = _group_norm(in_features, norm_groups, convs.one_pass_sums, rngs)
        self.conv1 = convs(in_features, out_features)
        self.embedding = nnx.Linear(embedding_features, out_features, dtype=convs.dense_dtype, rngs=rngs)
        self.norm2 = _group_norm(out_features, norm_groups, convs.one_pass_sums, rngs)
        self.conv2 = convs(out_features, out_features, zero=True)
        self.skip = convs(in_features, out_features, kernel=1) if in_features != out_features else None

    def __call__(self, x_BxHxWxC: jax.Array, embedding_BxE: jax.Array) -> jax.Array:
        h = self.conv1(nnx.silu(self.norm1(x_BxHxWxC)))  # the layer casts to its own dtype
        h = h + self.embedding(embedding_BxE)[:, None, None, :].astype(h.dtype)
        h = self.conv2(nnx.silu(self.norm2(h)))
        skip = x_BxHxWxC if self.skip is None else self.skip(x_BxHxWxC)
        return h + skip.astype(h.dtype)


class SelfAttention(nnx.Module):
    """Multi-head self-attention over the pixels of a feature map, with a residual connection.

    Args:
      features: channels.
      head_features: channels per head (features // head_features heads, at least one).
      norm_groups: GroupNorm groups.
      dtype: computation dtype (None: float32).
      rngs: parameter initialisation keys.
      one_pass_sums: GroupNorm's sums by oneDNN (see `jaxmed.nn.group_norm`).
    """

    def __init__(self, features: int, head_features: int, norm_groups: int, dtype, rngs: nnx.Rngs,
                 one_pass_sums: bool = False):
        self.num_heads = max(features // head_features, 1)
        if features % self.num_heads:
            raise ValueError(f"attention channels {features} are not divisible into {self.num_heads} heads")
        self.norm = _group_norm(features, norm_groups, one_pass_sums, rngs)
        self.qkv = nnx.Linear(features, 3 * features, dtype=dtype, rngs=rngs)
        self.out = nnx.Linear(features, features, kernel_init=ZERO_INIT, dtype=dtype, rngs=rngs)
        self.dtype = dtype or jnp.float32

    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        batch, height, width, features = x_BxHxWxC.shape
        tokens_BxLxC = self.norm(x_BxHxWxC).astype(self.dtype).reshape(batch, height * width, features)
        qkv = self.qkv(tokens_BxLxC).reshape(batch, height * width, 3, self.num_heads, -1)
        query, key, value = (qkv[:, :, index].astype(jnp.float32) for index in range(3))
        attended_BxLxNxH = jax.nn.dot_product_attention(query, key, value)
        attended_BxLxC = attended_BxLxNxH.reshape(batch, height * width, features).astype(self.dtype)
        return x_BxHxWxC + self.out(attended_BxLxC).reshape(x_BxHxWxC.shape).astype(x_BxHxWxC.dtype)


class _Level(nnx.Module):
    """The residual blocks (each optionally followed by self-attention) of one resolution."""

    def __init__(self, features_in: Sequence[int], out_features: int, embedding_features: int, attention: bool,
                 head_features: int, norm_groups: int, convs: _Convs, rngs: nnx.Rngs):
        self.blocks = nnx.List([ResBlock(f, out_features, embedding_features, norm_groups, convs, rngs)
                                for f in features_in])
        self.attentions = nnx.List([SelfAttention(out_features, head_features, norm_groups, convs.dense_dtype, rngs,
                                                  convs.one_pass_sums)
                                    for _ in features_in] if attention else [])


class UNet(nnx.Module):
    """Predicts noise, v or a clean image from a noisy image, its time t in [0, 1] and an optional label.

    Args:
      image_size: input height and width; a multiple of 2**(levels - 1).
      in_channels: input channels (1 grayscale, 3 RGB; more for image-to-image conditioning).
      out_channels: output channels (None: `in_channels`).
      num_classes: number of real classes for a class-conditional model (None: unconditional).
        The embedding has one more row, the null class `num_classes`, for classifier-free guidance.
      base_features: channels of the first level.
      channel_multipliers: channels of level l = base_features * channel_multipliers[l]; one level each.
      num_res_blocks: residual blocks per level on the way down (one more on the way up).
      attention_resolutions: image sides (px) at which the levels add self-attention.
      head_features: channels per attention head.
      norm_groups: GroupNorm groups; must divide every level's channels.
      dtype: computation dtype (None: float32); parameters stay float32, the output is float32.
      conv_backend: "auto", "xla" or "onednn" (see `jaxmed.nn.conv_backend`).
      rngs: parameter initialisation keys.

    Raises:
      ValueError: sizes that do not fit together (named in the message).
    """

    def __init__(self, image_size: int, in_channels: int = 1, out_channels: int | None = None, *,
                 num_classes: int | None = None, base_features: int = 32,
                 channel_multipliers: Sequence[int] = (1, 2, 2, 2), num_res_blocks: int = 1,
                 attention_resolutions: Sequence[int] = (16, 8, 4), head_features: int = 32, norm_groups: int = 8,
                 dtype=None, conv_backend: ConvBackend = "auto", rngs: nnx.Rngs):
        levels = len(channel_multipliers)
        if levels < 1 or image_size % (2 ** (levels - 1)):
            raise ValueError(f"image_size {image_size} must be divisible by 2**(levels - 1) = {2 ** (levels - 1)} "
                             f"for channel_multipliers {tuple(channel_multipliers)}")
        widths = [base_features * multiplier for multiplier in channel_multipliers]
        if any(width % norm_groups for width in widths):
            raise ValueError(f"norm_groups {norm_groups} must divide every level's channels {widths}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be positive or None, got {num_classes}")
        convs = _Convs(dtype, resolve_conv_backend(conv_backend), rngs)
        self.image_size = image_size
        self.num_classes = num_classes
        self.base_features = base_features
        embedding_features = 4 * base_features

        self.time_mlp1 = nnx.Linear(base_features, embedding_features, dtype=convs.dense_dtype, rngs=rngs)
        self.time_mlp2 = nnx.Linear(embedding_features, embedding_features, dtype=convs.dense_dtype, rngs=rngs)
        self.class_embedding = (nnx.Embed(num_classes + 1, embedding_features, dtype=dtype, rngs=rngs)
                                if num_classes is not None else None)
        self.stem = convs(in_channels, base_features)

        attention = [image_size >> level in attention_resolutions for level in range(levels)]
        skip_widths = [base_features]
        down, downsamples = [], []
        width = base_features
        for level in range(levels):
            features_in = [width] + [widths[level]] * (num_res_blocks - 1)
            down.append(_Level(features_in, widths[level], embedding_features, attention[level], head_features,
                               norm_groups, convs, rngs))
            width = widths[level]
            skip_widths += [width] * num_res_blocks
            if level < levels - 1:
                downsamples.append(convs(width, width, stride=2))
                skip_widths.append(width)
        self.down = nnx.List(down)
        self.downsamples = nnx.List(downsamples)

        self.middle1 = ResBlock(width, width, embedding_features, norm_groups, convs, rngs)
        self.middle_attention = SelfAttention(width, head_features, norm_groups, convs.dense_dtype, rngs,
                                              convs.one_pass_sums)
        self.middle2 = ResBlock(width, width, embedding_features, norm_groups, convs, rngs)

        up, upsamples = [], []
        for level in reversed(range(levels)):
            features_in = []
            for _ in range(num_res_blocks + 1):
                features_in.append(width + skip_widths.pop())
                width = widths[level]
            up.append(_Level(features_in, widths[level], embedding_features, attention[level], head_features,
                             norm_groups, convs, rngs))
            if level > 0:
                upsamples.append(convs(width, width))
        self.up = nnx.List(up)
        self.upsamples = nnx.List(upsamples)

        self.out_norm = _group_norm(width, norm_groups, convs.one_pass_sums, rngs)
        self.out_conv = convs(width, out_channels or in_channels, zero=True)
        self.dtype = dtype or jnp.float32

    @property
    def null_label(self) -> int:
        """The label index of the unconditional ("null") class: `num_classes`."""
        if self.num_classes is None:
            raise ValueError("an unconditional UNet (num_classes=None) has no null label")
        return self.num_classes

    def __call__(self, x_BxHxWxC: jax.Array, t_B: jax.Array, labels_B: jax.Array | None = None) -> jax.Array:
        """The network's prediction for noisy images at times `t_B`.

        Args:
          x_BxHxWxC: noisy images (any scale; diffusion uses data in [-1, 1] plus noise).
          t_B: float times in [0, 1] (0 clean, 1 pure noise); see the module docstring.
          labels_B: integer labels in [0, num_classes] (num_classes: the null class) for a
            conditional model; None for an unconditional one, and for a conditional one means
            the null class for every example.

        Returns:
          float32 (B, H, W, out_channels).
        """
        if self.class_embedding is None and labels_B is not None:
            raise ValueError("labels given to an unconditional UNet (num_classes=None)")
        embedding = self.time_mlp1(timestep_embedding(t_B, self.base_features))  # the layer casts to its dtype
        embedding = self.time_mlp2(nnx.silu(embedding))
        if self.class_embedding is not None:
            if labels_B is None:
                labels_B = jnp.full((x_BxHxWxC.shape[0],), self.num_classes, jnp.int32)
            embedding = embedding + self.class_embedding(labels_B).astype(embedding.dtype)
        embedding = nnx.silu(embedding)

        h = self.stem(x_BxHxWxC.astype(self.dtype))
        skips = [h]
        for index, level in enumerate(self.down):
            h = _run_level(level, h, embedding, skips=None, outputs=skips)
            if index < len(self.downsamples):
                h = self.downsamples[index](h)
                skips.append(h)
        h = self.middle2(self.middle_attention(self.middle1(h, embedding)), embedding)
        for index, level in enumerate(self.up):
            h = _run_level(level, h, embedding, skips=skips, outputs=None)
            if index < len(self.upsamples):
                h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)  # nearest-neighbour x2
                h = self.upsamples[index](h)
        h = nnx.silu(self.out_norm(h)).astype(self.dtype)
        return self.out_conv(h).astype(jnp.float32)


def _run_level(level: _Level, h: jax.Array, embedding: jax.Array, skips: list | None,
               outputs: list | None) -> jax.Array:
    """Runs one level's blocks; on the way up each block first concatenates the latest skip."""
    for index, block in enumerate(level.blocks):
        if skips is not None:
            skip = skips.pop()
            h = jnp.concatenate([h, skip.astype(h.dtype)], axis=-1)
        h = block(h, embedding)
        if len(level.attentions):
            h = level.attentions[index](h)
        if outputs is not None:
            outputs.append(h)
    return h


def build_unet(size: str, image_size: int, in_channels: int = 1, out_channels: int | None = None, *,
               num_classes: int | None = None, dtype=None, conv_backend: ConvBackend = "auto",
               rngs: nnx.Rngs) -> UNet:
    """A `UNet` with one of the named `UNET_SIZES` ("small" for CPU runs, "large" for accelerators).

    Args:
      size: a key of `UNET_SIZES`.
      image_size, in_channels, out_channels, num_classes, dtype, conv_backend, rngs: as `UNet`.

    Raises:
      ValueError: unknown size name.
    """
    if size not in UNET_SIZES:
        raise ValueError(f"unknown UNet size {size!r}; choose one of {', '.join(UNET_SIZES)}")
    return UNet(image_size, in_channels, out_channels, num_classes=num_classes, dtype=dtype,
                conv_backend=conv_backend, rngs=rngs, **UNET_SIZES[size])
