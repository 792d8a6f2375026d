"""The augmentation-study figures: each arm's metrics and paired difference to the baseline, and effect curves."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from jaxmed.viz import figures
from jaxmed.viz.figures import PathLike


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

    confidence = figures.finite_float(summary.get("confidence"))
    ci_label = f"{confidence:.0%} CI" if confidence is not None and 0 < confidence < 1 else "CI"
    x = np.arange(len(arms))
    colors = {arm: f"C{i % 10}" for i, arm in enumerate(arms)}
    tick_labels = [f"{arm}\n(baseline)" if arm == baseline else str(arm) for arm in arms]
    long_names = max(len(str(arm)) for arm in arms) * len(arms) > 36
    rng = np.random.default_rng(0)  # fixed jitter: the same summary always gives the same picture

    width = max(8.0, len(metrics) * (1.2 + 0.75 * len(arms)))
    fig, axes = figures.new_figure_axes(2, len(metrics), (width, 8.0 if long_names else 7.2), sharex=True)
    for col, metric in enumerate(metrics):
        top, bottom = axes[0, col], axes[1, col]
        all_levels: list[float] = []
        for i, arm in enumerate(arms):
            entry = levels[arm, metric]
            mean = figures.finite_float(entry.get("mean"))
            std = figures.finite_float(entry.get("std"))
            if mean is not None:
                all_levels.append(mean)
                top.bar(x[i], mean, width=0.7, color=colors[arm], alpha=0.55, edgecolor=colors[arm],
                        hatch="//" if arm == baseline else None, linewidth=1.2, zorder=2)
                if std is not None and std > 0:
                    top.errorbar(x[i], mean, yerr=std, color="black", capsize=4, linewidth=1.2, zorder=3)
            values = [v for v in (figures.finite_float(v) for v in entry.get("values") or []) if v is not None]
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
            figures.percent_axis(top, all_levels)
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
            mean, low, high = (figures.finite_float(entry.get(k)) for k in ("mean", "low", "high"))
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
    return figures.save_figure(fig, path)


def plot_effects(
    series: Mapping[str, Sequence[Mapping]],
    path: PathLike,
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    log_x: bool = False,
) -> pathlib.Path:
    """Plots effect curves: per series, a mean difference with its confidence interval at each x.

    Used for an arm family's AUC difference to the baseline against the synthetic:real
    ratio, and each arm's difference against the number of real minority images. A
    filled marker means the interval excludes zero, a hollow one that it does not; a
    point without bounds (a single seed) is drawn without an interval, a None mean not
    at all. Series are offset slightly along x so overlapping intervals stay readable.

    Args:
        series: ``{label: [{"x", "mean", "low", "high"}, ...]}``, points in any order.
        path: Destination PNG; parent directories are created.
        xlabel, ylabel, title: Axis labels and title.
        log_x: A logarithmic x axis (ratios 0.25 ... 4 spread evenly).

    Returns:
        The path written.

    Raises:
        ValueError: If ``series`` is empty, or a point lacks "x" or "mean".
    """
    if not isinstance(series, Mapping) or not series:
        raise ValueError("series is empty: nothing to plot")
    for label, points in series.items():
        for point in points:
            if "x" not in point or "mean" not in point:
                raise ValueError(f"series {label!r} has a point without 'x' or 'mean': {point!r}")
    fig, ax = figures.new_figure()
    ax.axhline(0.0, color="0.3", linewidth=1.0, zorder=1)
    all_x = sorted({float(point["x"]) for points in series.values() for point in points})
    span = (np.log(all_x[-1]) - np.log(all_x[0]) if log_x and all_x[0] > 0 else all_x[-1] - all_x[0]) or 1.0
    for i, (label, points) in enumerate(series.items()):
        color = f"C{i % 10}"
        shift = (i - (len(series) - 1) / 2) * 0.015 * span
        drawn = []
        for point in sorted(points, key=lambda p: float(p["x"])):
            mean = figures.finite_float(point.get("mean"))
            if mean is None:
                continue
            x = float(point["x"])
            x = x * float(np.exp(shift)) if log_x and x > 0 else x + shift
            low, high = figures.finite_float(point.get("low")), figures.finite_float(point.get("high"))
            decisive = low is not None and high is not None and (low > 0 or high < 0)
            if low is not None and high is not None:
                ax.errorbar(x, mean, yerr=[[max(mean - low, 0.0)], [max(high - mean, 0.0)]], color=color,
                            capsize=4, linewidth=1.4, zorder=2)
            ax.plot(x, mean, marker="o", markersize=7, linestyle="none", markeredgecolor=color,
                    markerfacecolor=color if decisive else "white", markeredgewidth=1.6, zorder=3)
            drawn.append((x, mean))
        if drawn:
            xs, ys = zip(*drawn)
            ax.plot(xs, ys, color=color, linewidth=1.2, alpha=0.7, label=str(label), zorder=2)
    if log_x:
        ax.set_xscale("log")
        ax.set_xticks(all_x, [f"{x:g}" for x in all_x])
        ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\nfilled: the interval excludes 0 · hollow: it does not", fontsize=10)
    ax.grid(True, alpha=0.3, zorder=0)
    ax.legend(fontsize=8, loc="best")
    return figures.save_figure(fig, path)
