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
proportions, up to the granularity of its groups.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

# Re-exported: the groups a split keeps together.
from jaxmed.data.duplicates import content_groups, duplicate_groups
from jaxmed.errors import DataError

__all__ = ["SPLITS", "content_groups", "duplicate_groups", "joined_groups", "stratified_split"]

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
