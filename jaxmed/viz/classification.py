"""Figures of a classifier run: training curves, ROC curves and a confusion matrix."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from jaxmed.viz import figures
from jaxmed.viz.figures import PathLike

_CLASSIFIER_CURVES = (
    # (panel, key, legend label, colour): train and val keep one colour each in
    # both panels, so the eye can pair a loss curve with its accuracy curve.
    ("loss", "train_loss", "train", "C0"),
    ("loss", "val_loss", "validation", "C1"),
    ("accuracy", "train_accuracy", "train", "C0"),
    ("accuracy", "val_accuracy", "validation", "C1"),
)


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
            y = figures.finite_float(row.get(key))
            x = figures.finite_float(row.get("epoch", i))
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

    fig, axes = figures.new_figure_axes(1, 2, (11.0, 4.5))
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
            figures.percent_axis(ax, [float(y) for _, _, _, ys in curves[panel] for y in ys])
        val = [(xs, ys) for label, _, xs, ys in curves[panel] if label == "validation"]
        if panel == "loss" and val:
            xs, ys = val[0]
            best = int(np.argmin(ys))  # first epoch reaching the minimum
            ax.plot(xs[best], ys[best], marker="*", markersize=13, color="C1", markeredgecolor="black",
                    markeredgewidth=0.6, linestyle="none",
                    label=f"lowest validation loss: {ys[best]:.3g} (epoch {xs[best]:g}, weights kept)")
        ax.legend(loc="best")
    fig.suptitle(title)
    return figures.save_figure(fig, path)


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
    points: Mapping[str, tuple[float, float]] | None = None,
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
        points: Optional label -> ``(fpr, tpr)`` operating points marked on the curves
            (e.g. the decision threshold chosen on the validation split).
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
        if auc is not None and not (figures.finite_float(auc) is not None and 0.0 <= float(auc) <= 1.0):
            raise ValueError(f"aucs[{name!r}] must be a number in [0, 1], got {auc!r}")

    fig, ax = figures.new_figure_axes(1, 1, (5.8, 5.4))
    ax = ax[0, 0]
    ax.plot([0.0, 1.0], [0.0, 1.0], linestyle="--", color="0.55", linewidth=1.0, label="chance (AUC = 0.5)")
    for idx, (name, (fpr, tpr)) in enumerate(checked.items()):
        auc = aucs.get(name)
        label = name if auc is None else f"{name} (AUC = {float(auc):.3f})"
        ax.plot(fpr, tpr, color=f"C{idx}", linewidth=2.0, label=label)
    for marker, (label, (fpr, tpr)) in zip("os^D", (points or {}).items()):
        ax.plot([fpr], [tpr], marker=marker, markersize=8, linestyle="none", color="black", label=label)
    # A hair of margin so curves hugging the axes (the interesting ones) stay visible.
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("False positive rate (1 − specificity)")
    ax.set_ylabel("True positive rate (sensitivity)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    return figures.save_figure(fig, path)


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
    fig, ax = figures.new_figure_axes(1, 1, (side + 1.0, side))
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
    return figures.save_figure(fig, path)
