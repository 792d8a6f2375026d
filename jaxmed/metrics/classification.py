"""Classifier evaluation metrics in JAX, with percentile-bootstrap confidence intervals.

These metrics judge whether GAN-synthesized images help a classifier: train it with and
without synthetic images, then score both against the same held-out *real* test set.
`evaluate` returns the dict written to ``eval.json``.

Conventions (shared by every function here):

- Labels are integer class indices in [0, C); scores are class probabilities (softmax
  outputs), shape (N, C). Binary problems may also pass (N,) positive-class
  probabilities, read as the two columns [1 - p, p].
- Predictions are the argmax over classes. On an exact tie the first class wins (so a
  binary p == 0.5 predicts class 0).
- Binary problems (C = 2): the positive class is index 1; "recall" is sensitivity.
- Per-class metrics are one-vs-rest: class c is "positive", all others "negative".
- Zero division gives 0.0 (like scikit-learn's ``zero_division=0``): precision with no
  predicted positives, recall with no support, specificity with no negatives, and F1 when
  TP + FP + FN = 0.
- F1 = 2 TP / (2 TP + FP + FN), the harmonic mean of precision and recall whenever both
  are defined.
- ROC AUC is undefined when the labels hold only one of the two (one-vs-rest) groups. It
  is NaN in JAX arrays and None in the JSON dicts.
- Macro averages are the unweighted mean over all C classes, including classes absent
  from the labels (they contribute their 0.0 recall, precision and F1). The macro ROC AUC
  is NaN/None when any class's AUC is undefined: a mean over a subset of the classes
  would silently answer a different question.
- Scores are compared at JAX's default float precision (float32 unless ``jax_enable_x64``
  is on), so float64 inputs that differ only beyond float32 precision count as ties.
  Float counts are exact below 2**24 examples.

Implementation notes. The counting core works on per-example weights. With weights 1
it gives the plain metrics; with bootstrap multiplicities (how often each example was
drawn) it gives exactly the metrics of that resample, so resamples need no gather and no
re-sort: scores are ordered once and each resample costs O(N C). Inputs are padded with
zero-weight examples to the next power of two (at least 16): XLA compiles one program per
shape, which costs seconds on a CPU, and padding lets test sets of similar size share it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "METRIC_NAMES",
    "confusion_matrix",
    "classification_metrics",
    "roc_auc",
    "roc_curve",
    "bootstrap_intervals",
    "evaluate",
]

# The metrics `bootstrap_intervals` can resample, in the order of the summary vector.
METRIC_NAMES = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc")
_PER_CLASS_NAMES = METRIC_NAMES[1:]

# Smallest padded size: tiny test sets all share one compiled program.
_MIN_PADDED_SIZE = 16

# Elements of (resamples x classes x examples) held at once by the bootstrap. Resamples
# are vmapped in chunks and the chunks run one after another (lax.map), so memory stays
# bounded (~100 MB of intermediates) however large N * num_resamples is.
_BOOTSTRAP_CHUNK_ELEMENTS = 1 << 21


# --- validation (host side) -------------------------------------------------------------


def _is_traced(x: Any) -> bool:
    # Under jit/vmap values are unknown; only shapes and dtypes can be checked.
    return isinstance(x, jax.core.Tracer)


def _float_dtype() -> np.dtype:
    # JAX's default float (float32 unless x64 is enabled); host-side casts use it too, so
    # NumPy and JAX code paths see the very same (possibly tied) scores.
    return np.dtype(jax.dtypes.canonicalize_dtype(np.float64))


def _check_vector(x: Any, name: str) -> tuple[np.ndarray | None, Any]:
    """Checks that `x` is a non-empty (N,) array; returns (host values or None when traced, dtype)."""
    host = None if _is_traced(x) else np.asarray(x)
    shape = np.shape(x) if host is None else host.shape
    if len(shape) != 1:
        raise ValueError(f"{name} must have shape (N,), got shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"{name} is empty")
    return host, (x.dtype if host is None else host.dtype)


def _check_index_array(x: Any, name: str) -> np.ndarray | None:
    """Checks an (N,) integer array; returns its host values, or None when traced."""
    host, dtype = _check_vector(x, name)
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.bool_)):
        raise ValueError(f"{name} must be integer class indices, got dtype {dtype}")
    return host


def _check_range(host: np.ndarray | None, num_classes: int, name: str) -> None:
    if host is not None and (host.min() < 0 or host.max() >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got values from {host.min()} to {host.max()}")


def _check_scores(x: Any, name: str) -> np.ndarray | None:
    """Checks an (N,) numeric score array; returns its host values, or None when traced."""
    host, dtype = _check_vector(x, name)
    if not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)):
        raise ValueError(f"{name} must be numeric, got dtype {dtype}")
    if host is not None and not np.all(np.isfinite(host)):
        raise ValueError(f"{name} contains NaN or inf")
    return host


def _check_same_length(a: Any, b: Any, name_a: str, name_b: str) -> None:
    if np.shape(a)[0] != np.shape(b)[0]:
        raise ValueError(f"{name_a} has {np.shape(a)[0]} entries but {name_b} has {np.shape(b)[0]}")


def _check_binary_labels(labels: Any) -> None:
    host = _check_index_array(labels, "labels")
    if host is not None and not np.all((host == 0) | (host == 1)):
        raise ValueError(f"labels must be binary (0 or 1), got values {sorted(set(host.tolist()))[:5]}")


def _validated_inputs(labels: Any, probabilities: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validates labels and probabilities; returns int32 (N,) labels and float (N, C) scores."""
    if _is_traced(labels) or _is_traced(probabilities):
        raise ValueError("classification metrics return Python values and cannot run under jax.jit; call eagerly")
    probs = np.asarray(probabilities)
    if probs.ndim not in (1, 2):
        raise ValueError(f"probabilities must have shape (N,) or (N, C), got shape {probs.shape}")
    if probs.shape[0] == 0:
        raise ValueError("probabilities is empty")
    if not (np.issubdtype(probs.dtype, np.number) or np.issubdtype(probs.dtype, np.bool_)):
        raise ValueError(f"probabilities must be numeric, got dtype {probs.dtype}")
    if not np.all(np.isfinite(probs)):
        raise ValueError("probabilities contains NaN or inf")
    if probs.ndim == 2 and probs.shape[1] < 2:
        raise ValueError(f"probabilities must have at least 2 columns (classes), got shape {probs.shape}")
    # (N,) input becomes [1 - p, p], which is only meaningful for probabilities.
    if probs.ndim == 1 and (probs.min() < 0 or probs.max() > 1):
        raise ValueError(f"(N,) probabilities must lie in [0, 1], got values from {probs.min()} to {probs.max()}")
    host_labels = _check_index_array(labels, "labels")
    _check_same_length(host_labels, probs, "labels", "probabilities")
    num_classes = 2 if probs.ndim == 1 else probs.shape[1]
    _check_range(host_labels, num_classes, "labels")

    scores = probs.astype(_float_dtype())
    if scores.ndim == 1:
        scores = np.stack([1 - scores, scores], axis=1)
    return host_labels.astype(np.int32), scores


