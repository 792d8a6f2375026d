"""Classifier metrics against values counted by hand, scipy's Mann-Whitney U and bootstrap theory."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxmed.metrics import classification as cls
from jaxmed.metrics.classification import (
    METRIC_NAMES,
    bootstrap_intervals,
    classification_metrics,
    confusion_matrix,
    evaluate,
    roc_auc,
    roc_curve,
)

# Metrics are computed in float32: compare hand fractions to float32 precision.
TOL = dict(rtol=1e-6, atol=1e-7)
# One resample count for every bootstrap test, so compiled programs are shared by shape.
RESAMPLES = 500

# --- a 10-example binary case, counted by hand --------------------------------------
#
# index:    0    1    2    3    4    5     6    7    8     9
# label:    1    1    1    1    0    0     0    0    0     0
# p(pos):  0.9  0.8  0.6  0.3  0.7  0.55  0.2  0.1  0.35  0.05
# pred:     1    1    1    0    1    1     0    0    0     0     (p > 0.5)
#
# Positive class 1: TP = 3 (0, 1, 2), FN = 1 (3), FP = 2 (4, 5), TN = 4 (6-9).
#   accuracy = (TP + TN) / 10 = 7/10;  precision = 3/5;  recall = 3/4;
#   specificity = TN / (TN + FP) = 4/6;  F1 = 2 TP / (2 TP + FP + FN) = 6/9.
#   AUC: negatives below each positive: 0.9 -> 6, 0.8 -> 6, 0.6 -> 5 (not 0.7),
#   0.3 -> 3 (0.2, 0.1, 0.05); no ties; (6 + 6 + 5 + 3) / (4 * 6) = 20/24.
# Class 0 one-vs-rest: TP = 4 (6-9), FP = 1 (3), FN = 2 (4, 5), TN = 3 (0, 1, 2).
#   precision = 4/5, recall = 4/6, specificity = 3/4, F1 = 8/11; AUC on 1 - p is the
#   same pair count seen from the other side: 20/24.
# Confusion matrix (rows true, cols predicted): [[TN, FP], [FN, TP]] = [[4, 2], [1, 3]].
# Macro = mean of the two classes: precision (4/5 + 3/5)/2 = 7/10, recall (4/6 + 3/4)/2
#   = 17/24, specificity (3/4 + 4/6)/2 = 17/24, F1 (8/11 + 6/9)/2 = 23/33, AUC 20/24.
BINARY_LABELS = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
BINARY_P = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.55, 0.2, 0.1, 0.35, 0.05], np.float32)

# --- a 10-example 3-class case, counted by hand -------------------------------------
#
# label: 0 0 0 1 1 1 1 2 2 2
# pred:  0 1 0 1 1 2 1 2 0 0
# Confusion matrix rows (true 0: preds 0,1,0; true 1: 1,1,2,1; true 2: 2,0,0):
#   [[2, 1, 0], [0, 3, 1], [2, 0, 1]]; accuracy = trace / 10 = 6/10.
# class 0: TP 2, predicted 4 (column sum), support 3 -> P 2/4, R 2/3, FP 2, FN 1,
#          TN = 10 - 3 - 2 = 5 -> specificity 5/7, F1 = 4 / (4 + 2 + 1) = 4/7
# class 1: TP 3, predicted 4, support 4 -> P 3/4, R 3/4, FP 1, FN 1, TN 5 -> spec 5/6, F1 6/8
# class 2: TP 1, predicted 2, support 3 -> P 1/2, R 1/3, FP 1, FN 2, TN 6 -> spec 6/7, F1 2/5
# Probabilities put 0.6 on the predicted class and 0.2 on the others, so column c is a
# two-level score (high iff predicted c). With r = recall and s = specificity, a
# (positive, negative) pair is won when the positive is high and the negative low
# (r * s), tied when both are high or both low (r(1-s) + (1-r)s, worth 1/2), so
# AUC = r s + (r(1-s) + (1-r)s) / 2 = (r + s) / 2:
#   class 0: (2/3 + 5/7)/2 = 29/42;  class 1: (3/4 + 5/6)/2 = 19/24;  class 2: (1/3 + 6/7)/2 = 25/42.
MULTI_LABELS = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
MULTI_PREDICTIONS = np.array([0, 1, 0, 1, 1, 2, 1, 2, 0, 0])
MULTI_PROBS = np.where(np.eye(3, dtype=bool)[MULTI_PREDICTIONS], 0.6, 0.2).astype(np.float32)


def synthetic_binary(n, seed):
    """Labels and positive-class probabilities of a fair classifier (AUC about 0.85)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    logits = (2 * labels - 1) + rng.normal(size=n)
    return labels, (1 / (1 + np.exp(-logits))).astype(np.float32)


