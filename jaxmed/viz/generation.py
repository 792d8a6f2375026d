"""Figures of a generative model's training: loss curves and real-vs-generated pixel histograms.

These are the seed paper's Figure 2 (generator/discriminator loss against step) and
Figure 3 (pixel-value histograms); sample grids come from `jaxmed.viz.figures`.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from jaxmed.metrics import pixels
from jaxmed.viz import figures
from jaxmed.viz.figures import PathLike

# Friendlier legend names for the metrics written by the GAN trainer.
_DEFAULT_LABELS = {"d_loss": "Discriminator", "g_loss": "Generator"}

# Below this many points a raw curve is readable by itself; above it the
# step-to-step noise of adversarial losses hides the trend, so we smooth.
_SMOOTH_MIN_POINTS = 50


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

    fig, ax = figures.new_figure()
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
    return figures.save_figure(fig, path)


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
    from `jaxmed.metrics.pixels.pixel_histogram_distance` (same bins, same number).

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
        ValueError: As for `jaxmed.metrics.pixels.pixel_histogram_distance`.
    """
    r, g = pixels.checked_pair(real, generated)
    h_real, h_gen, edges = pixels.pixel_histograms(r, g, bins)
    distance = pixels.wasserstein_from_densities(h_real, h_gen, edges)

    fig, ax = figures.new_figure()
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
    return figures.save_figure(fig, path)
