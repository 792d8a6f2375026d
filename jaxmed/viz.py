"""Plots for generative models of medical images: sample grids, losses, pixel histograms.

These are the figures the seed paper (a DCGAN synthesising 128x128 brain MRI)
reports: a grid of samples, generator/discriminator loss against step
(Figure 2) and real-vs-generated pixel-value histograms (Figure 3). For the
classifiers trained on real and synthetic images there are training curves
(the nodule paper's Figures 4-5), ROC curves, confusion matrices and the
augmentation-study summary (each arm against the classic-augmentation
baseline). For the evaluation of a generator (`jaxmed evaluate`): generated images
beside their nearest training images (the memorisation check) and real and generated
features projected on their first two principal components.

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
from PIL import Image, PngImagePlugin

__all__ = [
    "image_grid",
    "save_image_grid",
    "plot_losses",
    "plot_pixel_distribution",
    "pixel_histogram_distance",
    "plot_training_curves",
    "plot_roc",
    "plot_confusion_matrix",
    "plot_study",
    "plot_nearest_training",
    "plot_feature_embedding",
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


# --- Classifier figures ---------------------------------------------------------
#
# The figures a classifier run and the augmentation study report: training
# curves (the nodule paper's Figures 4-5), ROC curves, a confusion matrix, and
# the study summary (each arm against the classic-augmentation baseline).

_CLASSIFIER_CURVES = (
    # (panel, key, legend label, colour): train and val keep one colour each in
    # both panels, so the eye can pair a loss curve with its accuracy curve.
    ("loss", "train_loss", "train", "C0"),
    ("loss", "val_loss", "validation", "C1"),
    ("accuracy", "train_accuracy", "train", "C0"),
    ("accuracy", "val_accuracy", "validation", "C1"),
)


def _new_figure_axes(nrows: int, ncols: int, figsize: tuple[float, float], **subplot_kw) -> tuple[Figure, np.ndarray]:
    """Like :func:`_new_figure`, with an ``(nrows, ncols)`` array of axes."""
    fig = Figure(figsize=figsize, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)


def _finite_float(value: object) -> float | None:
    """``float(value)`` if it is a finite real number, else None (for None/NaN/inf/non-numbers)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _percent_axis(ax: object, values: Sequence[float]) -> None:
    # Accuracies logged as fractions read more naturally as percentages.
    from matplotlib.ticker import PercentFormatter

    if values and min(values) >= 0.0 and max(values) <= 1.0:
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))


def plot_training_curves(
    records: Sequence[Mapping[str, float]], path: PathLike, *, title: str = "Classifier training"
) -> pathlib.Path:
    """Plots classifier loss and accuracy per epoch, side by side (the nodule paper's Figures 4-5).

    Left panel: ``train_loss`` and ``val_loss``; right panel: ``train_accuracy``
    and ``val_accuracy``, as percentages when all accuracies lie in [0, 1]. A
    row's x value is its ``"epoch"`` entry (its index in ``records`` if it has
    none). Rows lacking a key, or holding None/NaN/inf for it, are skipped for
    that curve only. The epoch of the lowest validation loss is marked: it is the
    epoch whose weights jaxmed's early stopping keeps and evaluates. A panel with
    no data says so instead of being left blank.

    Args:
        records: Rows of the classifier's ``metrics.jsonl``, e.g.
            ``{"epoch": 3, "train_loss": 0.41, "val_loss": 0.52,
            "train_accuracy": 0.83, "val_accuracy": 0.78}``.
        path: Destination PNG; parent directories are created.
        title: Figure title.

    Returns:
        The path written.

    Raises:
        ValueError: If ``records`` is empty or no row holds a finite value for
            any of the four keys.
    """
    if len(records) == 0:
        raise ValueError("records is empty: nothing to plot")
    curves: dict[str, list[tuple[str, str, np.ndarray, np.ndarray]]] = {"loss": [], "accuracy": []}
    for panel, key, label, color in _CLASSIFIER_CURVES:
        points = []
        for i, row in enumerate(records):
            y = _finite_float(row.get(key))
            x = _finite_float(row.get("epoch", i))
            if y is not None and x is not None:
                points.append((x, y))
        if points:
            points.sort()  # a resumed run may log epochs out of order
            xs, ys = (np.asarray(v) for v in zip(*points))
            curves[panel].append((label, color, xs, ys))
    if not curves["loss"] and not curves["accuracy"]:
        keys = ", ".join(key for _, key, _, _ in _CLASSIFIER_CURVES)
        raise ValueError(f"no record contains a finite value for any of {keys}")

    from matplotlib.ticker import MaxNLocator

    fig, axes = _new_figure_axes(1, 2, (11.0, 4.5))
    for ax, panel in zip(axes[0], ("loss", "accuracy")):
        for label, color, xs, ys in curves[panel]:
            # Markers while there are few epochs: they show where the measurements are.
            marker = "o" if len(xs) <= 30 else None
            ax.plot(xs, ys, color=color, linewidth=1.8, marker=marker, markersize=3.5, label=label)
        ax.set_xlabel("Epoch")
        ax.set_ylabel("Loss" if panel == "loss" else "Accuracy")
        ax.set_title(panel.capitalize())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        epochs = [float(x) for _, _, xs, _ in curves[panel] for x in xs]
        if epochs and max(epochs) - min(epochs) < 2:
            # One or two epochs: widen the axis, or the ticks land on fractional epochs.
            ax.set_xlim(min(epochs) - 1, max(epochs) + 1)
        ax.grid(True, alpha=0.3)
        if not curves[panel]:
            ax.text(0.5, 0.5, f"no {panel} recorded", transform=ax.transAxes, ha="center", va="center",
                    color="0.4")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        if panel == "accuracy":
            _percent_axis(ax, [float(y) for _, _, _, ys in curves[panel] for y in ys])
        val = [(xs, ys) for label, _, xs, ys in curves[panel] if label == "validation"]
        if panel == "loss" and val:
            xs, ys = val[0]
            best = int(np.argmin(ys))  # first epoch reaching the minimum
            ax.plot(xs[best], ys[best], marker="*", markersize=13, color="C1", markeredgecolor="black",
                    markeredgewidth=0.6, linestyle="none",
                    label=f"lowest validation loss: {ys[best]:.3g} (epoch {xs[best]:g}, weights kept)")
        ax.legend(loc="best")
    fig.suptitle(title)
    return _save_figure(fig, path)


