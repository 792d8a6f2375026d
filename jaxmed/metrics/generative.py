"""How good and how new are generated images: distances between feature sets, and copies.

Every function here compares sets of feature vectors, (N, D) arrays of real and of
generated images embedded by one feature extractor (in jaxmed, an in-domain classifier:
`jaxmed.training.feature_extractor`). None of them knows about images or models, so they
work with any embedding.

* :func:`frechet_distance` -- FID's distance (Heusel et al., NeurIPS 2017): the Fréchet
  distance between Gaussians fitted to the two sets.
* :func:`kernel_distance` -- KID (Bińkowski et al., ICLR 2018): the unbiased squared MMD
  with the cubic polynomial kernel, averaged over random subsets. Unlike FID it has no
  bias that depends on the number of samples, so small medical sets can be compared.
* :func:`precision_recall` -- improved precision and recall (Kynkäänniemi et al., NeurIPS
  2019) and density and coverage (Naeem et al., ICML 2020), from k-nearest-neighbour
  balls: precision and density say how many generated images look real (fidelity),
  recall and coverage how much of the real set is reproduced (diversity).
* :func:`diversity` -- the mean pairwise distance within a set; a generated set far below
  the real one has collapsed to few modes.
* :func:`data_copying_test` -- Meehan et al.'s data-copying test (AISTATS 2020), globally and
  over k-means cells (:func:`k_means`; their C_T): do generated images lie closer to the
  training images than held-out real images do? A strongly negative Z means copying
  (memorisation), a strongly positive one a generator that misses the data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.stats

# Pairwise distances are computed this many rows at a time (memory: rows x N floats).
_CHUNK = 1024
# KID: torch-fidelity's and the KID paper's defaults.
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
# Precision/recall/density/coverage: the k of the k-NN balls (the prdc package's default).
NEAREST_K = 5
# Data-copying cells: one per this many training samples, and a cell counts with at least this
# many generated samples (Meehan et al.'s tau: 20) and held-out ones.
TRAIN_PER_CELL = 50
MIN_CELL_GENERATED = 20
MIN_CELL_HELD_OUT = 5


def _features(x: object, name: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"{name} must be an (N, D) array with N >= 2, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds non-finite values")
    return x


def _check_same_width(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets differ in width: {a.shape[1]} and {b.shape[1]}")


def frechet_distance(real: object, generated: object) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (FID on a given embedding).

    d^2 = |mu_r - mu_g|^2 + Tr(S_r) + Tr(S_g) - 2 Tr((S_r S_g)^(1/2)).
    The trace of the matrix square root is the sum of the square roots of the eigenvalues
    of S_r^(1/2) S_g S_r^(1/2) (symmetric, so no complex round-off as with `sqrtm`).

    Args:
      real, generated: (N, D) and (M, D) features; covariances use N-1 and M-1.

    Returns:
      The squared distance (what papers call FID), >= 0.
    """
    real, generated = _features(real, "real"), _features(generated, "generated")
    _check_same_width(real, generated)
    mean_r, mean_g = real.mean(0), generated.mean(0)
    cov_r, cov_g = np.cov(real, rowvar=False, ddof=1), np.cov(generated, rowvar=False, ddof=1)
    cov_r, cov_g = np.atleast_2d(cov_r), np.atleast_2d(cov_g)
    values, vectors = np.linalg.eigh(cov_r)
    root_r = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    cross = np.linalg.eigvalsh(root_r @ cov_g @ root_r)
    trace_root = np.sum(np.sqrt(np.clip(cross, 0.0, None)))
    distance = np.sum((mean_r - mean_g) ** 2) + np.trace(cov_r) + np.trace(cov_g) - 2.0 * trace_root
    return float(max(distance, 0.0))


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / D + 1)^3 (the diagonal terms left out)."""
    width = x.shape[1]
    k_xx = (x @ x.T / width + 1.0) ** 3
    k_yy = (y @ y.T / width + 1.0) ** 3
    k_xy = (x @ y.T / width + 1.0) ** 3
    m, n = len(x), len(y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def kernel_distance(real: object, generated: object, *, subsets: int = KID_SUBSETS,
                    subset_size: int | None = None, seed: int = 0) -> tuple[float, float]:
    """KID on a given embedding: the unbiased polynomial-kernel MMD^2, mean and std over random subsets.

    Each subset draws `subset_size` rows of each set without replacement. The estimate is
    unbiased, so it can be slightly negative when the sets match.

    Args:
      real, generated: (N, D) and (M, D) features.
      subsets: number of random subsets.
      subset_size: rows per subset, at most min(N, M); None: min(1000, N // 2, M // 2), so
        that subsets differ and their spread says how much the estimate varies (the KID
        paper's 1,000 would take every row of a small medical set every time).
      seed: seeds the subset draws.

    Returns:
      (mean, standard deviation) over the subsets.
    """
    real, generated = _features(real, "real"), _features(generated, "generated")
    _check_same_width(real, generated)
    if subset_size is None:
        subset_size = max(2, min(KID_SUBSET_SIZE, len(real) // 2, len(generated) // 2))
    if subsets < 1 or not 2 <= subset_size <= min(len(real), len(generated)):
        raise ValueError(f"need subsets >= 1 and 2 <= subset_size <= {min(len(real), len(generated))} (the smaller "
                         f"set), got {subsets} and {subset_size}")
    rng = np.random.default_rng(seed)
    values = [_polynomial_mmd2(real[rng.choice(len(real), subset_size, replace=False)],
                               generated[rng.choice(len(generated), subset_size, replace=False)])
              for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values))


def pairwise_distances(a: object, b: object) -> np.ndarray:
    """(N, M) Euclidean distances between the rows of `a` (N, D) and `b` (M, D), float32."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    b_squared = np.sum(b * b, axis=1)
    out = np.empty((len(a), len(b)), np.float32)
    for start in range(0, len(a), _CHUNK):
        rows = a[start:start + _CHUNK]
        squared = np.sum(rows * rows, axis=1)[:, None] + b_squared[None, :] - 2.0 * rows @ b.T
        out[start:start + _CHUNK] = np.sqrt(np.clip(squared, 0.0, None))
    return out


def nearest_neighbours(queries: object, reference: object) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the index of its nearest reference row and the distance to it."""
    distances = pairwise_distances(queries, reference)
    index = np.argmin(distances, axis=1)
    return index, distances[np.arange(len(index)), index]


def _kth_neighbour_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row to its k-th nearest other row."""
    if k >= len(x):
        raise ValueError(f"k={k} needs more than {k} rows, got {len(x)}")
    distances = pairwise_distances(x, x)
    return np.partition(distances, k, axis=1)[:, k]  # column 0 is the row itself (distance 0)


def precision_recall(real: object, generated: object, *, k: int = NEAREST_K) -> dict[str, float]:
    """Improved precision and recall, density and coverage, from k-NN balls around each sample.

    A real sample's ball reaches its k-th nearest real neighbour. precision: the share of
    generated samples inside at least one real ball; density: the mean number of real balls
    a generated sample lies in, over k (about 1 when the sets match, above 1 when samples
    crowd where real data is dense); coverage: the share of real balls holding at least one
    generated sample. recall: the share of real samples inside at least one ball around a
    generated sample (radius to its k-th nearest generated neighbour).

    Returns:
      {"precision", "recall", "density", "coverage"}, each in [0, 1] except density (>= 0).
    """
    real, generated = _features(real, "real"), _features(generated, "generated")
    _check_same_width(real, generated)
    real_radii = _kth_neighbour_radii(real, k)
    generated_radii = _kth_neighbour_radii(generated, k)
    distances = pairwise_distances(real, generated)  # (N_real, N_generated)
    inside_real_ball = distances <= real_radii[:, None]
    return {
        "precision": float(np.mean(inside_real_ball.any(axis=0))),
        "recall": float(np.mean((distances <= generated_radii[None, :]).any(axis=1))),
        "density": float(inside_real_ball.sum() / (k * len(generated))),
        "coverage": float(np.mean(inside_real_ball.any(axis=1))),
    }


def diversity(features: object) -> float:
    """Mean Euclidean distance between two different rows of `features` (N, D)."""
    features = _features(features, "features")
    distances = pairwise_distances(features, features)
    n = len(features)
    return float(distances.sum(dtype=np.float64) / (n * (n - 1)))


def _mann_whitney_z(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(Z, two-sided p) of the Mann-Whitney U statistic of x against y: normal approximation, ties corrected."""
    test = scipy.stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic", use_continuity=False)
    m, n = len(x), len(y)
    _, tie_counts = np.unique(scipy.stats.rankdata(np.concatenate([x, y])), return_counts=True)
    tie_term = np.sum(tie_counts ** 3 - tie_counts) / ((m + n) * (m + n - 1))
    sigma = np.sqrt(m * n / 12.0 * ((m + n + 1) - tie_term))
    return (float((test.statistic - m * n / 2.0) / sigma) if sigma > 0 else 0.0), float(test.pvalue)


def k_means(x: object, k: int, *, seed: int = 0, iterations: int = 50) -> np.ndarray:
    """(k, D) centroids of `x` (N, D) by Lloyd's algorithm from a k-means++ start.

    A cluster that empties keeps its previous centroid.
    """
    x = _features(x, "x")
    if not 1 <= k <= len(x):
        raise ValueError(f"k must be in [1, {len(x)}], got {k}")
    rng = np.random.default_rng(seed)
    centroids = x[rng.integers(len(x))][None]
    while len(centroids) < k:  # k-means++: far points are likelier next centroids
        squared = np.min(pairwise_distances(x, centroids), axis=1).astype(np.float64) ** 2
        total = squared.sum()
        choice = rng.choice(len(x), p=squared / total) if total > 0 else rng.integers(len(x))
        centroids = np.concatenate([centroids, x[choice][None]])
    for _ in range(iterations):
        assignment = nearest_neighbours(x, centroids)[0]
        updated = np.array([x[assignment == cell].mean(0) if np.any(assignment == cell) else centroids[cell]
                            for cell in range(k)])
        if np.allclose(updated, centroids):
            break
        centroids = updated
    return centroids


def data_copying_test(train: object, held_out: object, generated: object, *, cells: int | None = None,
                      seed: int = 0) -> dict[str, Any]:
    """Meehan et al.'s data-copying test: do generated samples lie closer to the training set than unseen real ones?

    Global form: for every generated and every held-out real sample, the distance to its
    nearest training sample; the Mann-Whitney U statistic of the two sets of distances, as
    a Z score. Z < 0: generated samples are closer to the training data than unseen real
    samples are (copying; the paper flags values below about -3); Z > 0: farther (the
    generator misses the data).

    Cell form (the paper's C_T): the space is cut into `cells` k-means cells of the training
    set; in each cell with at least `MIN_CELL_GENERATED` generated and `MIN_CELL_HELD_OUT`
    held-out samples, Z of the distances to that cell's training samples; C_T is their mean
    weighted by each cell's share of held-out samples. Copying confined to one region shows
    as a strongly negative cell even where the global Z is unremarkable.

    Args:
      train, held_out, generated: (N, D) features.
      cells: number of cells; None: one per `TRAIN_PER_CELL` training samples. Below 2 the
        cell form is left out.
      seed: seeds k-means.

    Returns:
      {"z", "p_value" (two-sided), "median_distance_generated", "median_distance_held_out",
       "c_t", "cells", "cells_used", "cell_z" (per used cell)}; "c_t" is None without usable cells.
    """
    train = _features(train, "train")
    held_out, generated = _features(held_out, "held_out"), _features(generated, "generated")
    _check_same_width(train, held_out)
    _check_same_width(train, generated)
    _, generated_distance = nearest_neighbours(generated, train)
    _, held_out_distance = nearest_neighbours(held_out, train)
    z, p_value = _mann_whitney_z(generated_distance, held_out_distance)
    report = {"z": z, "p_value": p_value, "median_distance_generated": float(np.median(generated_distance)),
              "median_distance_held_out": float(np.median(held_out_distance)), "c_t": None, "cells": 0,
              "cells_used": 0, "cell_z": []}
    cells = len(train) // TRAIN_PER_CELL if cells is None else cells
    if cells < 2:
        return report
    centroids = k_means(train, cells, seed=seed)
    cell_of = {name: nearest_neighbours(points, centroids)[0]
               for name, points in (("train", train), ("held_out", held_out), ("generated", generated))}
    weights, cell_z = [], []
    for cell in range(cells):
        in_cell = {name: assignment == cell for name, assignment in cell_of.items()}
        if in_cell["generated"].sum() < MIN_CELL_GENERATED or in_cell["held_out"].sum() < MIN_CELL_HELD_OUT:
            continue
        cell_train = train[in_cell["train"]]
        cell_z.append(_mann_whitney_z(nearest_neighbours(generated[in_cell["generated"]], cell_train)[1],
                                      nearest_neighbours(held_out[in_cell["held_out"]], cell_train)[1])[0])
        weights.append(in_cell["held_out"].mean())
    report.update(cells=cells, cells_used=len(cell_z), cell_z=cell_z)
    if cell_z:
        report["c_t"] = float(np.dot(weights, cell_z) / np.sum(weights))
    return report
