"""jaxmed's benchmarked networks in PyTorch, layer for layer: DCGAN, VAE, seed CNN, ResNet-18 and the U-Net.

Each class restates a jaxmed model with the same layers, widths, normalisation, biases and
so parameter count (`benchmarks/peers.py` checks the counts in every run), under the same
attribute names, so that `check_networks.py` can load jaxmed's weights by name and compare outputs:

- `Generator`, `DownsamplingStack`, `Discriminator`: `jaxmed.models.dcgan` (the VAE reuses them,
  as `jaxmed.models.vae` does);
- `Encoder`, `VAE`: `jaxmed.models.vae`;
- `SeedCNN`, `ResNet18`: `jaxmed.models.classifier`;
- `UNet`: `jaxmed.models.unet` (its "small" size is `common.UNET`).

Where the two frameworks differ by default, these follow jaxmed, so the peer computes the same
function: "SAME" padding of a 3x3 stride-2 convolution pads one pixel after, none before
(`_SamePaddedConv`); dense features are flattened in NHWC order; BatchNorm's running averages
move by 0.1 per step (jaxmed's momentum 0.9); initialisers are jaxmed's (N(0, 0.02) for the
DCGAN layers, He fan-out for the classifiers' convolutions, zeros where the U-Net starts a
residual branch at zero, LeCun normal elsewhere, as flax's defaults). Every model expects
channels_last images and keeps its activations channels_last.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BOTTLENECK = 8  # the DCGAN layers' 8x8 bottleneck, at every image size
LEAKY_SLOPE = 0.2
BATCH_NORM_MOMENTUM = 0.1  # PyTorch's convention for jaxmed's 0.9: running = 0.9 running + 0.1 batch
EPSILON = 1e-5
UNET_TIME_SCALE = 1000.0  # jaxmed.models.unet.TIME_SCALE
UNET_MAX_PERIOD = 10000.0  # jaxmed.models.unet.MAX_PERIOD
# flax's default kernel initialiser, lecun_normal: a normal truncated at 2 sigma, rescaled to variance 1 / fan_in.
_TRUNCATED_NORMAL_STD = 0.87962566103423978


def lecun_normal_(weight: torch.Tensor) -> None:
    """flax's default kernel initialiser (variance 1 / fan_in, truncated normal), in place."""
    fan_in = weight.shape[1] * math.prod(weight.shape[2:])
    std = math.sqrt(1.0 / fan_in) / _TRUNCATED_NORMAL_STD
    nn.init.trunc_normal_(weight, 0.0, std, -2.0 * std, 2.0 * std)


def _flatten_nhwc(x: torch.Tensor) -> torch.Tensor:
    """(B, H * W * C) in jaxmed's (row, column, channel) order; a view of a channels_last tensor."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


def _batch_norm(features: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(features, eps=EPSILON, momentum=BATCH_NORM_MOMENTUM)


def _dcgan_init(module: nn.Module) -> None:
    # DCGAN's N(0, 0.02) weights, as jaxmed.models.dcgan.WEIGHT_INIT; zero biases.
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _stages(image_size: int) -> int:
    """Stride-2 stages between the 8x8 bottleneck and `image_size` (jaxmed.models.dcgan.num_stages)."""
    return int(math.log2(image_size // BOTTLENECK))


class Generator(nn.Module):
    """jaxmed's DCGAN generator: z -> Linear 8*8*base (no bias) -> BN -> LeakyReLU -> [ConvTranspose 4x4/2
    (no bias) -> BN -> LeakyReLU] per stage -> ConvTranspose 4x4/2 to `channels` -> tanh."""

    def __init__(self, image_size: int, channels: int, latent_dim: int, base_features: int = 256):
        super().__init__()
        features = [base_features >> stage for stage in range(_stages(image_size))]
        self.base_features = base_features
        self.project = nn.Linear(latent_dim, BOTTLENECK * BOTTLENECK * base_features, bias=False)
        self.project_norm = _batch_norm(base_features)
        self.up_blocks = nn.ModuleList([nn.ConvTranspose2d(f_in, f_out, 4, stride=2, padding=1, bias=False)
                                        for f_in, f_out in zip(features[:-1], features[1:])])
        self.up_norms = nn.ModuleList([_batch_norm(f_out) for f_out in features[1:]])
        self.to_image = nn.ConvTranspose2d(features[-1], channels, 4, stride=2, padding=1, bias=True)
        self.apply(_dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # The dense output is (row, column, channel) ordered, as jaxmed's reshape to NHWC.
        x = self.project(z).view(z.shape[0], BOTTLENECK, BOTTLENECK, self.base_features).permute(0, 3, 1, 2)
        x = F.leaky_relu(self.project_norm(x), LEAKY_SLOPE)
        for up, norm in zip(self.up_blocks, self.up_norms):
            x = F.leaky_relu(norm(up(x)), LEAKY_SLOPE)
        return torch.tanh(self.to_image(x).float())


class DownsamplingStack(nn.Module):
    """jaxmed's discriminator convolutions: [Conv 4x4/2 -> (BN, not after the first) -> LeakyReLU] per stage,
    channels doubling up to `base_features`; the first convolution alone has a bias."""

    def __init__(self, image_size: int, channels: int, base_features: int = 256):
        super().__init__()
        stages = _stages(image_size)
        features = [channels] + [base_features >> (stages - 1 - stage) for stage in range(stages)]
        self.down_blocks = nn.ModuleList([nn.Conv2d(f_in, f_out, 4, stride=2, padding=1, bias=(stage == 0))
                                          for stage, (f_in, f_out) in enumerate(zip(features[:-1], features[1:]))])
        self.down_norms = nn.ModuleList([_batch_norm(f_out) for f_out in features[2:]])  # none after the first
        self.flat_features = BOTTLENECK * BOTTLENECK * base_features

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 8*8*base_features) features of images in [-1, 1]."""
        x = F.leaky_relu(self.down_blocks[0](x), LEAKY_SLOPE)
        for conv, norm in zip(self.down_blocks[1:], self.down_norms):
            x = F.leaky_relu(norm(conv(x)), LEAKY_SLOPE)
        return _flatten_nhwc(x)


