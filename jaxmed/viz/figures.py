"""Shared figure plumbing and image grids: headless figures, PNG output, tiled batches.

Figures are built with the object-oriented ``matplotlib.figure.Figure`` +
``FigureCanvasAgg`` API and never touch ``pyplot``'s global state, so every plot can be
drawn from a training loop, a worker thread or CI without a display.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, PngImagePlugin

from jaxmed.metrics.pixels import checked_images

PathLike = str | os.PathLike[str]

# Size and resolution of a single-panel figure.
FIGSIZE = (8.0, 4.5)
DPI = 120


def new_figure() -> tuple[Figure, object]:
    """A single-panel figure with its own Agg canvas (no pyplot registry, no GUI backend) and its axes."""
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def save_figure(fig: Figure, path: PathLike) -> pathlib.Path:
    """Writes `fig` as a PNG at `path`, creating parent folders, and returns the path."""
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def new_figure_axes(nrows: int, ncols: int, figsize: tuple[float, float], **subplot_kw) -> tuple[Figure, np.ndarray]:
    """Like :func:`new_figure`, with an ``(nrows, ncols)`` array of axes."""
    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)


def finite_float(value: object) -> float | None:
    """``float(value)`` if it is a finite real number, else None (for None/NaN/inf/non-numbers)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def percent_axis(ax: object, values: Sequence[float]) -> None:
    """Labels the y axis in percent when all `values` are fractions in [0, 1] (they read more naturally so)."""
    from matplotlib.ticker import PercentFormatter

    if values and min(values) >= 0.0 and max(values) <= 1.0:
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))


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
    arr = checked_images(images)
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
    images: np.ndarray, path: PathLike, *, columns: int | None = None, padding: int = 2,
    description: str | None = None,
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
        description: Stored as the PNG's "Description" text, e.g.
            ``jaxmed.export.SYNTHETIC_NOTE`` for grids of generated images.

    Returns:
        The path written.
    """
    grid = image_grid(images, columns=columns, padding=padding)
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    if description:
        info.add_text("Description", description)
    Image.fromarray(grid).save(out, format="PNG", pnginfo=info)
    return out