def _class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    if class_names is None:
        return [str(c) for c in range(num_classes)]
    if isinstance(class_names, str):
        raise ValueError(f"class_names must be a sequence of names, got the string {class_names!r}")
    names = [str(name) for name in class_names]
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} names but probabilities has {num_classes} classes")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names must be unique, got {names}")
    return names


def _padded_size(num_examples: int) -> int:
    return max(_MIN_PADDED_SIZE, 1 << (num_examples - 1).bit_length())


def _pad(labels_N: np.ndarray, scores_NxC: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pads to `_padded_size` rows on the host; returns labels_P, scores_PxC, weights_P (1 real, 0 pad)."""
    num_examples = labels_N.shape[0]
    extra = _padded_size(num_examples) - num_examples
    weights_P = np.r_[np.ones(num_examples), np.zeros(extra)].astype(scores_NxC.dtype)
    return np.pad(labels_N, (0, extra)), np.pad(scores_NxC, ((0, extra), (0, 0))), weights_P


def _json_float(value: Any) -> float | None:
    """A Python float (None for NaN) for JSON output."""
    value = np.asarray(value)[()]
    if np.isnan(value):
        return None
    # The shortest decimal that round-trips the value in its own dtype: a float32 7/10
    # is written as 0.7, not as 0.699999988079071 (digits float32 never held).
    return float(str(value))


# --- counting core (pure JAX, weighted) ----------------------------------------------


class _TieOrders(NamedTuple):
    """Two ascending orders of one score vector that differ only inside tie groups.

    In `positives_first` a positive precedes the negatives tied with it, so the negatives
    before it are those scoring strictly lower; in `negatives_first` it follows them, so
    the negatives before it are those scoring lower or equal.
    """

    positives_first: jax.Array
    negatives_first: jax.Array


def _tie_orders(scores_N: jax.Array, positive_N: jax.Array) -> _TieOrders:
    # Two sorts with the label as secondary key replace a searchsorted for tie-group
    # bounds: same counts, and much cheaper for XLA to compile. lax.sort treats -0.0 and
    # 0.0 as equal, so they tie, as they should.
    index_N = jnp.arange(scores_N.shape[0])
    is_positive_N = positive_N.astype(jnp.int32)
    *_, positives_first = jax.lax.sort((scores_N, -is_positive_N, index_N), num_keys=2)
    *_, negatives_first = jax.lax.sort((scores_N, is_positive_N, index_N), num_keys=2)
    return _TieOrders(positives_first, negatives_first)


def _safe_div(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    # The zero-division convention: x / 0 -> 0.0. The inner where keeps the untaken
    # branch finite, so no NaN is produced even transiently.
    nonzero = denominator > 0
    return jnp.where(nonzero, numerator / jnp.where(nonzero, denominator, 1), 0.0)


def _weighted_auc(positive_N: jax.Array, weights_N: jax.Array, orders: _TieOrders) -> jax.Array:
    """Mann-Whitney AUC with per-example weights (multiplicities); NaN if a group is empty.

    AUC = sum over (positive i, negative j) of w_i w_j ([s_i > s_j] + [s_i == s_j] / 2),
    divided by (sum of positive weights) * (sum of negative weights). The tie term is the
    mean of "negatives strictly below" and "negatives below or equal", read off the two
    tie orders as prefix sums. Counting pairs directly, rather than through the rank-sum
    formula R - n(n+1)/2, avoids a subtraction that loses float32 precision.
    """
    negative_w = weights_N * (1.0 - positive_N)
    positive_w = weights_N * positive_N

    def weighted_pairs_below(order_N: jax.Array) -> jax.Array:
        sorted_negative_w = negative_w[order_N]
        # Exclusive prefix sum: the negative weight strictly before each position.
        before = jnp.cumsum(sorted_negative_w) - sorted_negative_w
        return jnp.sum(positive_w[order_N] * before)

    u = 0.5 * (weighted_pairs_below(orders.positives_first) + weighted_pairs_below(orders.negatives_first))
    pairs = jnp.sum(positive_w) * jnp.sum(negative_w)
    return jnp.where(pairs > 0, u / jnp.where(pairs > 0, pairs, 1.0), jnp.nan)


def _confusion(labels_N: jax.Array, predictions_N: jax.Array, weights_N: jax.Array, num_classes: int) -> jax.Array:
    """(C, C) weighted counts, rows = true class, cols = predicted; out-of-range pairs dropped."""
    # Masked explicitly: a jnp scatter would wrap negative indices to the last class.
    valid = (labels_N >= 0) & (labels_N < num_classes) & (predictions_N >= 0) & (predictions_N < num_classes)
    weights_N = jnp.where(valid, weights_N, jnp.zeros_like(weights_N))
    rows = jnp.clip(labels_N, 0, num_classes - 1)
    cols = jnp.clip(predictions_N, 0, num_classes - 1)
    # Scatter-add, not one_hot(labels).T @ one_hot(predictions): O(N) memory, exact counts.
    return jnp.zeros((num_classes, num_classes), weights_N.dtype).at[rows, cols].add(weights_N)


class _Prepared(NamedTuple):
    """What every resample shares: labels, predictions, one-vs-rest indicators, tie orders."""

    labels_N: jax.Array
    predictions_N: jax.Array
    positive_CxN: jax.Array
    orders_C: _TieOrders


def _prepare(labels_N: jax.Array, scores_NxC: jax.Array) -> _Prepared:
    num_classes = scores_NxC.shape[1]
    positive_CxN = (labels_N[None, :] == jnp.arange(num_classes)[:, None]).astype(scores_NxC.dtype)
    # Ordered once: a resample only reweights examples, it never reorders them.
    orders_C = jax.vmap(_tie_orders)(scores_NxC.T, positive_CxN)
    return _Prepared(labels_N, jnp.argmax(scores_NxC, axis=1), positive_CxN, orders_C)


def _weighted_metrics(prepared: _Prepared, weights_N: jax.Array) -> dict[str, Any]:
    """Confusion matrix, accuracy, one-vs-rest per-class metrics ((C,) each) and their macro means."""
    num_classes = prepared.positive_CxN.shape[0]
    cm = _confusion(prepared.labels_N, prepared.predictions_N, weights_N, num_classes)
    tp = jnp.diagonal(cm)
    support = jnp.sum(cm, axis=1)
    predicted = jnp.sum(cm, axis=0)
    total = jnp.sum(cm)
    fp = predicted - tp
    fn = support - tp
    tn = total - support - fp
    per_class = {
        "precision": _safe_div(tp, predicted),
        "recall": _safe_div(tp, support),
        "specificity": _safe_div(tn, tn + fp),
        "f1": _safe_div(2.0 * tp, 2.0 * tp + fp + fn),
        "roc_auc": jax.vmap(_weighted_auc, in_axes=(0, None, 0))(prepared.positive_CxN, weights_N,
                                                                  prepared.orders_C),
    }
    # jnp.mean propagates NaN: the documented macro-AUC convention.
    macro = {name: jnp.mean(values) for name, values in per_class.items()}
    accuracy = _safe_div(jnp.trace(cm), total)
    # The bootstrap's summary: positive class (index 1) if binary, else macro averages.
    summary = jnp.stack([accuracy] + [per_class[name][1] if num_classes == 2 else macro[name]
                                      for name in _PER_CLASS_NAMES])
    return {"confusion": cm, "accuracy": accuracy, "per_class": per_class, "macro": macro, "summary": summary}


@jax.jit
def _metrics(labels_P: jax.Array, scores_PxC: jax.Array, weights_P: jax.Array) -> dict[str, Any]:
    """`_weighted_metrics` on the given (padded) examples and weights."""
    return _weighted_metrics(_prepare(labels_P, scores_PxC), weights_P)


def _bootstrap_chunk(padded_size: int, num_classes: int, num_resamples: int) -> int:
    return int(min(num_resamples, max(1, _BOOTSTRAP_CHUNK_ELEMENTS // (padded_size * (num_classes + 1)))))


@functools.partial(jax.jit, static_argnames=("num_resamples", "chunk"))
def _bootstrap_summaries(labels_P: jax.Array, scores_PxC: jax.Array, num_examples: jax.Array, key: jax.Array,
                         num_resamples: int, chunk: int) -> jax.Array:
    """(num_resamples, len(METRIC_NAMES)) summary vectors, one per bootstrap resample.

    The first `num_examples` of the P rows are real; the rest is padding, never drawn.
    """
    padded_size = scores_PxC.shape[0]
    prepared = _prepare(labels_P, scores_PxC)
    # P draws are made but only the first N count: N draws among the N real examples.
    counted_P = (jnp.arange(padded_size) < num_examples).astype(scores_PxC.dtype)

    def one_resample(index: jax.Array) -> jax.Array:
        # fold_in(key, i): resample i is the same whatever num_resamples and chunk are.
        draws_P = jax.random.randint(jax.random.fold_in(key, index), (padded_size,), 0, num_examples)
        # Multiplicities: a resample is fully described by how often each example was drawn.
        weights_P = jnp.zeros(padded_size, scores_PxC.dtype).at[draws_P].add(counted_P)
        return _weighted_metrics(prepared, weights_P)["summary"]

    num_chunks = -(-num_resamples // chunk)
    indices = jnp.arange(num_chunks * chunk).reshape(num_chunks, chunk)
    summaries = jax.lax.map(jax.vmap(one_resample), indices)
    return summaries.reshape(num_chunks * chunk, len(METRIC_NAMES))[:num_resamples]


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _confusion_int(labels_N: jax.Array, predictions_N: jax.Array, num_classes: int) -> jax.Array:
    return _confusion(labels_N, predictions_N, jnp.ones(labels_N.shape, jnp.int32), num_classes)


@jax.jit
def _roc_auc(labels_P: jax.Array, scores_P: jax.Array, weights_P: jax.Array) -> jax.Array:
    positive_P = (labels_P == 1).astype(scores_P.dtype)
    return _weighted_auc(positive_P, weights_P, _tie_orders(scores_P, positive_P))


# --- public API -----------------------------------------------------------------------


def confusion_matrix(labels_N: jax.typing.ArrayLike, predictions_N: jax.typing.ArrayLike,
                     num_classes: int) -> jax.Array:
    """Counts of (true class, predicted class) pairs.

    Works under `jax.jit` (with `num_classes` static). Values can only be checked on
    concrete inputs; under tracing, out-of-range labels or predictions are dropped.

    Args:
      labels_N: (N,) true class indices in [0, num_classes).
      predictions_N: (N,) predicted class indices in [0, num_classes).
      num_classes: C, the number of classes.

    Returns:
      (C, C) int32 matrix; entry [t, p] counts examples of true class t predicted as p.

    Raises:
      ValueError: on a non-(N,) or empty input, non-integer values, length mismatch,
        num_classes < 1 or (concrete inputs) indices outside [0, num_classes).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)
    host_labels = _check_index_array(labels_N, "labels")
    host_predictions = _check_index_array(predictions_N, "predictions")
    _check_same_length(labels_N, predictions_N, "labels", "predictions")
    _check_range(host_labels, num_classes, "labels")
    _check_range(host_predictions, num_classes, "predictions")
    return _confusion_int(jnp.asarray(labels_N, jnp.int32), jnp.asarray(predictions_N, jnp.int32), num_classes)