class Discriminator(DownsamplingStack):
    """jaxmed's DCGAN discriminator: the stack, flattened, -> Linear 1 (one logit per image)."""

    def __init__(self, image_size: int, channels: int, base_features: int = 256):
        super().__init__(image_size, channels, base_features)
        self.classify = nn.Linear(self.flat_features, 1)
        self.apply(_dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.flat(x)).squeeze(1).float()


class Encoder(DownsamplingStack):
    """jaxmed's VAE encoder: the discriminator's stack -> Linear 2 * latent_dim -> (mean, log-variance)."""

    def __init__(self, image_size: int, channels: int, latent_dim: int, base_features: int = 256):
        super().__init__(image_size, channels, base_features)
        self.to_moments = nn.Linear(self.flat_features, 2 * latent_dim)
        self.apply(_dcgan_init)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.to_moments(self.flat(x)).float().chunk(2, dim=-1)
        return mean, log_var


class VAE(nn.Module):
    """jaxmed's VAE: encoder, reparameterised sample z = mean + exp(log_var / 2) * noise, DCGAN decoder."""

    def __init__(self, image_size: int, channels: int, latent_dim: int):
        super().__init__()
        self.encoder = Encoder(image_size, channels, latent_dim)
        self.decoder = Generator(image_size, channels, latent_dim)

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, log_var = self.encoder(x)
        return self.decoder(mean + torch.exp(0.5 * log_var) * noise), mean, log_var


def _classifier_conv(f_in: int, f_out: int, kernel: int, stride: int) -> nn.Conv2d:
    # Bias-free, symmetric padding kernel // 2, He fan-out normal (jaxmed.models.classifier._conv).
    conv = nn.Conv2d(f_in, f_out, kernel, stride=stride, padding=kernel // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _linear(f_in: int, f_out: int) -> nn.Linear:
    """A dense layer with flax's default initialisation (LeCun normal kernel, zero bias)."""
    linear = nn.Linear(f_in, f_out)
    lecun_normal_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


class SeedCNN(nn.Module):
    """jaxmed's seed CNN: [Conv 3x3 (no bias) -> BN -> ReLU -> MaxPool 2x2/2] x (32, 64, 128) -> flatten
    -> Linear 128 -> ReLU -> Dropout -> Linear num_classes."""

    def __init__(self, image_size: int, channels: int, num_classes: int, features: tuple[int, ...],
                 hidden_features: int, dropout_rate: float):
        super().__init__()
        widths = [channels, *features]
        self.convs = nn.ModuleList([_classifier_conv(f_in, f_out, 3, 1) for f_in, f_out in zip(widths[:-1], widths[1:])])
        self.norms = nn.ModuleList([_batch_norm(f_out) for f_out in features])
        side = image_size >> len(features)
        self.hidden = _linear(side * side * features[-1], hidden_features)
        self.dropout = nn.Dropout(dropout_rate)
        self.classify = _linear(hidden_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = F.max_pool2d(F.relu(norm(conv(x))), 2, 2)
        h = F.relu(self.hidden(_flatten_nhwc(x)))
        return self.classify(self.dropout(h)).float()


class BasicBlock(nn.Module):
    """ResNet basic block: relu(BN(conv3x3(relu(BN(conv3x3/stride(x))))) + shortcut(x)), 1x1 + BN projection
    where the shape changes."""

    def __init__(self, f_in: int, f_out: int, stride: int):
        super().__init__()
        self.conv1 = _classifier_conv(f_in, f_out, 3, stride)
        self.norm1 = _batch_norm(f_out)
        self.conv2 = _classifier_conv(f_out, f_out, 3, 1)
        self.norm2 = _batch_norm(f_out)
        self.shortcut = self.shortcut_norm = None
        if stride != 1 or f_in != f_out:
            self.shortcut = _classifier_conv(f_in, f_out, 1, stride)
            self.shortcut_norm = _batch_norm(f_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x)))))
        return F.relu(y + (x if self.shortcut is None else self.shortcut_norm(self.shortcut(x))))


