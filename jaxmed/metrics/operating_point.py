"""A binary classifier's decision threshold, chosen on validation predictions and applied to test ones.

The argmax rule (positive iff p > 0.5) is right only when the classifier's probabilities
are calibrated and both errors cost the same. A classifier trained on a small,
imbalanced data set is rarely either, so its sensitivity can be poor at 0.5 although
its ROC curve is good. Choosing the threshold on the *validation* predictions and
reporting the test metrics at both points shows what the argmax rule loses, without
tuning on the test set.

Criteria (`CRITERIA`):

- ``"youden"`` (default): maximise Youden's J = sensitivity + specificity - 1 = TPR - FPR,
  the ROC point farthest above the diagonal; it weighs the two error rates equally
  whatever the class balance.
- ``"f1"``: maximise the positive class's F1 = 2 TP / (2 TP + FP + FN); it ignores true
  negatives, so it suits a rare positive class whose precision matters.

Rules: a threshold t predicts positive iff score >= t. Candidates are the distinct
validation scores; on a tie of the criterion the highest threshold (fewest positives)
wins. The positive class is index 1 and scores are its probabilities, as in
`jaxmed.metrics.classification`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxmed.metrics.classification import roc_curve

CRITERIA = ("youden", "f1")


def positive_scores(probabilities: np.ndarray) -> np.ndarray:
    """The positive-class (index 1) scores of (N, 2) probabilities, or (N,) ones as given.

    Raises:
      ValueError: if the probabilities are not (N,) or (N, 2).
    """
    probabilities = np.asarray(probabilities)
    if probabilities.ndim == 1:
        return probabilities
    if probabilities.ndim == 2 and probabilities.shape[1] == 2:
        return probabilities[:, 1]
    raise ValueError(f"a decision threshold needs a binary problem: probabilities of shape (N,) or (N, 2), got "
                     f"{probabilities.shape}")


def choose_threshold(labels: np.ndarray, scores: np.ndarray, criterion: str = "youden") -> float:
    """The threshold on `scores` that maximises `criterion` (see the module docstring).

    Args:
      labels: (N,) binary labels of the validation set, 1 = positive.
      scores: (N,) positive-class scores (or (N, 2) probabilities).
      criterion: one of `CRITERIA`.

    Returns:
      The threshold, one of the validation scores.

    Raises:
      ValueError: for an unknown criterion, or invalid inputs or a single class (as
        `jaxmed.metrics.classification.roc_curve`).
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown threshold criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")
    scores = positive_scores(scores)
    roc_curve(labels, scores)  # validates the inputs and needs both classes
    # Counted here, in the scores' own dtype, so that `apply_threshold` reproduces them exactly.
    positive = np.asarray(labels) == 1
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    group_ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), scores.size - 1]  # last of each tie
    true_positives = np.cumsum(positive[order])[group_ends]
    false_positives = group_ends + 1 - true_positives
    num_positive, num_negative = int(positive.sum()), int((~positive).sum())
    if criterion == "youden":
        # J times num_positive * num_negative: integers, so equal J values tie exactly.
        objective = (true_positives * num_negative - false_positives * num_positive).astype(np.float64)
    else:
        false_negatives = num_positive - true_positives
        objective = 2 * true_positives / (2 * true_positives + false_positives + false_negatives)
    # Thresholds decrease along the array, so the first maximum is the highest threshold;
    # the tolerance makes F1 values equal up to rounding tie.
    best = np.flatnonzero(objective >= objective.max() - 1e-12 * max(1.0, abs(objective.max())))[0]
    return float(sorted_scores[group_ends][best])


def apply_threshold(scores: np.ndarray, threshold: float) -> np.ndarray:
    """(N,) int predictions: 1 where the positive-class score >= `threshold`, else 0."""
    return (positive_scores(scores) >= threshold).astype(np.int32)


def binary_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, Any]:
    """Counts and rates of binary predictions, with the 0.0-on-zero-division rule of `classification`.

    Args:
      labels: (N,) binary labels, 1 = positive.
      predictions: (N,) binary predictions.

    Returns:
      {"accuracy", "precision", "recall" (= sensitivity = TPR), "specificity", "f1",
      "fpr", "tpr", "confusion_matrix" ([[TN, FP], [FN, TP]], rows = true class)}.
    """
    labels, predictions = np.asarray(labels) == 1, np.asarray(predictions) == 1
    tp = int(np.sum(labels & predictions))
    fp = int(np.sum(~labels & predictions))
    fn = int(np.sum(labels & ~predictions))
    tn = int(np.sum(~labels & ~predictions))

    def ratio(numerator: int, denominator: int) -> float:
        return numerator / denominator if denominator else 0.0

    recall, specificity = ratio(tp, tp + fn), ratio(tn, tn + fp)
    return {"accuracy": ratio(tp + tn, len(labels)), "precision": ratio(tp, tp + fp), "recall": recall,
            "specificity": specificity, "f1": ratio(2 * tp, 2 * tp + fp + fn), "fpr": ratio(fp, fp + tn),
            "tpr": recall, "confusion_matrix": [[tn, fp], [fn, tp]]}


def operating_points(val_labels: np.ndarray, val_probabilities: np.ndarray, test_labels: np.ndarray,
                     test_probabilities: np.ndarray, *, criterion: str = "youden",
                     class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Test metrics at the argmax point and at a threshold tuned on validation predictions.

    Args:
      val_labels, val_probabilities: validation labels and (N, 2) or (N,) probabilities;
        the threshold is chosen on these.
      test_labels, test_probabilities: the test set it is applied to.
      criterion: one of `CRITERIA`.
      class_names: two class names, recorded as "positive_class".

    Returns:
      A JSON-able dict::

        {"criterion", "positive_class",
         "argmax": {"threshold": 0.5, **binary_metrics},   # positive iff p > 0.5
         "tuned": {"threshold": t, **binary_metrics}}      # positive iff p >= t

      "fpr" and "tpr" of each are its point on the test ROC curve (for plotting).

    Raises:
      ValueError: as `choose_threshold`, or for a non-binary problem.
    """
    threshold = choose_threshold(val_labels, val_probabilities, criterion)
    scores = positive_scores(test_probabilities)
    # The argmax of [1 - p, p] picks class 0 on a tie: positive iff p > 0.5.
    argmax = (scores > 0.5).astype(np.int32)
    names = list(class_names) if class_names is not None else ["0", "1"]
    return {"criterion": criterion, "positive_class": names[1],
            "argmax": {"threshold": 0.5, **binary_metrics(test_labels, argmax)},
            "tuned": {"threshold": threshold, **binary_metrics(test_labels, apply_threshold(scores, threshold))}}