# --- confusion matrix and point metrics -------------------------------------------------


def test_binary_metrics_by_hand():
    result = classification_metrics(BINARY_LABELS, BINARY_P, class_names=["healthy", "lesion"])
    assert result["n"] == 10
    assert result["confusion_matrix"] == [[4, 2], [1, 3]]
    np.testing.assert_allclose(result["accuracy"], 7 / 10, **TOL)
    for key, value in {"precision": 3 / 5, "recall": 3 / 4, "specificity": 4 / 6, "f1": 6 / 9,
                       "roc_auc": 20 / 24}.items():
        np.testing.assert_allclose(result[key], value, **TOL, err_msg=key)
        np.testing.assert_allclose(result["per_class"]["lesion"][key], value, **TOL, err_msg=key)
    expected_healthy = {"precision": 4 / 5, "recall": 4 / 6, "specificity": 3 / 4, "f1": 8 / 11, "roc_auc": 20 / 24}
    for key, value in expected_healthy.items():
        np.testing.assert_allclose(result["per_class"]["healthy"][key], value, **TOL, err_msg=key)
    assert result["per_class"]["healthy"]["support"] == 6 and result["per_class"]["lesion"]["support"] == 4
    expected_macro = {"precision": 7 / 10, "recall": 17 / 24, "specificity": 17 / 24, "f1": 23 / 33,
                      "roc_auc": 20 / 24}
    for key, value in expected_macro.items():
        np.testing.assert_allclose(result["macro"][key], value, **TOL, err_msg=key)


def test_binary_vector_and_two_column_inputs_agree():
    from_vector = classification_metrics(BINARY_LABELS, BINARY_P)
    from_columns = classification_metrics(BINARY_LABELS, np.stack([1 - BINARY_P, BINARY_P], axis=1))
    assert from_vector == from_columns
    assert list(from_vector["per_class"]) == ["0", "1"]  # default names


def test_three_class_confusion_matrix_by_hand():
    expected = [[2, 1, 0], [0, 3, 1], [2, 0, 1]]
    matrix = confusion_matrix(MULTI_LABELS, MULTI_PREDICTIONS, 3)
    assert matrix.dtype == jnp.int32 and matrix.shape == (3, 3)
    np.testing.assert_array_equal(matrix, expected)
    # Also under jit, with num_classes static.
    jitted = jax.jit(confusion_matrix, static_argnums=2)(jnp.asarray(MULTI_LABELS), jnp.asarray(MULTI_PREDICTIONS), 3)
    np.testing.assert_array_equal(jitted, expected)


def test_three_class_metrics_and_macro_by_hand():
    result = classification_metrics(MULTI_LABELS, MULTI_PROBS, class_names=["a", "b", "c"])
    assert result["confusion_matrix"] == [[2, 1, 0], [0, 3, 1], [2, 0, 1]]
    np.testing.assert_allclose(result["accuracy"], 6 / 10, **TOL)
    expected = {
        "a": {"precision": 2 / 4, "recall": 2 / 3, "specificity": 5 / 7, "f1": 4 / 7, "roc_auc": 29 / 42},
        "b": {"precision": 3 / 4, "recall": 3 / 4, "specificity": 5 / 6, "f1": 6 / 8, "roc_auc": 19 / 24},
        "c": {"precision": 1 / 2, "recall": 1 / 3, "specificity": 6 / 7, "f1": 2 / 5, "roc_auc": 25 / 42},
    }
    for name, values in expected.items():
        for key, value in values.items():
            np.testing.assert_allclose(result["per_class"][name][key], value, **TOL, err_msg=f"{name} {key}")
    assert [result["per_class"][name]["support"] for name in "abc"] == [3, 4, 3]
    # Macro = plain mean over the three classes, e.g. F1 (4/7 + 3/4 + 2/5)/3
    # = (80 + 105 + 56)/140/3 = 241/420 and AUC (29/42 + 19/24 + 25/42)/3
    # = (216 + 133)/168/3 = 349/504.
    for key in ("precision", "recall", "specificity", "f1", "roc_auc"):
        mean = np.mean([values[key] for values in expected.values()])
        np.testing.assert_allclose(result["macro"][key], mean, **TOL, err_msg=key)
    np.testing.assert_allclose(result["macro"]["f1"], 241 / 420, **TOL)
    np.testing.assert_allclose(result["macro"]["roc_auc"], 349 / 504, **TOL)
    assert "precision" not in result  # top-level positive-class metrics are binary-only


