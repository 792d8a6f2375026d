"""DCGAN generator and discriminator: the `dcgan128` reference network, any size 32-256.

The reference (docs/design.md, seed paper section 3.5) at 128x128x1:

    Generator      z(100) -> Dense 8*8*256 (no bias) -> BN -> LeakyReLU(0.2) -> 8x8x256
                   -> [UpConv 4x4/2 (no bias) -> BN -> LeakyReLU(0.2)] x (128, 64, 32)
                   -> UpConv 4x4/2 -> 1 channel -> tanh                 128x128x1 in [-1, 1]
    Discriminator  [Conv 4x4/2 -> (BN, not after the first) -> LeakyReLU(0.2)] x (32, 64, 128, 256)
                   -> flatten 8*8*256 -> Dense 1                         one logit per image

Other sizes keep the 8x8x256 bottleneck and add or remove one stride-2 stage per
factor of two, halving the channels per stage as in the reference. "UpConv" is
`jaxmed.nn.UpsampleConv`: the same function and parameters as a 4x4 stride-2 "SAME"
`ConvTranspose`, computed in a form whose gradients are fast on every backend (by
oneDNN on the CPU, see `jaxmed.nn.conv_backend`).

Choices the reference leaves open, and why:
- Weights start from N(0, 0.02), as in the DCGAN paper; BatchNorm momentum is 0.9
  (PyTorch's 0.1), since the default 0.99 leaves running statistics stale in short runs.
- Convolutions followed by BatchNorm carry no bias (BN's shift makes it redundant);
  the first discriminator convolution and the last generator layer keep theirs.
- With a `dtype` (bfloat16) on oneDNN, the convolutions return float32, and BatchNorm,
  LeakyReLU and the dense layers run in float32 (`jaxmed.nn.mixed_precision_dtypes` and
  `jaxmed.nn.dense_dtype` say why).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmed.nn import (BatchNorm, ConvBackend, UpsampleConv, conv_general_dilated_for, dense_dtype,
                       mixed_precision_dtypes, resolve_conv_backend)

BOTTLENECK_SIZE = 8
LEAKY_SLOPE = 0.2
BATCH_NORM_MOMENTUM = 0.9
WEIGHT_INIT = nnx.initializers.normal(stddev=0.02)


def num_stages(image_size: int) -> int:
    """Number of stride-2 stages between the 8x8 bottleneck and `image_size`.

    Raises:
      ValueError: if `image_size` is not a power of two in [32, 256].
    """
    if image_size not in (32, 64, 128, 256):
        raise ValueError(f"DCGAN image size must be 32, 64, 128 or 256, got {image_size}")
    return int(math.log2(image_size // BOTTLENECK_SIZE))


def _batch_norm(features: int, dtype, backend: str, rngs: nnx.Rngs) -> BatchNorm:
    return BatchNorm(features, momentum=BATCH_NORM_MOMENTUM, epsilon=1e-5, dtype=dtype,
                     one_pass_sums=(backend == "onednn"), rngs=rngs)


class Generator(nnx.Module):
    """Maps latent vectors z to images in [-1, 1].

    Args:
      image_size: output height and width (32, 64, 128 or 256).
      channels: output channels (1 grayscale, 3 RGB).
      latent_dim: length of z.
      base_features: channels at the 8x8 bottleneck (256 in the reference).
      dtype: computation dtype (None: float32); parameters stay float32 (and, on
        oneDNN, convolution outputs and normalisation: see the module docstring).
      conv_backend: "auto", "xla" or "onednn" (see `jaxmed.nn.conv_backend`); "auto" assumes
        one device, so code that shards the model passes the resolved value, as training does.
      rngs: parameter initialisation keys.
    """

    def __init__(self, image_size: int = 128, channels: int = 1, latent_dim: int = 100, *,
                 base_features: int = 256, dtype=None, conv_backend: ConvBackend = "auto", rngs: nnx.Rngs):
        stages = num_stages(image_size)
        backend = resolve_conv_backend(conv_backend)
        method = "onednn" if backend == "onednn" else "auto"
        conv_outputs, norm_dtype = mixed_precision_dtypes(dtype, backend)
        self.latent_dim = latent_dim
        self.base_features = base_features
        self.project = nnx.Linear(latent_dim, BOTTLENECK_SIZE * BOTTLENECK_SIZE * base_features, use_bias=False,
                                  kernel_init=WEIGHT_INIT, dtype=dense_dtype(dtype, backend), rngs=rngs)
        self.project_norm = _batch_norm(base_features, norm_dtype, backend, rngs)
        features = [base_features >> stage for stage in range(stages)]  # 256, 128, 64, 32 at 128 px
        self.up_blocks = nnx.List([
            UpsampleConv(f_in, f_out, use_bias=False, kernel_init=WEIGHT_INIT, dtype=dtype,
                         preferred_element_type=conv_outputs, method=method, rngs=rngs)
            for f_in, f_out in zip(features[:-1], features[1:])
        ])
        self.up_norms = nnx.List([_batch_norm(f, norm_dtype, backend, rngs) for f in features[1:]])
        self.to_image = UpsampleConv(features[-1], channels, use_bias=True, kernel_init=WEIGHT_INIT, dtype=dtype,
                                     preferred_element_type=conv_outputs, method=method, rngs=rngs)

    def __call__(self, z_BxZ: jax.Array) -> jax.Array:
        x = self.project(z_BxZ)
        x = x.reshape(z_BxZ.shape[0], BOTTLENECK_SIZE, BOTTLENECK_SIZE, self.base_features)
        x = nnx.leaky_relu(self.project_norm(x), LEAKY_SLOPE)
        for up, norm in zip(self.up_blocks, self.up_norms):
            x = nnx.leaky_relu(norm(up(x)), LEAKY_SLOPE)
        # tanh in float32 so bf16 runs still produce exactly bounded images.
        return jnp.tanh(self.to_image(x).astype(jnp.float32))


class DownsamplingStack(nnx.Module):
    """The discriminator's convolutions: images -> flattened 8x8 bottleneck features.

    [Conv 4x4/2 -> (BN, not after the first) -> LeakyReLU(0.2)] per stage, channels
    doubling up to `base_features`. The discriminator and the VAE's encoder
    (`jaxmed.models.vae.Encoder`) add their own dense head on top.

    Args: as `Discriminator`.
    """

    def __init__(self, image_size: int = 128, channels: int = 1, *, base_features: int = 256, dtype=None,
                 conv_backend: ConvBackend = "auto", rngs: nnx.Rngs):
        stages = num_stages(image_size)
        backend = resolve_conv_backend(conv_backend)
        conv_general_dilated = conv_general_dilated_for(backend)
        conv_outputs, norm_dtype = mixed_precision_dtypes(dtype, backend)
        features = [channels] + [base_features >> (stages - 1 - stage) for stage in range(stages)]
        self.down_blocks = nnx.List([
            nnx.Conv(f_in, f_out, kernel_size=(4, 4), strides=(2, 2), padding="SAME", use_bias=(stage == 0),
                     kernel_init=WEIGHT_INIT, dtype=dtype, preferred_element_type=conv_outputs,
                     conv_general_dilated=conv_general_dilated, rngs=rngs)
            for stage, (f_in, f_out) in enumerate(zip(features[:-1], features[1:]))
        ])
        # No normalisation after the first convolution (DCGAN: BN on the input layer destabilises training).
        self.down_norms = nnx.List([_batch_norm(f, norm_dtype, backend, rngs) for f in features[2:]])
        self.flat_features = BOTTLENECK_SIZE * BOTTLENECK_SIZE * base_features
        self.dense_dtype = dense_dtype(dtype, backend)  # what the subclasses' dense heads compute in

    def features(self, x_BxHxWxC: jax.Array) -> jax.Array:
        """(B, 8*8*base_features) features of images in [-1, 1]."""
        x = nnx.leaky_relu(self.down_blocks[0](x_BxHxWxC), LEAKY_SLOPE)
        for conv, norm in zip(self.down_blocks[1:], self.down_norms):
            x = nnx.leaky_relu(norm(conv(x)), LEAKY_SLOPE)
        return x.reshape(x.shape[0], -1)


class Discriminator(DownsamplingStack):
    """Maps images in [-1, 1] to one real-versus-fake logit each.

    Args:
      image_size: input height and width (32, 64, 128 or 256).
      channels: input channels.
      base_features: channels of the last stage (256 in the reference).
      dtype: computation dtype (None: float32); parameters stay float32 (and, on
        oneDNN, convolution outputs and normalisation: see the module docstring).
      conv_backend: "auto", "xla" or "onednn" (see `jaxmed.nn.conv_backend`); "auto" assumes
        one device, so code that shards the model passes the resolved value, as training does.
      rngs: parameter initialisation keys.
    """

    def __init__(self, image_size: int = 128, channels: int = 1, *, base_features: int = 256, dtype=None,
                 conv_backend: ConvBackend = "auto", rngs: nnx.Rngs):
        super().__init__(image_size, channels, base_features=base_features, dtype=dtype, conv_backend=conv_backend,
                         rngs=rngs)
        self.classify = nnx.Linear(self.flat_features, 1, kernel_init=WEIGHT_INIT, dtype=self.dense_dtype, rngs=rngs)

    def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
        return self.classify(self.features(x_BxHxWxC))[:, 0].astype(jnp.float32)
