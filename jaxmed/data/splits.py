"""Train / validation / test splits that are stratified, seeded and leak-free.

Public medical data sets often contain the same image more than once, exactly or as a
re-encoded, resized or re-windowed copy. A split that puts one copy in training and
another in the test set measures memory, not skill, so every split made here assigns
whole groups of duplicates to one side: `duplicate_groups` joins exact copies (same
pixels after preprocessing) and near duplicates (same perceptual hash within a few bits
and nearly identical 32x32 reductions; see `jaxmed.data.duplicates`), and chains of
them. Slices of one volume or series (a "subject", see `jaxmed.data.Dataset`) are one
group too (`joined_groups`), since neighbouring slices are near copies of each other
and a model tested on slices of a volume it trained on is tested on what it has seen.
Groups are stratified by class: each class is divided in the requested
proportions, up to the granularity of its groups. `stratified_group_kfold` does the
same for (repeated) K-fold cross-validation, which small data sets need: one held-out
split of a few dozen images gives a noisy estimate, K folds use every image for testing
once.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

# Re-exported: the groups a split keeps together.
from jaxmed.data.duplicates import content_groups, duplicate_groups
from jaxmed.errors import DataError

__all__ = ["SPLITS", "content_groups", "duplicate_groups", "joined_groups", "stratified_group_fold_ids",
           "stratified_group_kfold", "stratified_split"]

SPLITS = ("train", "val", "test")


def joined_groups(*groupings: np.ndarray) -> np.ndarray:
    """Group ids that join images sharing a group in any of `groupings`.

    Args:
      groupings: (N,) arrays of group ids of any type (e.g. `duplicate_groups` and the
        subject of each image).

    Returns:
      (N,) int array: the connected components of "in the same group somewhere".
    """
    count = len(groupings[0])
    edges = []
    offset = count
    for grouping in groupings:
        _, ids = np.unique(np.asarray(grouping), return_inverse=True)
        edges.append(np.stack([np.arange(count), offset + ids]))
        offset += ids.max() + 1 if count else 0
    edges = np.concatenate(edges, axis=1)
    graph = scipy.sparse.coo_matrix((np.ones(edges.shape[1]), (edges[0], edges[1])), shape=(offset, offset))
    _, components = scipy.sparse.csgraph.connected_components(graph, directed=False)
    return components[:count]


def stratified_split(labels: np.ndarray, groups: np.ndarray, *, val_fraction: float = 0.15,
                     test_fraction: float = 0.15, seed: int = 0) -> np.ndarray:
    """Assigns each example to "train", "val" or "test".

    Args:
      labels: (N,) class per example.
      groups: (N,) group id per example (e.g. `duplicate_groups`); a group never straddles splits.
        A group whose members carry different labels is stratified under its first label.
      val_fraction, test_fraction: shares of each class for validation and test.
      seed: fixes the assignment.

    Returns:
      (N,) array of split names.

    Raises:
      DataError: if a class is too small to give every split at least one group.
    """
    if not (0 <= val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(f"split fractions must leave training data: val={val_fraction}, test={test_fraction}")
    rng = np.random.default_rng(seed)
    unique_groups, first = np.unique(groups, return_index=True)
    group_label = labels[first]
    group_split = np.empty(len(unique_groups), dtype=object)
    for label in np.unique(group_label):
        members = rng.permutation(np.flatnonzero(group_label == label))
        n_test = max(1, round(test_fraction * len(members)))
        n_val = max(1, round(val_fraction * len(members))) if val_fraction > 0 else 0
        if n_test + n_val >= len(members):
            raise DataError(f"class {label} has {len(members)} distinct images (slices of one volume or series "
                            f"count once): too few to split into train/val/test (need at least "
                            f"{n_test + n_val + 1})")
        group_split[members[:n_test]] = "test"
        group_split[members[n_test:n_test + n_val]] = "val"
        group_split[members[n_test + n_val:]] = "train"
    return group_split[np.searchsorted(unique_groups, groups)].astype(str)


def stratified_group_fold_ids(labels: np.ndarray, groups: np.ndarray, folds: int, *, repeats: int = 1,
                              seed: int = 0) -> np.ndarray:
    """Assigns each example to one of `folds` test folds, `repeats` times, keeping groups whole.

    Per class, its groups are shuffled, then dealt largest first to the fold holding the
    fewest examples of that class so far (ties: the fold with the fewest examples overall,
    then the lowest fold index), so every fold gets about 1/`folds` of each class. Repeat
    r is drawn from the seed pair (seed, r): adding repeats never changes earlier ones.

    Args:
      labels: (N,) class per example.
      groups: (N,) group id per example (e.g. `joined_groups(duplicate_groups(...), subjects)`);
        a group is always in one fold. A group whose members carry different labels is
        stratified under its first label, as in `stratified_split`.
      folds: K >= 2.
      repeats: number of independent K-fold assignments.
      seed: fixes the assignments.

    Returns:
      (repeats, N) int array of fold indices in [0, folds).

    Raises:
      DataError: if `folds` < 2, `repeats` < 1, lengths differ, or a class has fewer
        distinct groups than folds (some test fold would have none of it).
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    if isinstance(folds, bool) or not isinstance(folds, int | np.integer) or folds < 2:
        raise DataError(f"folds must be an integer >= 2, got {folds!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int | np.integer) or repeats < 1:
        raise DataError(f"repeats must be a positive integer, got {repeats!r}")
    if labels.shape != groups.shape or labels.ndim != 1:
        raise DataError(f"labels and groups must be (N,) arrays of one length, got shapes {labels.shape} "
                        f"and {groups.shape}")
    unique_groups, first, group_of_example = np.unique(groups, return_index=True, return_inverse=True)
    group_label = labels[first]
    group_size = np.bincount(group_of_example, minlength=len(unique_groups))
    class_groups = {label: np.flatnonzero(group_label == label) for label in np.unique(group_label)}
    for label, members in class_groups.items():
        if len(members) < folds:
            raise DataError(f"class {label} has {len(members)} distinct images (slices of one volume or series and "
                            f"duplicates count once): too few for {folds}-fold cross-validation (need at least "
                            f"{folds})")
    fold_ids = np.empty((repeats, len(labels)), dtype=np.int64)
    for repeat in range(repeats):
        rng = np.random.default_rng([seed, repeat])
        group_fold = np.empty(len(unique_groups), dtype=np.int64)
        fold_total = np.zeros(folds, dtype=np.int64)
        for members in class_groups.values():
            shuffled = rng.permutation(members)
            # Largest first: big groups placed last would unbalance the folds most.
            ordered = shuffled[np.argsort(-group_size[shuffled], kind="stable")]
            fold_class = np.zeros(folds, dtype=np.int64)
            for group in ordered:
                fold = int(np.lexsort((np.arange(folds), fold_total, fold_class))[0])
                group_fold[group] = fold
                fold_class[fold] += group_size[group]
                fold_total[fold] += group_size[group]
        fold_ids[repeat] = group_fold[group_of_example]
    return fold_ids


def stratified_group_kfold(labels: np.ndarray, groups: np.ndarray, folds: int, *, repeats: int = 1,
                           seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_indices, test_indices) for each fold of each repeat of stratified group K-fold.

    See `stratified_group_fold_ids` for how folds are assigned; each group is in the test
    side of exactly one fold per repeat and never on both sides of a fold.

    Args:
      labels, groups, folds, repeats, seed: as `stratified_group_fold_ids`.

    Returns:
      `folds * repeats` pairs of sorted int arrays, repeat-major: entry `r * folds + k`
      tests on fold k of repeat r.

    Raises:
      DataError: as `stratified_group_fold_ids`.
    """
    fold_ids = stratified_group_fold_ids(labels, groups, folds, repeats=repeats, seed=seed)
    return [(np.flatnonzero(ids != fold), np.flatnonzero(ids == fold)) for ids in fold_ids for fold in range(folds)]