def test_result_is_plain_json():
    result = classification_metrics(MULTI_LABELS, MULTI_PROBS)
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert type(result["accuracy"]) is float and type(result["n"]) is int
    assert all(type(count) is int for row in result["confusion_matrix"] for count in row)


# --- zero-division conventions ----------------------------------------------------------


def test_no_predicted_positives_gives_zero_precision_and_f1():
    # Every p < 0.5, so nothing is predicted positive: TP = FP = 0, FN = 2, TN = 2.
    # precision = 0/0 -> 0.0; recall = 0/2 = 0; F1 = 0 / (0 + 0 + 2) = 0; specificity = 2/2 = 1.
    result = classification_metrics(np.array([1, 0, 1, 0]), np.array([0.4, 0.1, 0.3, 0.2]))
    assert result["precision"] == 0.0 and result["recall"] == 0.0 and result["f1"] == 0.0
    assert result["specificity"] == 1.0
    # The scores still rank both positives above both negatives: AUC = 4/4.
    assert result["roc_auc"] == 1.0


def test_absent_class_gives_zeros_and_undefined_auc():
    # Class 2 is neither in the labels nor predicted: support 0, no predicted positives.
    # precision, recall, F1 -> 0.0 (zero division); specificity = TN / (TN + FP) = 4/4;
    # AUC has no positives -> undefined -> None, and so is the macro AUC.
    labels = np.array([0, 1, 0, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]], np.float32)
    result = classification_metrics(labels, probs)
    absent = result["per_class"]["2"]
    assert absent == {"precision": 0.0, "recall": 0.0, "specificity": 1.0, "f1": 0.0, "roc_auc": None, "support": 0}
    assert result["macro"]["roc_auc"] is None
    # Classes 0 and 1 are perfect (precision 1) and class 2 counts as 0: (1 + 1 + 0) / 3.
    np.testing.assert_allclose(result["macro"]["precision"], 2 / 3, **TOL)
    json.dumps(result, allow_nan=False)


def test_single_class_labels_give_zero_specificity_and_no_auc():
    # All labels positive; predictions 1, 0, 1: TP 2, FN 1, FP 0, TN 0.
    # precision 2/2, recall 2/3, specificity = 0 / (0 + 0) -> 0.0, AUC undefined -> None.
    result = classification_metrics(np.array([1, 1, 1]), np.array([0.9, 0.2, 0.8]))
    np.testing.assert_allclose([result["precision"], result["recall"]], [1.0, 2 / 3], **TOL)
    assert result["specificity"] == 0.0
    assert result["roc_auc"] is None
    assert np.isnan(roc_auc(np.array([1, 1, 1]), np.array([0.9, 0.2, 0.8])))


# --- ROC AUC ---------------------------------------------------------------------------


def test_roc_auc_with_ties_by_hand():
    # Both positives score 0.5: each ties the negative at 0.5 (1/2) and beats the one at
    # 0.2 (1): (1.5 + 1.5) / (2 * 2) = 3/4.
    assert float(roc_auc(np.array([1, 1, 0, 0]), np.array([0.5, 0.5, 0.5, 0.2]))) == 0.75
    # Positives 0.9, 0.4, 0.4; negatives 0.9, 0.4, 0.1. Positive 0.9: tie + 2 wins = 2.5;
    # each positive 0.4: loss + tie + win = 1.5. (2.5 + 1.5 + 1.5) / (3 * 3) = 11/18.
    np.testing.assert_allclose(roc_auc(np.array([1, 0, 1, 0, 1, 0]), np.array([0.9, 0.9, 0.4, 0.4, 0.4, 0.1])),
                               11 / 18, **TOL)
    # All scores equal: every pair ties -> 1/2.
    assert float(roc_auc(np.array([1, 0, 0, 1, 0]), np.zeros(5))) == 0.5


