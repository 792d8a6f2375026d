"""Mean and Student-t confidence interval of every metric over cross-validation folds.

With K-fold cross-validation (`jaxmed.data.splits.stratified_group_kfold`) each fold
gives one report (e.g. `jaxmed.metrics.classification.classification_metrics`); the
summary of a metric is the mean over folds with the interval
mean ± t(confidence, n - 1) * s / sqrt(n), s the sample standard deviation (ddof=1).
Folds share training data and repeats share test data, so fold results are not
independent and this interval is somewhat too narrow: read it as the spread of the
procedure across splits, not as an exact coverage guarantee.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.stats


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Mean, sample standard deviation and Student-t interval of a few values.

    Args:
      values: one value per fold (None entries, metrics undefined on a fold, are left out).
      confidence: central mass of the interval.

    Returns:
      {"mean", "std", "low", "high", "n"}: floats, or None where undefined (no values;
      std and the interval need two).

    Raises:
      ValueError: if `confidence` is outside (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    kept = np.asarray([value for value in values if value is not None], dtype=np.float64)
    count = int(kept.size)
    if count == 0:
        return {"mean": None, "std": None, "low": None, "high": None, "n": 0}
    mean = float(kept.mean())
    if count == 1:
        return {"mean": mean, "std": None, "low": None, "high": None, "n": 1}
    std = float(kept.std(ddof=1))
    half_width = float(scipy.stats.t.ppf(0.5 + confidence / 2.0, count - 1)) * std / math.sqrt(count)
    return {"mean": mean, "std": std, "low": mean - half_width, "high": mean + half_width, "n": count}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)


def fold_intervals(reports: Sequence[dict[str, Any]], confidence: float = 0.95) -> dict[str, Any]:
    """Summarises every numeric metric of per-fold reports, keeping their nesting.

    A key's values are gathered over the reports that have it; a number (int or float,
    not bool) becomes `mean_interval` of its values, a dict is summarised recursively,
    and anything else (lists such as confusion matrices, strings) is left out. None counts
    as "undefined on this fold" (e.g. ROC AUC with one class).

    Args:
      reports: one JSON-able dict per fold (or per fold and repeat).
      confidence: central mass of the intervals.

    Returns:
      The nesting of the reports, with `mean_interval` dicts as leaves.

    Raises:
      ValueError: if there are no reports, or `confidence` is outside (0, 1).
    """
    if not reports:
        raise ValueError("fold_intervals needs at least one report")
    summary: dict[str, Any] = {}
    keys = list(dict.fromkeys(key for report in reports for key in report))  # first-seen order
    for key in keys:
        values = [report[key] for report in reports if key in report]
        defined = [value for value in values if value is not None]
        if defined and all(isinstance(value, dict) for value in defined):
            summary[key] = fold_intervals(defined, confidence)
        elif all(_is_number(value) for value in defined):
            summary[key] = mean_interval(values, confidence)
    return summary