def roc_auc(labels_binary_N: jax.typing.ArrayLike, scores_N: jax.typing.ArrayLike) -> jax.Array:
    """Exact area under the ROC curve: the Mann-Whitney U statistic over n_pos * n_neg.

    AUC is the probability that a random positive scores above a random negative, with
    ties counted 1/2. It is computed by sorting and counting pairs, in O(N log N), and
    works under `jax.jit` (values are then not checked; labels other than 1 count as
    negative).

    Args:
      labels_binary_N: (N,) labels, 1 (or True) = positive, 0 = negative.
      scores_N: (N,) scores, higher = more positive (e.g. positive-class probabilities).

    Returns:
      Scalar float AUC in [0, 1]; NaN if the labels hold only one class.

    Raises:
      ValueError: on a non-(N,) or empty input, length mismatch, or (concrete inputs)
        non-binary labels or non-finite scores.
    """
    _check_binary_labels(labels_binary_N)
    _check_scores(scores_N, "scores")
    _check_same_length(labels_binary_N, scores_N, "labels", "scores")
    num_examples = np.shape(scores_N)[0]
    extra = _padded_size(num_examples) - num_examples
    weights_P = np.r_[np.ones(num_examples), np.zeros(extra)].astype(_float_dtype())
    if _is_traced(labels_binary_N) or _is_traced(scores_N):
        labels_P = jnp.pad(jnp.asarray(labels_binary_N, jnp.int32), (0, extra))
        scores_P = jnp.pad(jnp.asarray(scores_N, _float_dtype()), (0, extra))
    else:
        labels_P = np.pad(np.asarray(labels_binary_N).astype(np.int32), (0, extra))
        scores_P = np.pad(np.asarray(scores_N).astype(_float_dtype()), (0, extra))
    return _roc_auc(labels_P, scores_P, weights_P)