def _check_curve(name: str, fpr: object, tpr: object) -> tuple[np.ndarray, np.ndarray]:
    """Validates one ROC curve: equal-length, non-empty, finite 1-D arrays in [0, 1]."""
    f = np.asarray(fpr, dtype=np.float64)
    t = np.asarray(tpr, dtype=np.float64)
    if f.ndim != 1 or t.ndim != 1 or f.shape != t.shape or f.size == 0:
        raise ValueError(f"curve {name!r}: fpr and tpr must be non-empty 1-D arrays of equal length, "
                         f"got shapes {f.shape} and {t.shape}")
    if not (np.all(np.isfinite(f)) and np.all(np.isfinite(t))):
        raise ValueError(f"curve {name!r}: fpr/tpr contain NaN or inf")
    if f.min() < 0.0 or f.max() > 1.0 or t.min() < 0.0 or t.max() > 1.0:
        raise ValueError(f"curve {name!r}: fpr and tpr must lie in [0, 1]")
    return f, t


def plot_roc(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: PathLike,
    *,
    aucs: Mapping[str, float] | None = None,
    title: str = "ROC curve",
) -> pathlib.Path:
    """Plots one or more ROC curves with the chance diagonal.

    Each curve is drawn as given (points joined in order, as returned by
    ``sklearn.metrics.roc_curve``), e.g. one per class or one per study arm.

    Args:
        curves: Legend name -> ``(fpr, tpr)``, equal-length 1-D arrays in [0, 1].
        path: Destination PNG; parent directories are created.
        aucs: Optional legend name -> area under the curve, shown in the
            legend as ``name (AUC = 0.912)``. Curves without an entry (or with
            None) are shown without one.
        title: Axes title.

    Returns:
        The path written.

    Raises:
        ValueError: If ``curves`` is empty, a curve is malformed (shapes,
            non-finite values, outside [0, 1]), or ``aucs`` names a curve that
            is not in ``curves`` or holds a value outside [0, 1].
    """
    if len(curves) == 0:
        raise ValueError("curves is empty: nothing to plot")
    checked = {str(name): _check_curve(str(name), *pair) for name, pair in curves.items()}
    aucs = dict(aucs or {})
    unknown = sorted(str(name) for name in aucs if str(name) not in checked)
    if unknown:
        raise ValueError(f"aucs names curves that are not plotted: {', '.join(unknown)}")
    for name, auc in aucs.items():
        if auc is not None and not (_finite_float(auc) is not None and 0.0 <= float(auc) <= 1.0):
            raise ValueError(f"aucs[{name!r}] must be a number in [0, 1], got {auc!r}")

    fig, ax = _new_figure_axes(1, 1, (5.8, 5.4))
    ax = ax[0, 0]
    ax.plot([0.0, 1.0], [0.0, 1.0], linestyle="--", color="0.55", linewidth=1.0, label="chance (AUC = 0.5)")
    for idx, (name, (fpr, tpr)) in enumerate(checked.items()):
        auc = aucs.get(name)
        label = name if auc is None else f"{name} (AUC = {float(auc):.3f})"
        ax.plot(fpr, tpr, color=f"C{idx}", linewidth=2.0, label=label)
    # A hair of margin so curves hugging the axes (the interesting ones) stay visible.
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("False positive rate (1 − specificity)")
    ax.set_ylabel("True positive rate (sensitivity)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    return _save_figure(fig, path)


def plot_confusion_matrix(
    matrix: np.ndarray,
    class_names: Sequence[str],
    path: PathLike,
    *,
    normalize: bool = True,
    title: str = "Confusion matrix",
) -> pathlib.Path:
    """Draws a confusion matrix as an annotated heatmap.

    Rows are true classes, columns predicted classes. Each cell shows its count
    and, when ``normalize``, its share of the true class (row-normalised, i.e.
    per-class recall on the diagonal). With ``normalize`` the colours follow
    the row shares, so a rare class (the usual case in medical data) is as
    readable as a common one; otherwise they follow the counts. Text is white
    on dark cells and black on light ones. The title's second line gives the
    number of examples and the overall accuracy.

    Args:
        matrix: ``(K, K)`` non-negative counts, ``matrix[true, predicted]``
            (floats allowed, e.g. averaged over seeds).
        class_names: K class names, in index order.
        path: Destination PNG; parent directories are created.
        normalize: Also show (and colour by) row-normalised percentages.
        title: First line of the axes title.

    Returns:
        The path written.

    Raises:
        ValueError: If ``matrix`` is not square, empty, negative or
            non-finite, or ``class_names`` does not have K entries.
    """
    counts = np.asarray(matrix, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.size == 0:
        raise ValueError(f"matrix must be a non-empty square (K, K) array, got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError("matrix must hold finite, non-negative counts")
    names = [str(name) for name in class_names]
    if len(names) != counts.shape[0]:
        raise ValueError(f"class_names has {len(names)} entries but matrix has shape {counts.shape}")

    k = counts.shape[0]
    row_sums = counts.sum(axis=1, keepdims=True)
    # A class absent from the data has an all-zero row; show 0 % rather than NaN.
    shares = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    colour_values = shares if normalize else counts
    vmax = 1.0 if normalize else max(float(counts.max()), 1.0)
    integral = np.all(counts == np.round(counts))

    side = max(4.8, 1.1 * k + 2.8)
    fig, ax = _new_figure_axes(1, 1, (side + 1.0, side))
    ax = ax[0, 0]
    cmap = "Blues"
    image = ax.imshow(colour_values, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
    # shrink, not fraction/pad: the latter fight constrained layout and clip the y label.
    colorbar = fig.colorbar(image, ax=ax, shrink=0.85)
    if normalize:
        from matplotlib.ticker import PercentFormatter

        colorbar.ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
        colorbar.set_label("Share of true class")
    else:
        colorbar.set_label("Count")

    # Font shrinks with K so two-line cells still fit.
    fontsize = 12 if k <= 4 else 10 if k <= 8 else 8
    for i in range(k):
        for j in range(k):
            count = f"{int(round(counts[i, j]))}" if integral else f"{counts[i, j]:.1f}"
            # A class with no examples has no shares; a dash says so where 0.0% would mislead.
            share = f"{shares[i, j]:.1%}" if row_sums[i, 0] > 0 else "–"
            text = f"{count}\n{share}" if normalize else count
            # Perceived luminance of the cell colour decides black vs white text.
            r, g, b, _ = image.cmap(image.norm(colour_values[i, j]))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                    color="white" if dark else "black")

    ax.set_xticks(range(k), names)
    ax.set_yticks(range(k), names)
    if max(len(name) for name in names) * k > 40:
        # Long names would overlap along the x axis.
        ax.tick_params(axis="x", labelrotation=30)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    total = counts.sum()
    accuracy = np.trace(counts) / total if total > 0 else float("nan")
    n_text = f"{int(round(total))}" if integral else f"{total:.1f}"
    ax.set_title(f"{title}\nn = {n_text}, accuracy = {accuracy:.1%}")
    return _save_figure(fig, path)


def _study_entry(summary: Mapping, section: str, arm: str, metric: str) -> Mapping:
    """``summary[section][arm][metric]`` as a mapping, or ValueError naming what is missing."""
    entry = summary[section][arm]
    if not isinstance(entry, Mapping) or metric not in entry or not isinstance(entry[metric], Mapping):
        raise ValueError(f"summary[{section!r}][{arm!r}] has no entry for metric {metric!r}")
    return entry[metric]


def plot_study(
    summary: Mapping,
    path: PathLike,
    *,
    metrics: Sequence[str] = ("accuracy", "recall", "f1"),
    title: str = "Augmentation study",
) -> pathlib.Path:
    """Plots an augmentation study: each arm's metrics and its difference to the baseline.

    Top row, one panel per metric: a bar per arm at the mean over seeds, with
    ± one standard deviation as an error bar and the per-seed values as dots.
    The baseline arm is hatched. Bottom row, same panels: each arm's mean
    paired difference to the baseline with its confidence interval as an error
    bar and a zero line; a filled marker means the interval excludes zero (a
    measurable effect), a hollow one that it does not. Arms keep the order of
    ``summary["arms"]`` and one colour each across all panels.

    Missing numbers are tolerated as the study produces them: a None mean
    (no finite value) leaves out the bar, None per-seed values are skipped,
    and None interval bounds (a single seed) draw the point without an
    interval.

    Args:
        summary: ``{"arms": {arm: {metric: {"mean", "std", "values"}}},
            "baseline": arm, "differences": {arm: {metric: {"mean", "low",
            "high"}}}}``; ``"std"``, ``"values"`` and ``"differences"`` are
            optional. An optional ``"confidence"`` (e.g. 0.95) labels the
            intervals with their level.
        path: Destination PNG; parent directories are created.
        metrics: Metric names to plot, one column of panels each.
        title: Figure title.

    Returns:
        The path written.

    Raises:
        ValueError: If ``summary`` has no arms, no baseline, a baseline that is
            not an arm, an arm or difference lacking a requested metric, a
            difference for an unknown arm, or ``metrics`` is empty.
    """
    if not isinstance(summary, Mapping):
        raise ValueError(f"summary must be a mapping, got {type(summary).__name__}")
    arms_section = summary.get("arms")
    if not isinstance(arms_section, Mapping) or len(arms_section) == 0:
        raise ValueError("summary has no arms")
    baseline = summary.get("baseline")
    if baseline is None:
        raise ValueError("summary has no baseline")
    if baseline not in arms_section:
        raise ValueError(f"summary baseline {baseline!r} is not one of the arms: {', '.join(map(str, arms_section))}")
    metrics = [str(m) for m in ([metrics] if isinstance(metrics, str) else metrics)]
    if not metrics:
        raise ValueError("metrics is empty: nothing to plot")
    differences = summary.get("differences") or {}
    if not isinstance(differences, Mapping):
        raise ValueError("summary['differences'] must be a mapping")
    unknown = [str(arm) for arm in differences if arm not in arms_section]
    if unknown:
        raise ValueError(f"summary differences name unknown arms: {', '.join(unknown)}")

    arms = list(arms_section)
    # Gather everything first, so a malformed summary fails before any drawing.
    levels = {(arm, m): _study_entry(summary, "arms", arm, m) for arm in arms for m in metrics}
    deltas = {(arm, m): _study_entry(summary, "differences", arm, m)
              for arm in differences if arm != baseline for m in metrics}

    confidence = _finite_float(summary.get("confidence"))
    ci_label = f"{confidence:.0%} CI" if confidence is not None and 0 < confidence < 1 else "CI"
    x = np.arange(len(arms))
    colors = {arm: f"C{i % 10}" for i, arm in enumerate(arms)}
    tick_labels = [f"{arm}\n(baseline)" if arm == baseline else str(arm) for arm in arms]
    long_names = max(len(str(arm)) for arm in arms) * len(arms) > 36
    rng = np.random.default_rng(0)  # fixed jitter: the same summary always gives the same picture

    width = max(8.0, len(metrics) * (1.2 + 0.75 * len(arms)))
    fig, axes = _new_figure_axes(2, len(metrics), (width, 8.0 if long_names else 7.2), sharex=True)
    for col, metric in enumerate(metrics):
        top, bottom = axes[0, col], axes[1, col]
        all_levels: list[float] = []
        for i, arm in enumerate(arms):
            entry = levels[arm, metric]
            mean = _finite_float(entry.get("mean"))
            std = _finite_float(entry.get("std"))
            if mean is not None:
                all_levels.append(mean)
                top.bar(x[i], mean, width=0.7, color=colors[arm], alpha=0.55, edgecolor=colors[arm],
                        hatch="//" if arm == baseline else None, linewidth=1.2, zorder=2)
                if std is not None and std > 0:
                    top.errorbar(x[i], mean, yerr=std, color="black", capsize=4, linewidth=1.2, zorder=3)
            values = [v for v in (_finite_float(v) for v in entry.get("values") or []) if v is not None]
            if values:
                all_levels.extend(values)
                jitter = rng.uniform(-0.15, 0.15, len(values))
                top.scatter(x[i] + jitter, values, s=16, color="black", alpha=0.75, zorder=4, linewidths=0)
            if mean is None and not values:
                top.text(x[i], 0.02, "n/a", ha="center", va="bottom", color="0.4", transform=top.get_xaxis_transform())
        top.set_title(metric)
        top.grid(True, axis="y", alpha=0.3, zorder=0)
        if all_levels and min(all_levels) >= 0.0 and max(all_levels) <= 1.0:
            # Fractional metrics: bars start at 0 (honest heights), top at 100 %.
            top.set_ylim(0.0, 1.05)
            _percent_axis(top, all_levels)
        if col == 0:
            top.set_ylabel("Mean ± std over seeds\n(dots: individual seeds)")

        bottom.axhline(0.0, color="0.3", linewidth=1.0, zorder=1)
        for i, arm in enumerate(arms):
            if arm == baseline:
                bottom.plot(x[i], 0.0, marker="D", color="0.5", markersize=6, linestyle="none", zorder=3)
                continue
            if (arm, metric) not in deltas:
                continue
            entry = deltas[arm, metric]
            mean, low, high = (_finite_float(entry.get(k)) for k in ("mean", "low", "high"))
            if mean is None:
                bottom.text(x[i], 0.5, "n/a", ha="center", va="center", color="0.4",
                            transform=bottom.get_xaxis_transform())
                continue
            has_ci = low is not None and high is not None
            if has_ci:
                bottom.errorbar(x[i], mean, yerr=[[max(mean - low, 0.0)], [max(high - mean, 0.0)]],
                                color=colors[arm], capsize=5, linewidth=1.8, zorder=2)
            decisive = has_ci and (low > 0.0 or high < 0.0)
            bottom.plot(x[i], mean, marker="o", markersize=8, linestyle="none", zorder=3,
                        markeredgecolor=colors[arm], markeredgewidth=1.8,
                        markerfacecolor=colors[arm] if decisive else "white")
            bottom.annotate(f"{mean:+.3f}", (x[i], mean), xytext=(8, 0), textcoords="offset points",
                            va="center", fontsize=8, color="0.2")
        bottom.grid(True, axis="y", alpha=0.3, zorder=0)
        bottom.set_title(f"{metric}: difference to {baseline}", fontsize=10)
        if col == 0:
            bottom.set_ylabel(f"Mean paired difference\n± {ci_label}")
        bottom.set_xticks(x, tick_labels)
        if long_names:
            bottom.tick_params(axis="x", labelrotation=30)
            for label in bottom.get_xticklabels():
                label.set_horizontalalignment("right")
        bottom.set_xlim(-0.6, len(arms) - 0.4)

    legend = f"filled marker: {ci_label} excludes 0 · hollow: it does not · ◆ baseline (0 by definition)"
    fig.suptitle(f"{title}\n{legend}", fontsize=11)
    return _save_figure(fig, path)


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
    generated, nearest = _check_images(generated, "generated"), _check_images(nearest, "nearest")
    if generated.shape != nearest.shape:
        raise ValueError(f"generated and nearest differ in shape: {generated.shape} and {nearest.shape}")
    values = [float(value) for value in similarity]
    if len(values) != len(generated):
        raise ValueError(f"similarity has {len(values)} entries for {len(generated)} pairs")
    k = len(generated)
    fig, axes = _new_figure_axes(2, k, (1.6 * k + 0.6, 3.8))
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
    return _save_figure(fig, path)


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
    fig, ax = _new_figure()
    for index, (name, array) in enumerate(arrays.items()):
        projected = (array - mean) @ axes_2
        ax.scatter(projected[:, 0], projected[:, 1], s=6, alpha=0.5, color=f"C{index}", label=f"{name} ({len(array)})")
    ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({explained[1] if len(explained) > 1 else 0.0:.0%} of variance)")
    ax.legend(markerscale=3)
    ax.set_title(title)
    return _save_figure(fig, path)
