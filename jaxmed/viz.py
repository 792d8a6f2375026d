"""Plots for generative models of medical images: sample grids, losses, pixel histograms.

These are the figures the seed paper (a DCGAN synthesising 128x128 brain MRI)
reports: a grid of samples, generator/discriminator loss against step
(Figure 2) and real-vs-generated pixel-value histograms (Figure 3).

Everything here is headless and thread-safe: figures are built with the
object-oriented ``matplotlib.figure.Figure`` + ``FigureCanvasAgg`` API and never
touch ``pyplot``'s global state, so they can be called from a training loop, a
worker thread or CI without a display.

Conventions: images are NHWC float arrays (NumPy or JAX) in [-1, 1], the
model's output range, with C = 1 (grey) or C = 3 (RGB). Values outside [-1, 1]
are clipped, and NaN/inf raise, because a diverged generator should fail
loudly rather than produce a plausible-looking picture.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

__all__ = [
    "image_grid",
    "save_image_grid",
    "plot_losses",
    "plot_pixel_distribution",
    "pixel_histogram_distance",
]

PathLike = str | os.PathLike[str]

# Friendlier legend names for the metrics written by the GAN trainer.
_DEFAULT_LABELS = {"d_loss": "Discriminator", "g_loss": "Generator"}

# Below this many points a raw curve is readable by itself; above it the
# step-to-step noise of adversarial losses hides the trend, so we smooth.
_SMOOTH_MIN_POINTS = 50

_FIGSIZE = (8.0, 4.5)
_DPI = 120


def _check_images(images: object, name: str = "images") -> np.ndarray:
    """Validates an NHWC image batch and returns it as float64, clipped to [-1, 1]."""
    arr = np.asarray(images)
    if arr.ndim != 4:
        raise ValueError(f"{name} must be NHWC (rank 4), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty, got shape {arr.shape}")
    if arr.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return np.clip(arr, -1.0, 1.0)


def _check_pair(real: object, generated: object) -> tuple[np.ndarray, np.ndarray]:
    """Validates two image batches that are to be compared with each other."""
    r = _check_images(real, "real")
    g = _check_images(generated, "generated")
    if r.shape[-1] != g.shape[-1]:
        raise ValueError(
            f"real and generated have different channel counts: {r.shape[-1]} vs {g.shape[-1]}"
        )
    return r, g


def _new_figure() -> tuple[Figure, object]:
    # A Figure with its own Agg canvas: no pyplot registry, no GUI backend.
    fig = Figure(figsize=_FIGSIZE, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save_figure(fig: Figure, path: PathLike) -> pathlib.Path:
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def image_grid(images: np.ndarray, *, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """Tiles a batch of images into one uint8 image.

    Padding is black and surrounds every tile, including the outer border (the
    ``torchvision.utils.make_grid`` convention), so the output shape is
    ``(rows*H + (rows+1)*padding, cols*W + (cols+1)*padding)``. Unused cells in
    the last row stay black. Pixel values map linearly -1 -> 0 and 1 -> 255.

    Args:
        images: NHWC array in [-1, 1] with C = 1 or 3.
        columns: Tiles per row; defaults to ``ceil(sqrt(N))``. Capped at N so
            a small batch does not produce empty black columns.
        padding: Black pixels between tiles and around the border, >= 0.

    Returns:
        ``uint8`` array of shape ``(height, width)`` for C = 1 or
        ``(height, width, 3)`` for C = 3.

    Raises:
        ValueError: On a wrong rank, empty batch, channel count other than
            1 or 3, non-finite values, ``columns < 1`` or ``padding < 0``.
    """
    arr = _check_images(images)
    n, h, w, c = arr.shape
    if columns is None:
        columns = math.ceil(math.sqrt(n))
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    cols = min(columns, n)
    rows = math.ceil(n / cols)

    # Round rather than truncate so 0.0 lands mid-range and the mapping is symmetric.
    pixels = np.rint((arr + 1.0) * 127.5).astype(np.uint8)
    grid = np.zeros((rows * h + (rows + 1) * padding, cols * w + (cols + 1) * padding, c), np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        top = padding + r * (h + padding)
        left = padding + k * (w + padding)
        grid[top : top + h, left : left + w] = pixels[i]
    # Greyscale as 2-D so Pillow and imshow treat it as a single-channel image.
    return grid[..., 0] if c == 1 else grid


def save_image_grid(
    images: np.ndarray, path: PathLike, *, columns: int | None = None, padding: int = 2
) -> pathlib.Path:
    """Writes :func:`image_grid` of ``images`` as a PNG at native resolution.

    One image pixel is one PNG pixel (no resampling, no matplotlib margins), so
    the file size in pixels is exactly the grid shape. Parent directories are
    created as needed.

    Args:
        images: NHWC array in [-1, 1] with C = 1 or 3.
        path: Destination file; written as PNG regardless of its suffix.
        columns: Tiles per row, see :func:`image_grid`.
        padding: Black border width in pixels, see :func:`image_grid`.

    Returns:
        The path written.
    """
    grid = image_grid(images, columns=columns, padding=padding)
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(out, format="PNG")
    return out


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` points (length ``len(values) - window + 1``)."""
    csum = np.cumsum(np.concatenate([[0.0], values]))
    return (csum[window:] - csum[:-window]) / window


