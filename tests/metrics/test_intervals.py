"""Mean and Student-t intervals over folds, checked by hand."""

import math

import pytest

from jaxmed.metrics.intervals import fold_intervals, mean_interval

# Values 0.6, 0.8, 1.0: mean 0.8, s = 0.2, t(0.975, 2) = 4.302652729749464.
HALF_WIDTH = 4.302652729749464 * 0.2 / math.sqrt(3)


def test_mean_interval_by_hand():
    result = mean_interval([0.6, 0.8, 1.0])
    assert result["n"] == 3
    assert result["mean"] == pytest.approx(0.8) and result["std"] == pytest.approx(0.2)
    assert result["low"] == pytest.approx(0.8 - HALF_WIDTH) and result["high"] == pytest.approx(0.8 + HALF_WIDTH)
    assert mean_interval([0.5]) == {"mean": 0.5, "std": None, "low": None, "high": None, "n": 1}
    assert mean_interval([None, None])["n"] == 0
    # 90 %: t(0.95, 2) = 2.919985580355516.
    assert mean_interval([0.6, 0.8, 1.0], 0.9)["high"] == pytest.approx(0.8 + 2.919985580355516 * 0.2 / math.sqrt(3))


def test_fold_intervals_keep_the_nesting_and_skip_lists_strings_and_undefined_values():
    reports = [
        {"n": 10, "accuracy": 0.6, "roc_auc": None, "confusion_matrix": [[1, 2], [3, 4]], "name": "fold",
         "per_class": {"a": {"recall": 0.5}}, "flag": True},
        {"n": 10, "accuracy": 0.8, "roc_auc": 0.7, "confusion_matrix": [[1, 2], [3, 4]], "name": "fold",
         "per_class": {"a": {"recall": 0.7}}, "flag": False},
        {"n": 11, "accuracy": 1.0, "roc_auc": 0.9, "confusion_matrix": [[1, 2], [3, 4]], "name": "fold",
         "per_class": {"a": {"recall": 0.9}}, "flag": True},
    ]
    summary = fold_intervals(reports)
    assert list(summary) == ["n", "accuracy", "roc_auc", "per_class"]
    assert summary["accuracy"]["low"] == pytest.approx(0.8 - HALF_WIDTH)
    assert summary["per_class"]["a"]["recall"]["mean"] == pytest.approx(0.7)
    assert summary["per_class"]["a"]["recall"]["high"] == pytest.approx(0.7 + HALF_WIDTH)
    assert summary["roc_auc"]["n"] == 2 and summary["roc_auc"]["mean"] == pytest.approx(0.8)
    assert summary["n"]["mean"] == pytest.approx(31 / 3)


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError, match="at least one report"):
        fold_intervals([])
    with pytest.raises(ValueError, match="confidence must lie in"):
        mean_interval([1.0, 2.0], 1.0)