class ResNet18(nn.Module):
    """jaxmed's ResNet-18 at 64 px and above: 7x7/2 stem -> BN -> ReLU -> MaxPool 3x3/2, BasicBlocks
    [2, 2, 2, 2] at width x 1, 2, 4, 8, global average pool, Dropout, Linear num_classes."""

    def __init__(self, image_size: int, channels: int, num_classes: int, width: int, dropout_rate: float):
        super().__init__()
        if image_size < 64:
            raise ValueError(f"this peer has only the ImageNet stem (64 px and above), got {image_size} px")
        self.stem = _classifier_conv(channels, width, 7, 2)
        self.stem_norm = _batch_norm(width)
        blocks, f_in = [], width
        for stage in range(4):
            f_out = width << stage
            for index in range(2):
                blocks.append(BasicBlock(f_in, f_out, 2 if (stage > 0 and index == 0) else 1))
                f_in = f_out
        self.blocks = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(dropout_rate)
        self.classify = _linear(f_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.stem_norm(self.stem(x))), 3, 2, 1)
        for block in self.blocks:
            x = block(x)
        pooled = x.float().mean(dim=(2, 3))  # averaged in float32, as jaxmed
        return self.classify(self.dropout(pooled)).float()


class _SamePaddedConv(nn.Conv2d):
    """A convolution with XLA's "SAME" padding: for stride 2 on an even side, one pixel after and none before."""

    def __init__(self, f_in: int, f_out: int, kernel: int = 3, stride: int = 1, zero: bool = False):
        super().__init__(f_in, f_out, kernel, stride=stride, padding=0 if stride > 1 else kernel // 2)
        self.same_padding = None
        if stride > 1:  # XLA pads (kernel - stride) in all, the smaller half before
            before = (kernel - stride) // 2
            after = kernel - stride - before
            self.same_padding = (before, after, before, after)
        if zero:
            nn.init.zeros_(self.weight)
        else:
            lecun_normal_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same_padding is not None:
            x = F.pad(x, self.same_padding)
        return super().forward(x)


def _group_norm(features: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, features, eps=EPSILON)


def timestep_embedding(t: torch.Tensor, features: int) -> torch.Tensor:
    """jaxmed.models.unet.timestep_embedding: [cos, sin] of 1000 t over geometric frequencies, float32."""
    half = features // 2
    frequencies = torch.exp(-math.log(UNET_MAX_PERIOD) * torch.arange(half, dtype=torch.float32) / half)
    angles = UNET_TIME_SCALE * t.float()[:, None] * frequencies[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> Conv 3x3 -> + Linear(embedding) -> GroupNorm -> SiLU -> Conv 3x3 (zero), plus the
    input (through a 1x1 convolution where the width changes)."""

    def __init__(self, f_in: int, f_out: int, embedding_features: int, groups: int):
        super().__init__()
        self.norm1 = _group_norm(f_in, groups)
        self.conv1 = _SamePaddedConv(f_in, f_out)
        self.embedding = _linear(embedding_features, f_out)
        self.norm2 = _group_norm(f_out, groups)
        self.conv2 = _SamePaddedConv(f_out, f_out, zero=True)
        self.skip = _SamePaddedConv(f_in, f_out, kernel=1) if f_in != f_out else None

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.embedding(embedding)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.skip is None else self.skip(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels, float32 inside (as jaxmed), residual; output layer zero."""

    def __init__(self, features: int, head_features: int, groups: int):
        super().__init__()
        self.num_heads = max(features // head_features, 1)
        self.norm = _group_norm(features, groups)
        self.qkv = _linear(features, 3 * features)
        self.out = _linear(features, features)
        nn.init.zeros_(self.out.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, features, height, width = x.shape
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(batch, height * width, features)
        qkv = self.qkv(tokens).view(batch, height * width, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        with torch.autocast("cpu", enabled=False):
            attended = F.scaled_dot_product_attention(qkv[0].float(), qkv[1].float(), qkv[2].float())
        attended = attended.transpose(1, 2).reshape(batch, height * width, features)
        out = self.out(attended).view(batch, height, width, features).permute(0, 3, 1, 2)
        return x + out


class _Level(nn.Module):
    """One resolution's residual blocks, each followed by self-attention where the level has it."""

    def __init__(self, features_in: list[int], f_out: int, embedding_features: int, attention: bool,
                 head_features: int, groups: int):
        super().__init__()
        self.blocks = nn.ModuleList([ResBlock(f, f_out, embedding_features, groups) for f in features_in])
        self.attentions = nn.ModuleList([SelfAttention(f_out, head_features, groups) for _ in features_in]
                                        if attention else [])

    def forward(self, h: torch.Tensor, embedding: torch.Tensor, skips: list[torch.Tensor] | None,
                outputs: list[torch.Tensor] | None) -> torch.Tensor:
        for index, block in enumerate(self.blocks):
            if skips is not None:
                h = torch.cat([h, skips.pop()], dim=1)
            h = block(h, embedding)
            if len(self.attentions):
                h = self.attentions[index](h)
            if outputs is not None:
                outputs.append(h)
        return h


class UNet(nn.Module):
    """jaxmed's unconditional U-Net (layout in jaxmed.models.unet): stem, levels down with 3x3/2 "SAME"
    convolutions between them, ResBlock -> attention -> ResBlock in the middle, levels up with concatenated
    skips and nearest x2 -> 3x3 convolution between them, GroupNorm -> SiLU -> Conv 3x3 (zero) out."""

    def __init__(self, image_size: int, channels: int, base_features: int, channel_multipliers: tuple[int, ...],
                 num_res_blocks: int, attention_resolutions: tuple[int, ...], head_features: int, norm_groups: int):
        super().__init__()
        levels = len(channel_multipliers)
        widths = [base_features * multiplier for multiplier in channel_multipliers]
        embedding_features = 4 * base_features
        self.base_features = base_features
        self.time_mlp1 = _linear(base_features, embedding_features)
        self.time_mlp2 = _linear(embedding_features, embedding_features)
        self.stem = _SamePaddedConv(channels, base_features)
        attention = [image_size >> level in attention_resolutions for level in range(levels)]
        skip_widths, width = [base_features], base_features
        down, downsamples = [], []
        for level in range(levels):
            features_in = [width] + [widths[level]] * (num_res_blocks - 1)
            down.append(_Level(features_in, widths[level], embedding_features, attention[level], head_features,
                               norm_groups))
            width = widths[level]
            skip_widths += [width] * num_res_blocks
            if level < levels - 1:
                downsamples.append(_SamePaddedConv(width, width, stride=2))
                skip_widths.append(width)
        self.down, self.downsamples = nn.ModuleList(down), nn.ModuleList(downsamples)
        self.middle1 = ResBlock(width, width, embedding_features, norm_groups)
        self.middle_attention = SelfAttention(width, head_features, norm_groups)
        self.middle2 = ResBlock(width, width, embedding_features, norm_groups)
        up, upsamples = [], []
        for level in reversed(range(levels)):
            features_in = []
            for _ in range(num_res_blocks + 1):
                features_in.append(width + skip_widths.pop())
                width = widths[level]
            up.append(_Level(features_in, widths[level], embedding_features, attention[level], head_features,
                             norm_groups))
            if level > 0:
                upsamples.append(_SamePaddedConv(width, width))
        self.up, self.upsamples = nn.ModuleList(up), nn.ModuleList(upsamples)
        self.out_norm = _group_norm(width, norm_groups)
        self.out_conv = _SamePaddedConv(width, channels, zero=True)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        embedding = self.time_mlp2(F.silu(self.time_mlp1(timestep_embedding(t, self.base_features))))
        embedding = F.silu(embedding)
        h = self.stem(x)
        skips = [h]
        for index, level in enumerate(self.down):
            h = level(h, embedding, None, skips)
            if index < len(self.downsamples):
                h = self.downsamples[index](h)
                skips.append(h)
        h = self.middle2(self.middle_attention(self.middle1(h, embedding)), embedding)
        for index, level in enumerate(self.up):
            h = level(h, embedding, skips, None)
            if index < len(self.upsamples):
                h = self.upsamples[index](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out_conv(F.silu(self.out_norm(h))).float()


def parameter_count(module: nn.Module) -> int:
    """Trainable scalars of `module` (BatchNorm's running statistics are buffers, not counted)."""
    return sum(parameter.numel() for parameter in module.parameters())