def plot_losses(
    records: Sequence[Mapping[str, float]],
    path: PathLike,
    *,
    keys: Sequence[str] = ("d_loss", "g_loss"),
    labels: Sequence[str] | None = None,
    title: str = "GAN training losses",
) -> pathlib.Path:
    """Plots loss curves against training step (the seed paper's Figure 2).

    Each key becomes one curve. Rows lacking a key (or holding None/NaN/inf for
    it) are skipped for that curve only, so metrics logged at different
    intervals can share a plot. A row's x value is its ``"step"`` entry, or its
    index in ``records`` if it has none. With at least 50 points a curve is
    drawn faint and overlaid with a trailing moving average (window
    ``max(5, n // 25)`` points), since adversarial losses are too noisy to
    read raw.

    Args:
        records: Rows of ``metrics.jsonl``, e.g.
            ``{"step": 100, "d_loss": 0.7, "g_loss": 1.9}``.
        path: Destination PNG; parent directories are created.
        keys: Metric names to plot.
        labels: Legend names, one per key. Defaults to "Discriminator" /
            "Generator" for ``d_loss`` / ``g_loss`` and the key itself otherwise.
        title: Axes title.

    Returns:
        The path written.

    Raises:
        ValueError: If ``labels`` and ``keys`` differ in length, or no record
            holds a finite value for any key.
    """
    keys = list(keys)
    if labels is None:
        labels = [_DEFAULT_LABELS.get(k, k) for k in keys]
    elif len(labels) != len(keys):
        raise ValueError(f"labels has {len(labels)} entries but keys has {len(keys)}")

    curves = []
    for key, label in zip(keys, labels):
        xs, ys = [], []
        for i, row in enumerate(records):
            value = row.get(key)
            if value is None or not math.isfinite(float(value)):
                continue
            xs.append(float(row.get("step", i)))
            ys.append(float(value))
        if xs:
            curves.append((label, np.asarray(xs), np.asarray(ys)))
    if not curves:
        raise ValueError(f"no record contains a finite value for any of {keys}")

    fig, ax = _new_figure()
    for idx, (label, x, y) in enumerate(curves):
        color = f"C{idx}"
        if len(y) >= _SMOOTH_MIN_POINTS:
            window = max(5, len(y) // 25)
            ax.plot(x, y, color=color, alpha=0.25, linewidth=0.8)
            # Align each mean with the last step of its window (trailing average).
            ax.plot(
                x[window - 1 :],
                _moving_average(y, window),
                color=color,
                linewidth=1.8,
                label=f"{label} ({window}-point moving avg.)",
            )
        else:
            # Few points: markers show where the measurements actually are.
            marker = "o" if len(y) < 20 else None
            ax.plot(x, y, color=color, linewidth=1.5, marker=marker, markersize=3, label=label)
    if any(len(y) >= _SMOOTH_MIN_POINTS for _, _, y in curves):
        # One neutral legend entry explains all the faint raw lines at once.
        ax.plot([], [], color="0.4", alpha=0.35, linewidth=0.8, label="raw values (faint)")
    ax.set_xlabel("Training step")
    ax.set_ylabel("Loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    return _save_figure(fig, path)


def _pixel_histograms(
    real: np.ndarray, generated: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Density histograms of both (already validated) batches over [-1, 1]."""
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    edges = np.linspace(-1.0, 1.0, bins + 1)
    h_real, _ = np.histogram(real, bins=edges, density=True)
    h_gen, _ = np.histogram(generated, bins=edges, density=True)
    return h_real, h_gen, edges


def _wasserstein_from_densities(h_real: np.ndarray, h_gen: np.ndarray, edges: np.ndarray) -> float:
    # In 1-D, W1 = integral |F_real - F_gen| dx; with piecewise-constant
    # densities we evaluate the CDFs at the bin edges (a Riemann sum).
    widths = np.diff(edges)
    cdf_real = np.cumsum(h_real * widths)
    cdf_gen = np.cumsum(h_gen * widths)
    return float(np.sum(np.abs(cdf_real - cdf_gen) * widths))


def pixel_histogram_distance(real: np.ndarray, generated: np.ndarray, *, bins: int = 64) -> float:
    """1-D Wasserstein (earth mover's) distance between pixel-value histograms.

    All pixels of each batch (all channels pooled, clipped to [-1, 1]) are
    binned into ``bins`` equal bins over [-1, 1]; the distance is
    ``sum_i |CDF_real(e_i) - CDF_gen(e_i)| * bin_width``, i.e. mass sits at bin
    centres. It is 0 for identical distributions, symmetric, at most
    ``2 - 2/bins`` (all mass moved from -1 to 1), and grows with how far pixel mass must
    move (unlike total variation, it keeps increasing as two distributions
    drift further apart). It is the number :func:`plot_pixel_distribution`
    prints on its figure.

    Args:
        real: NHWC array of real images in [-1, 1].
        generated: NHWC array of generated images in [-1, 1], same C as ``real``
            (N, H and W may differ).
        bins: Number of histogram bins.

    Returns:
        The distance, in pixel-value units.

    Raises:
        ValueError: On a wrong rank, empty batch, mismatched channel counts,
            non-finite values or ``bins < 1``.
    """
    r, g = _check_pair(real, generated)
    return _wasserstein_from_densities(*_pixel_histograms(r, g, bins))


def plot_pixel_distribution(
    real: np.ndarray,
    generated: np.ndarray,
    path: PathLike,
    *,
    bins: int = 64,
    title: str = "Pixel value distribution",
    log: bool = False,
) -> pathlib.Path:
    """Overlays normalised pixel-value histograms of real vs generated images.

    The seed paper's Figure 3. The title carries the 1-D Wasserstein distance
    from :func:`pixel_histogram_distance` (same bins, same number).

    Args:
        real: NHWC array of real images in [-1, 1].
        generated: NHWC array of generated images in [-1, 1], same C as ``real``.
        path: Destination PNG; parent directories are created.
        bins: Number of equal bins over [-1, 1].
        title: First line of the axes title.
        log: Log-scale density axis. Useful for MRI, where the background
            spike at -1 otherwise flattens the tissue part of the histogram.

    Returns:
        The path written.

    Raises:
        ValueError: As for :func:`pixel_histogram_distance`.
    """
    r, g = _check_pair(real, generated)
    h_real, h_gen, edges = _pixel_histograms(r, g, bins)
    distance = _wasserstein_from_densities(h_real, h_gen, edges)

    fig, ax = _new_figure()
    for hist, label, color, n in (
        (h_real, "Real", "C0", r.shape[0]),
        (h_gen, "Generated", "C1", g.shape[0]),
    ):
        # Filled + outlined stairs so both stay visible where they overlap.
        ax.stairs(hist, edges, fill=True, alpha=0.35, color=color)
        ax.stairs(hist, edges, color=color, linewidth=1.5, label=f"{label} ({n} images)")
    ax.set_xlim(-1.0, 1.0)
    ax.set_xlabel("Pixel value")
    ax.set_ylabel("Density (log scale)" if log else "Density")
    if log:
        ax.set_yscale("log")
    ax.set_title(f"{title}\n1-D Wasserstein distance = {distance:.4f}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    return _save_figure(fig, path)
