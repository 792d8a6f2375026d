"""jaxmed's classic augmentation (`jaxmed.data.augment`, default config) in PyTorch, for the classifiers' step.

jaxmed augments inside its jitted classifier step, so the peer's step must too. Same
transforms, same order, same draws per example: one standard-normal draw of (B, 8 + H*W*C),
whose first 8 columns (through the normal CDF) give the flip, angle, scale and shift; a
horizontal flip with probability 0.5; rotation, isotropic scaling and translation about the
centre in one bilinear resample, background -1 outside the image; Gaussian noise; a clip to
[-1, 1]. The resample is `affine_grid` + `grid_sample` (align_corners=True puts -1 and 1 on the
outer pixel centres, jaxmed's centre (S - 1) / 2), with the -1 fill made by sampling x + 1 with
zero padding; the grid is the affine map applied to a cached base grid (what `affine_grid`
rebuilds on every call).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

_FLIP_H, _FLIP_V, _ANGLE, _SCALE, _SHIFT_Y, _SHIFT_X = range(6)  # jaxmed's column order
_NUM_PARAMS = 8  # jaxmed's fixed layout: also brightness and contrast, off by default


@functools.lru_cache(maxsize=4)
def _base_grid(height: int, width: int) -> torch.Tensor:
    """(H * W, 3) rows (x, y, 1) of every output pixel in normalised coordinates (align_corners=True)."""
    y, x = torch.meshgrid(torch.linspace(-1.0, 1.0, height), torch.linspace(-1.0, 1.0, width), indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1), torch.ones(height * width)], dim=-1)


def augment(images: torch.Tensor, flip_probability: float, max_rotation_degrees: float,
            scale_range: tuple[float, float], max_translation: float, noise_std: float) -> torch.Tensor:
    """Randomly flipped, rotated, scaled, shifted and noised images in [-1, 1], independently per example.

    Args:
      images: (B, C, H, W) float32 square images in [-1, 1], any memory format.
      flip_probability, max_rotation_degrees, scale_range, max_translation, noise_std: as
        `jaxmed.data.augment.AugmentConfig`.

    Returns:
      The augmented batch, same shape and memory format.
    """
    batch, channels, height, width = images.shape
    draws = torch.randn(batch, _NUM_PARAMS + height * width * channels)
    u = torch.special.ndtr(draws[:, :_NUM_PARAMS])
    max_angle = math.radians(max_rotation_degrees)
    angle = -max_angle + 2 * max_angle * u[:, _ANGLE]
    scale = scale_range[0] + (scale_range[1] - scale_range[0]) * u[:, _SCALE]
    # Shifts as fractions of the side, in normalised coordinates (the centre at 0, the edges' pixel centres at +-1).
    centre = (height - 1) / 2.0
    shift_y = (-max_translation + 2 * max_translation * u[:, _SHIFT_Y]) * height / centre
    shift_x = (-max_translation + 2 * max_translation * u[:, _SHIFT_X]) * width / centre
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # Output (x, y) -> input (x, y): undo the shift, the zoom, then rotate by -angle (jaxmed.data.augment).
    theta = torch.stack([torch.stack([cos, -sin, -cos * shift_x + sin * shift_y], dim=-1),
                         torch.stack([sin, cos, -sin * shift_x - cos * shift_y], dim=-1)], dim=1)
    # A horizontal flip before the resample reads the input at mirrored x: one pass fewer than flipping pixels.
    mirror = torch.where(u[:, _FLIP_H] < flip_probability, -1.0, 1.0)
    theta[:, 0] *= mirror[:, None]
    grid = torch.matmul(_base_grid(height, width), theta.transpose(1, 2)).view(batch, height, width, 2)
    images = F.grid_sample(images + 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    noise = draws[:, _NUM_PARAMS:].view(batch, height, width, channels).permute(0, 3, 1, 2)
    return images.add_(noise, alpha=noise_std).sub_(1.0).clamp_(-1.0, 1.0)