def test_perfect_and_inverted_classifiers():
    labels = np.array([0, 1, 0, 1, 1, 0])
    scores = np.array([0.1, 0.8, 0.3, 0.9, 0.7, 0.2])
    assert float(roc_auc(labels, scores)) == 1.0
    assert float(roc_auc(labels, -scores)) == 0.0
    assert float(roc_auc(labels.astype(bool), scores)) == 1.0  # boolean labels are accepted
    perfect = classification_metrics(labels, scores)
    assert perfect["accuracy"] == perfect["f1"] == perfect["specificity"] == perfect["roc_auc"] == 1.0
    inverted = classification_metrics(labels, 1 - scores)
    assert inverted["accuracy"] == inverted["recall"] == inverted["roc_auc"] == 0.0


# Sizes share one padded size (256), hence one compiled program.
@pytest.mark.parametrize("n, levels", [(150, None), (200, 7), (256, 50)])
def test_roc_auc_matches_mann_whitney_u(n, levels):
    rng = np.random.default_rng(n)
    labels = rng.integers(0, 2, n)
    scores = (rng.normal(size=n) + 0.7 * labels).astype(np.float32)
    if levels is not None:  # coarse scores: many ties
        scores = np.round(scores * levels / 4) / levels
        scores = scores.astype(np.float32)
    # U of the positives counts (positive > negative) pairs plus 1/2 per tie.
    u = scipy.stats.mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
    expected = u / ((labels == 1).sum() * (labels == 0).sum())
    np.testing.assert_allclose(roc_auc(labels, scores), expected, rtol=1e-5)


def test_roc_auc_under_jit():
    # Same tie example as above, traced: 11/18.
    labels, scores = jnp.array([1, 0, 1, 0, 1, 0]), jnp.array([0.9, 0.9, 0.4, 0.4, 0.4, 0.1])
    np.testing.assert_allclose(jax.jit(roc_auc)(labels, scores), 11 / 18, **TOL)


# --- ROC curve -------------------------------------------------------------------------


def test_roc_curve_by_hand_groups_ties():
    # Thresholds: +inf -> nothing positive (0, 0); 0.5 -> the three tied examples are
    # positive: TP 2 of 2, FP 1 of 2 -> (0.5, 1); 0.2 -> everything (1, 1).
    fpr, tpr, thresholds = roc_curve(np.array([1, 1, 0, 0]), np.array([0.5, 0.5, 0.5, 0.2]))
    np.testing.assert_array_equal(fpr, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(tpr, [0.0, 1.0, 1.0])
    np.testing.assert_allclose(thresholds, [np.inf, 0.5, 0.2], rtol=1e-7)


def test_roc_curve_shape_and_area_match_auc():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 250)
    scores = (np.round(rng.normal(size=250) + labels, 1)).astype(np.float32)  # with ties
    fpr, tpr, thresholds = roc_curve(labels, scores)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert thresholds[0] == np.inf and np.all(np.diff(thresholds) < 0)
    assert len(thresholds) == len(np.unique(scores)) + 1  # one point per distinct score
    # Linear interpolation between the points is exactly the ties-count-1/2 AUC.
    np.testing.assert_allclose(np.trapezoid(tpr, fpr), roc_auc(labels, scores), rtol=1e-6)


# --- weighted counting core == explicit resampling -----------------------------------------


@pytest.mark.parametrize("labels, probs", [(BINARY_LABELS, np.stack([1 - BINARY_P, BINARY_P], axis=1)),
                                           (MULTI_LABELS, MULTI_PROBS)])
def test_multiplicity_weights_equal_repeated_examples(labels, probs):
    # The bootstrap scores a resample through multiplicities; they must give exactly the
    # metrics of the data with each example repeated that often.
    counts = np.array([0, 3, 1, 1, 2, 0, 1, 2, 4, 1])
    labels_P, scores_PxC, ones_P = cls._pad(labels.astype(np.int32), probs)
    weights_P = np.zeros_like(ones_P)
    weights_P[:len(counts)] = counts
    weighted = np.asarray(cls._metrics(labels_P, scores_PxC, weights_P)["summary"])
    repeated = classification_metrics(np.repeat(labels, counts), np.repeat(probs, counts, axis=0))
    average = repeated if probs.shape[1] == 2 else {**repeated, **repeated["macro"]}
    np.testing.assert_allclose(weighted, [average[name] for name in METRIC_NAMES], rtol=1e-6)


