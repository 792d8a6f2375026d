"""Decision thresholds chosen on validation predictions, checked against hand-counted cases."""

import numpy as np
import pytest

from jaxmed.metrics.operating_point import apply_threshold, binary_metrics, choose_threshold, operating_points

# Sorted by score: 0.8(+) 0.7(+) 0.4(-) 0.35(+) 0.2(-) 0.1(-); 3 positives, 3 negatives.
# Youden J per threshold: 1/3, 2/3, 1/3, 2/3, 1/3, 0  -> tie of 0.7 and 0.35, the higher wins.
# F1 per threshold:       1/2, 4/5, 2/3, 6/7, 3/4, 2/3 -> 0.35.
VAL_LABELS = np.array([0, 0, 1, 1, 0, 1])
VAL_SCORES = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.7])
TEST_LABELS = np.array([0, 1, 1, 0, 1])
TEST_SCORES = np.array([0.6, 0.65, 0.36, 0.2, 0.5])


def test_youden_and_f1_pick_the_hand_counted_thresholds():
    assert choose_threshold(VAL_LABELS, VAL_SCORES) == 0.7
    assert choose_threshold(VAL_LABELS, VAL_SCORES, "f1") == 0.35
    probabilities = np.stack([1 - VAL_SCORES, VAL_SCORES], axis=1)
    assert choose_threshold(VAL_LABELS, probabilities, "f1") == 0.35  # (N, 2) reads column 1


def test_the_threshold_is_inclusive_and_exact_in_the_scores_dtype():
    scores = np.array([0.1, 0.3, 0.7])  # float64 values that float32 would round
    threshold = choose_threshold(np.array([0, 1, 1]), scores)
    assert threshold == 0.3
    assert apply_threshold(scores, threshold).tolist() == [0, 1, 1]


def test_operating_points_report_argmax_and_tuned_metrics_on_the_test_set():
    result = operating_points(VAL_LABELS, VAL_SCORES, TEST_LABELS, TEST_SCORES, criterion="f1",
                              class_names=("benign", "malignant"))
    assert result["criterion"] == "f1" and result["positive_class"] == "malignant"
    argmax = result["argmax"]  # p > 0.5: predictions 1 1 0 0 0 (0.5 itself is negative)
    assert argmax["confusion_matrix"] == [[1, 1], [2, 1]]
    assert argmax["accuracy"] == pytest.approx(2 / 5)
    assert argmax["recall"] == pytest.approx(1 / 3) and argmax["specificity"] == 0.5
    assert argmax["f1"] == pytest.approx(2 / 5)
    assert (argmax["fpr"], argmax["tpr"]) == pytest.approx((0.5, 1 / 3))
    tuned = result["tuned"]  # p >= 0.35: predictions 1 1 1 0 1
    assert tuned["threshold"] == 0.35
    assert tuned["confusion_matrix"] == [[1, 1], [0, 3]]
    assert tuned["accuracy"] == pytest.approx(4 / 5) and tuned["precision"] == pytest.approx(3 / 4)
    assert tuned["f1"] == pytest.approx(6 / 7)
    assert (tuned["fpr"], tuned["tpr"]) == (0.5, 1.0)


def test_youden_point_on_the_test_set():
    tuned = operating_points(VAL_LABELS, VAL_SCORES, TEST_LABELS, TEST_SCORES)["tuned"]
    assert tuned["threshold"] == 0.7  # nothing in the test set reaches it
    assert tuned["confusion_matrix"] == [[2, 0], [3, 0]]
    assert tuned["precision"] == 0.0 and tuned["specificity"] == 1.0 and (tuned["fpr"], tuned["tpr"]) == (0.0, 0.0)


def test_binary_metrics_zero_division_is_zero():
    assert binary_metrics(np.array([0, 0]), np.array([0, 0]))["recall"] == 0.0


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError, match="unknown threshold criterion 'auc'"):
        choose_threshold(VAL_LABELS, VAL_SCORES, "auc")
    with pytest.raises(ValueError, match="needs both classes"):
        choose_threshold(np.ones(3, int), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="binary problem"):
        choose_threshold(VAL_LABELS, np.full((6, 3), 1 / 3))