def roc_curve(labels_binary_N: jax.typing.ArrayLike,
              scores_N: jax.typing.ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve points for plotting: one point per distinct score, ties grouped.

    Computed with NumPy because the number of points depends on the data. Point k is the
    classifier "positive iff score >= thresholds[k]"; the first point uses threshold +inf
    (nothing positive: (0, 0)) and the last the lowest score (everything positive:
    (1, 1)). All distinct thresholds are kept (collinear points are not dropped). Scores
    are cast to JAX's default float dtype first, so the trapezoidal area under this curve
    equals `roc_auc` on the same inputs.

    Args:
      labels_binary_N: (N,) labels, 1 (or True) = positive, 0 = negative.
      scores_N: (N,) scores, higher = more positive.

    Returns:
      (fpr, tpr, thresholds): float64 arrays of equal length; fpr and tpr non-decreasing
      from 0 to 1, thresholds strictly decreasing from +inf.

    Raises:
      ValueError: on invalid inputs (as `roc_auc`), under tracing, or if the labels hold
        only one class (then FPR or TPR is undefined).
    """
    if _is_traced(labels_binary_N) or _is_traced(scores_N):
        raise ValueError("roc_curve returns data-dependent shapes and cannot run under jax.jit; call it eagerly")
    _check_binary_labels(labels_binary_N)
    _check_scores(scores_N, "scores")
    _check_same_length(labels_binary_N, scores_N, "labels", "scores")
    positive = np.asarray(labels_binary_N).astype(bool)
    scores = np.asarray(scores_N).astype(_float_dtype())
    num_positive = int(positive.sum())
    num_negative = positive.size - num_positive
    if num_positive == 0 or num_negative == 0:
        raise ValueError(f"roc_curve needs both classes, got {num_positive} positives and {num_negative} negatives")

    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    # Last index of each tie group: the classifier only changes between distinct scores.
    group_ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), scores.size - 1]
    true_positives = np.cumsum(positive[order])[group_ends]
    false_positives = group_ends + 1 - true_positives
    tpr = np.r_[0.0, true_positives / num_positive]
    fpr = np.r_[0.0, false_positives / num_negative]
    thresholds = np.r_[np.inf, sorted_scores[group_ends].astype(np.float64)]
    return fpr, tpr, thresholds


def classification_metrics(labels_N: jax.typing.ArrayLike, probabilities_NxC: jax.typing.ArrayLike, *,
                           class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Accuracy, confusion matrix and per-class/macro precision, recall, specificity, F1, AUC.

    See the module docstring for the conventions (argmax predictions, one-vs-rest,
    zero division -> 0.0, undefined AUC -> None, macro over all classes).

    Args:
      labels_N: (N,) true class indices in [0, C).
      probabilities_NxC: (N, C) class probabilities, C >= 2; or (N,) positive-class
        probabilities in [0, 1] for a binary problem (read as C = 2).
      class_names: C names for the "per_class" keys; defaults to "0", "1", ...

    Returns:
      A JSON-able dict (Python ints, floats, None, lists and dicts only)::

        {"n": N, "accuracy": float, "confusion_matrix": [[int]] (rows = true class),
         "per_class": {name: {"precision", "recall", "specificity", "f1", "roc_auc", "support"}},
         "macro": {"precision", "recall", "specificity", "f1", "roc_auc"}}

      and, for binary problems, top-level "precision", "recall" (= sensitivity),
      "specificity", "f1" and "roc_auc" of the positive class (index 1).

    Raises:
      ValueError: on shape mismatch, empty input, labels outside [0, C), probabilities
        not of rank 1 or 2 or not finite, or class_names not matching C.
    """
    labels, scores = _validated_inputs(labels_N, probabilities_NxC)
    num_examples, num_classes = scores.shape
    names = _class_names(class_names, num_classes)
    metrics = jax.device_get(_metrics(*_pad(labels, scores)))
    counts = np.rint(metrics["confusion"]).astype(np.int64)
    per_class = metrics["per_class"]

    result: dict[str, Any] = {
        "n": int(num_examples),
        "accuracy": _json_float(metrics["accuracy"]),
        "confusion_matrix": counts.tolist(),
        "per_class": {
            name: {**{key: _json_float(per_class[key][c]) for key in _PER_CLASS_NAMES},
                   "support": int(counts[c].sum())}
            for c, name in enumerate(names)
        },
        "macro": {key: _json_float(metrics["macro"][key]) for key in _PER_CLASS_NAMES},
    }
    if num_classes == 2:
        result.update({key: _json_float(per_class[key][1]) for key in _PER_CLASS_NAMES})
    return result


def bootstrap_intervals(labels_N: jax.typing.ArrayLike, probabilities_NxC: jax.typing.ArrayLike, *,
                        metric_names: Sequence[str] = METRIC_NAMES, num_resamples: int = 1000,
                        confidence: float = 0.95, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Percentile-bootstrap confidence intervals over test examples.

    Each resample draws N examples with replacement; all resamples are computed in one
    jitted, vmapped call (chunked with `lax.map` to bound memory), not a Python loop.
    The metrics are those of the positive class (index 1) for binary problems and macro
    averages for multi-class problems; "accuracy" is overall accuracy either way.

    A resample in which a metric is undefined (ROC AUC when the resample holds only one
    class; for multi-class macro AUC, when any class is missing) is ignored for that
    metric: percentiles and std are taken over the remaining resamples, and their count
    is reported as "valid_resamples". Zero divisions in the other metrics follow the 0.0
    convention, as in `classification_metrics`, so no resample is ignored for them.

    Args:
      labels_N: (N,) true class indices in [0, C).
      probabilities_NxC: (N, C) class probabilities or (N,) positive-class probabilities.
      metric_names: which of `METRIC_NAMES` to report.
      num_resamples: number of bootstrap resamples.
      confidence: central interval mass, e.g. 0.95 for the 2.5th-97.5th percentiles.
      seed: seed for the resampling; equal seeds give equal intervals.

    Returns:
      {name: {"estimate": value on the full set, "low": lower percentile, "high": upper
      percentile, "std": bootstrap standard deviation (ddof=1), "valid_resamples": int}};
      values are floats, or None where undefined (no valid resample; std needs two).

    Raises:
      ValueError: on invalid inputs (as `classification_metrics`), unknown metric names,
        num_resamples < 1, confidence outside (0, 1) or a non-integer seed.
    """
    if isinstance(metric_names, str) or not all(isinstance(name, str) for name in metric_names):
        raise ValueError(f"metric_names must be a sequence of metric names, got {metric_names!r}")
    if not metric_names or any(name not in METRIC_NAMES for name in metric_names):
        raise ValueError(f"metric_names must be a non-empty subset of {', '.join(METRIC_NAMES)}, "
                         f"got {list(metric_names)}")
    if isinstance(num_resamples, bool) or not isinstance(num_resamples, int | np.integer) or num_resamples < 1:
        raise ValueError(f"num_resamples must be a positive integer, got {num_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    labels, scores = _validated_inputs(labels_N, probabilities_NxC)
    num_examples, num_classes = scores.shape
    labels_P, scores_PxC, weights_P = _pad(labels, scores)

    estimates = np.asarray(_metrics(labels_P, scores_PxC, weights_P)["summary"])
    chunk = _bootstrap_chunk(labels_P.shape[0], num_classes, int(num_resamples))
    samples = np.asarray(_bootstrap_summaries(labels_P, scores_PxC, np.int32(num_examples), jax.random.key(seed),
                                              int(num_resamples), chunk))

    tail = 100.0 * (1.0 - confidence) / 2.0
    intervals = {}
    for name in metric_names:
        column = samples[:, METRIC_NAMES.index(name)]
        valid = column[~np.isnan(column)]
        low, high = np.percentile(valid, [tail, 100.0 - tail]) if valid.size else (math.nan, math.nan)
        intervals[name] = {
            "estimate": _json_float(estimates[METRIC_NAMES.index(name)]),
            "low": _json_float(low),
            "high": _json_float(high),
            "std": _json_float(np.std(valid, ddof=1)) if valid.size >= 2 else None,
            "valid_resamples": int(valid.size),
        }
    return intervals


def evaluate(labels: jax.typing.ArrayLike, probabilities: jax.typing.ArrayLike,
             class_names: Sequence[str] | None = None, *, num_resamples: int = 1000, confidence: float = 0.95,
             seed: int = 0) -> dict[str, Any]:
    """Everything written to ``eval.json``: `classification_metrics` plus bootstrap intervals.

    Args:
      labels: (N,) true class indices of the held-out test set.
      probabilities: (N, C) class probabilities, or (N,) positive-class probabilities.
      class_names: C class names (defaults to "0", "1", ...).
      num_resamples: bootstrap resamples for the intervals.
      confidence: central mass of the intervals.
      seed: bootstrap seed.

    Returns:
      `classification_metrics(...)` plus "confidence_intervals" (`bootstrap_intervals`
      over all `METRIC_NAMES`) and "bootstrap", which records the settings and what the
      intervals are of (the positive class, or the macro average).

    Raises:
      ValueError: as `classification_metrics` and `bootstrap_intervals`.
    """
    result = classification_metrics(labels, probabilities, class_names=class_names)
    names = list(result["per_class"])
    result["confidence_intervals"] = bootstrap_intervals(labels, probabilities, num_resamples=num_resamples,
                                                         confidence=confidence, seed=seed)
    result["bootstrap"] = {
        "method": "percentile",
        "num_resamples": int(num_resamples),
        "confidence": float(confidence),
        "seed": int(seed),
        "metrics_of": f"positive class {names[1]!r} (index 1)" if len(names) == 2 else "macro average",
    }
    return result