# --- bootstrap -------------------------------------------------------------------------


def test_bootstrap_contains_estimate_and_matches_point_metrics():
    labels, probs = synthetic_binary(200, seed=0)
    intervals = bootstrap_intervals(labels, probs, num_resamples=RESAMPLES)
    point = classification_metrics(labels, probs)
    assert list(intervals) == list(METRIC_NAMES)
    for name, interval in intervals.items():
        assert interval["estimate"] == point[name]  # binary: the positive class
        assert interval["low"] <= interval["estimate"] <= interval["high"], name
        assert interval["low"] < interval["high"] and interval["std"] > 0, name
        assert interval["valid_resamples"] == RESAMPLES


def test_bootstrap_std_of_accuracy_matches_binomial():
    # Resampling N examples with replacement makes the accuracy a binomial proportion
    # with p = the observed accuracy: std = sqrt(p (1 - p) / N). R = 500 resamples
    # estimate the std to about 1/sqrt(2R) = 3 %; allow 15 %.
    labels, probs = synthetic_binary(200, seed=0)
    interval = bootstrap_intervals(labels, probs, metric_names=("accuracy",), num_resamples=RESAMPLES)["accuracy"]
    p = interval["estimate"]
    np.testing.assert_allclose(interval["std"], np.sqrt(p * (1 - p) / 200), rtol=0.15)
    # And the 95 % interval spans about 2 * 1.96 std.
    np.testing.assert_allclose(interval["high"] - interval["low"], 2 * 1.96 * interval["std"], rtol=0.2)


def test_bootstrap_narrows_with_more_data():
    widths = {}
    for n in (16, 256):
        # Seed 4: the 16 examples hold 2 false negatives and 1 false positive, so no
        # metric is constant across resamples (a perfect recall would have width 0).
        labels, probs = synthetic_binary(n, seed=4)
        intervals = bootstrap_intervals(labels, probs, num_resamples=RESAMPLES)
        widths[n] = {name: value["high"] - value["low"] for name, value in intervals.items()}
    # Widths shrink like 1/sqrt(N): sixteen times the data, about a quarter of the width.
    for name in METRIC_NAMES:
        assert widths[256][name] < 0.5 * widths[16][name], (name, widths)


def test_bootstrap_is_deterministic_for_a_seed():
    labels, probs = synthetic_binary(200, seed=0)
    first = bootstrap_intervals(labels, probs, num_resamples=RESAMPLES, seed=7)
    assert bootstrap_intervals(labels, probs, num_resamples=RESAMPLES, seed=7) == first
    other = bootstrap_intervals(labels, probs, num_resamples=RESAMPLES, seed=8)
    assert any(other[name]["low"] != first[name]["low"] or other[name]["high"] != first[name]["high"]
               for name in METRIC_NAMES)
    assert all(other[name]["estimate"] == first[name]["estimate"] for name in METRIC_NAMES)


def test_bootstrap_ignores_resamples_where_auc_is_undefined():
    # 2 positives in 10: a resample misses both with probability (8/10)^10 = 0.107, so
    # about 54 of 500 resamples have no AUC (binomial sd 7); the other metrics are
    # defined (zero division -> 0.0) in every resample.
    labels = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    intervals = bootstrap_intervals(labels, BINARY_P, num_resamples=RESAMPLES)
    ignored = RESAMPLES - intervals["roc_auc"]["valid_resamples"]
    assert 20 < ignored < 90
    assert intervals["roc_auc"]["low"] is not None and 0.0 <= intervals["roc_auc"]["low"] <= 1.0
    assert all(intervals[name]["valid_resamples"] == RESAMPLES for name in METRIC_NAMES if name != "roc_auc")


