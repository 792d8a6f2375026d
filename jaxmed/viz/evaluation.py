"""Figures of a generator's evaluation (`jaxmed evaluate`): memorisation pairs and feature embeddings."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from jaxmed.metrics import pixels
from jaxmed.viz import figures
from jaxmed.viz.figures import PathLike


def plot_nearest_training(
    generated: np.ndarray,
    nearest: np.ndarray,
    similarity: Sequence[float],
    path: PathLike,
    *,
    title: str = "Generated images and their nearest training images",
) -> pathlib.Path:
    """Pairs of images: each generated image above the training image most like it.

    The figure a reader needs to judge memorisation: a generator that copies patients
    shows pairs that are the same picture.

    Args:
        generated: ``(K, H, W, C)`` generated images in [-1, 1].
        nearest: ``(K, H, W, C)`` the training image nearest to each.
        similarity: K numbers printed under each pair (e.g. a correlation).
        path: Destination PNG; parent directories are created.
        title: Figure title.

    Returns:
        The path written.

    Raises:
        ValueError: If the arrays are not image batches of the same shape, or
            ``similarity`` does not have K entries.
    """
    generated, nearest = pixels.checked_images(generated, "generated"), pixels.checked_images(nearest, "nearest")
    if generated.shape != nearest.shape:
        raise ValueError(f"generated and nearest differ in shape: {generated.shape} and {nearest.shape}")
    values = [float(value) for value in similarity]
    if len(values) != len(generated):
        raise ValueError(f"similarity has {len(values)} entries for {len(generated)} pairs")
    k = len(generated)
    fig, axes = figures.new_figure_axes(2, k, (1.6 * k + 0.6, 3.8))
    for column in range(k):
        for row, (images, label) in enumerate(((generated, "generated"), (nearest, "nearest training"))):
            ax = axes[row, column]
            image = (np.clip(images[column], -1.0, 1.0) + 1.0) / 2.0
            ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 0:
                ax.set_ylabel(label)
        axes[1, column].set_xlabel(f"{values[column]:.3f}")
    fig.suptitle(title)
    return figures.save_figure(fig, path)


def plot_feature_embedding(
    sets: Mapping[str, np.ndarray],
    path: PathLike,
    *,
    title: str = "Features, first two principal components",
) -> pathlib.Path:
    """Scatter of feature sets on the first two principal components of all of them together.

    Generated points that stay in one corner of the real cloud show mode collapse; a
    cloud of their own shows images unlike the real ones.

    Args:
        sets: name -> ``(N, D)`` features (same D), drawn in order (the first underneath).
        path: Destination PNG; parent directories are created.
        title: Axes title.

    Returns:
        The path written.

    Raises:
        ValueError: If a set is not a finite 2-D array, or widths differ.
    """
    arrays = {name: np.asarray(values, dtype=np.float64) for name, values in sets.items()}
    widths = {array.shape[1] if array.ndim == 2 else None for array in arrays.values()}
    if not arrays or None in widths or len(widths) != 1 or any(len(a) == 0 for a in arrays.values()):
        raise ValueError("sets must be non-empty (N, D) arrays of one width D")
    if not all(np.all(np.isfinite(array)) for array in arrays.values()):
        raise ValueError("features must be finite")
    everything = np.concatenate(list(arrays.values()))
    mean = everything.mean(axis=0)
    _, singular, components = np.linalg.svd(everything - mean, full_matrices=False)
    axes_2 = components[:2].T if len(components) >= 2 else np.pad(components.T, ((0, 0), (0, 1)))
    explained = singular[:2] ** 2 / max(float(np.sum(singular ** 2)), 1e-300)
    fig, ax = figures.new_figure()
    for index, (name, array) in enumerate(arrays.items()):
        projected = (array - mean) @ axes_2
        ax.scatter(projected[:, 0], projected[:, 1], s=6, alpha=0.5, color=f"C{index}", label=f"{name} ({len(array)})")
    ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({explained[1] if len(explained) > 1 else 0.0:.0%} of variance)")
    ax.legend(markerscale=3)
    ax.set_title(title)
    return figures.save_figure(fig, path)
