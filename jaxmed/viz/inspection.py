"""The example montage of ``jaxmed data inspect``: a few images of each class, one row per class."""

from __future__ import annotations

import pathlib

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxmed.data.dataset import Dataset
from jaxmed.viz import figures

MONTAGE_COLUMNS = 8


def save_montage(dataset: Dataset, path: str | pathlib.Path, *, per_class: int = MONTAGE_COLUMNS) -> pathlib.Path:
    """Writes a PNG of example images: one row per class, up to `per_class` evenly spaced examples each.

    Args:
      dataset: the data set.
      path: the PNG to write (folders are created).
      per_class: examples per row.

    Returns:
      The path written.
    """
    class_names = dataset.class_names
    height, width, channels = dataset.images.shape[1:]
    tiles = np.full((len(class_names) * per_class, height, width, channels), -1.0, np.float32)
    counts = np.bincount(dataset.labels, minlength=len(class_names))
    for label in range(len(class_names)):
        members = np.flatnonzero(dataset.labels == label)
        picks = members[np.unique(np.linspace(0, len(members) - 1, min(per_class, len(members))).round().astype(int))]
        tiles[label * per_class:label * per_class + len(picks)] = dataset.images[picks]
    padding = 2
    grid = figures.image_grid(tiles, columns=per_class, padding=padding)
    # About an inch per tile, so small images stay visible; class names label the rows.
    figure = Figure(figsize=(1.0 * per_class + 2.0, 1.0 * len(class_names) + 0.8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    axes.set_xticks([])
    axes.set_yticks([padding + row * (height + padding) + height / 2 for row in range(len(class_names))],
                    [f"{name} ({counts[label]:,})" for label, name in enumerate(class_names)])
    axes.set_title(f"{dataset.provenance.get('spec', '')}: examples per class", fontsize=10)
    return figures.save_figure(figure, path)