def test_bootstrap_multiclass_reports_macro_averages():
    intervals = bootstrap_intervals(MULTI_LABELS, MULTI_PROBS, num_resamples=RESAMPLES)
    point = classification_metrics(MULTI_LABELS, MULTI_PROBS)  # macro values checked by hand above
    assert intervals["accuracy"]["estimate"] == point["accuracy"]
    for name in ("precision", "recall", "specificity", "f1", "roc_auc"):
        assert intervals[name]["estimate"] == point["macro"][name], name
    np.testing.assert_allclose(intervals["roc_auc"]["estimate"], 349 / 504, **TOL)  # see the 3-class test
    # A resample missing a class has no macro AUC: a class of 3 examples is missing with
    # probability 0.7^10 = 2.8 %, the class of 4 with 0.6^10 = 0.6 %; about 6 % in all,
    # i.e. some 30 of 500 resamples are ignored.
    assert 0 < RESAMPLES - intervals["roc_auc"]["valid_resamples"] < RESAMPLES // 4


# --- evaluate --------------------------------------------------------------------------


def test_evaluate_writes_metrics_and_intervals_as_json():
    result = evaluate(BINARY_LABELS, BINARY_P, ["healthy", "lesion"], num_resamples=RESAMPLES, seed=3)
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    point = classification_metrics(BINARY_LABELS, BINARY_P, class_names=["healthy", "lesion"])
    assert {key: value for key, value in result.items() if key in point} == point
    assert result["confidence_intervals"] == bootstrap_intervals(BINARY_LABELS, BINARY_P,
                                                                 num_resamples=RESAMPLES, seed=3)
    assert result["bootstrap"]["num_resamples"] == RESAMPLES and "lesion" in result["bootstrap"]["metrics_of"]


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("labels, probs, match", [
    (np.array([[0], [1]]), np.array([0.2, 0.8]), r"labels must have shape \(N,\)"),
    (np.array([0, 1]), np.zeros((2, 2, 1)), "probabilities must have shape"),
    (np.array([], int), np.zeros((0, 2)), "empty"),
    (np.array([0, 1, 1]), np.array([0.2, 0.8]), "labels has 3 entries but probabilities has 2"),
    (np.array([0, 3]), np.full((2, 3), 1 / 3), r"labels must lie in \[0, 3\)"),
    (np.array([-1, 1]), np.array([0.2, 0.8]), r"labels must lie in \[0, 2\)"),
    (np.array([0.0, 1.0]), np.array([0.2, 0.8]), "integer class indices"),
    (np.array([0, 1]), np.array([0.2, np.nan]), "NaN or inf"),
    (np.array([0, 1]), np.array([0.2, 1.5]), r"must lie in \[0, 1\]"),
    (np.array([0, 1]), np.ones((2, 1)), "at least 2 columns"),
])
def test_invalid_inputs_raise_one_line_value_errors(labels, probs, match):
    for call in (lambda: classification_metrics(labels, probs),
                 lambda: bootstrap_intervals(labels, probs, num_resamples=2)):
        with pytest.raises(ValueError, match=match) as error:
            call()
        assert "\n" not in str(error.value)


@pytest.mark.parametrize("call, match", [
    (lambda: classification_metrics([0, 1], [0.2, 0.8], class_names=["a"]), "class_names has 1 names"),
    (lambda: classification_metrics([0, 1], [0.2, 0.8], class_names=["a", "a"]), "unique"),
    (lambda: confusion_matrix([0, 1], [0, 2], 2), r"predictions must lie in \[0, 2\)"),
    (lambda: confusion_matrix([0, 1], [0, 1], 0), "num_classes must be a positive integer"),
    (lambda: roc_auc([0, 2, 1], [0.1, 0.2, 0.3]), "binary"),
    (lambda: roc_auc([0, 1], [0.1, 0.2, 0.3]), "labels has 2 entries but scores has 3"),
    (lambda: roc_auc([], []), "empty"),
    (lambda: roc_curve([1, 1], [0.1, 0.2]), "needs both classes"),
    (lambda: bootstrap_intervals([0, 1], [0.2, 0.8], metric_names=("auc",)), "subset of"),
    (lambda: bootstrap_intervals([0, 1], [0.2, 0.8], metric_names="accuracy"), "sequence of metric names"),
    (lambda: bootstrap_intervals([0, 1], [0.2, 0.8], num_resamples=0), "num_resamples"),
    (lambda: bootstrap_intervals([0, 1], [0.2, 0.8], confidence=1.0), "confidence"),
])
def test_invalid_arguments_raise_one_line_value_errors(call, match):
    with pytest.raises(ValueError, match=match) as error:
        call()
    assert "\n" not in str(error.value)
