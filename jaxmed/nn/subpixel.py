"""Sub-pixel bookkeeping of a 4x4 stride-2 "SAME" transposed convolution, shared by its computed forms.

`jaxmed.nn.upsample` derives it: output row 2m + a (phase a) is a 2-tap correlation of
the input padded by one, read at window start m + a, with the taps K[a::2] of the
kernel; one pass over all (H + 1) x (W + 1) window starts with the four phases as
output channels serves every output pixel. Storing phase a at slot a' = 1 - a makes
the interleave a reshape followed by a shift of one.

- `phase_kernel` packs a (4, 4, C_in, C_out) transposed-convolution kernel into the
  (2, 2, C_in, 4 C_out) kernel of that pass, channel order (a', b', C_out);
- `interleave_phases` turns the pass's (B, H + 1, W + 1, 4 C_out) output into the
  (B, out_h, out_w, C_out) image, for out_h <= 2H + 1 (2H for the layer itself).
"""

from __future__ import annotations

import jax


def phase_kernel(kernel_4x4xIxO: jax.Array) -> jax.Array:
    """The (2, 2, C_in, 4 C_out) kernel computing all four phases; (t, u, I) x (a', b', O) when flattened."""
    in_features, out_features = kernel_4x4xIxO.shape[2:]
    # K[2t + a, 2u + b] is tap (t, u) of phase (a, b); reshape exposes (t, a, u, b), the reversal stores a at 1 - a.
    taps = kernel_4x4xIxO.reshape(2, 2, 2, 2, in_features, out_features)[:, ::-1, :, ::-1]
    return taps.transpose(0, 2, 4, 1, 3, 5).reshape(2, 2, in_features, 4 * out_features)


def interleave_phases(phases: jax.Array, out_height: int, out_width: int) -> jax.Array:
    """Depth-to-space of the window-start grid: (B, H + 1, W + 1, 4 C) -> (B, out_height, out_width, C).

    On the flattened (window start p, slot a') axis, output o = 2m + a sits at element
    2p + a' = 2(m + a) + 1 - a = o + 1, hence the crop starting at 1.
    """
    batch, starts_h, starts_w, channels = phases.shape
    features = channels // 4
    phases = phases.reshape(batch, starts_h, starts_w, 2, 2, features).transpose(0, 1, 3, 2, 4, 5)
    full = phases.reshape(batch, 2 * starts_h, 2 * starts_w, features)
    return full[:, 1:out_height + 1, 1:out_width + 1]
