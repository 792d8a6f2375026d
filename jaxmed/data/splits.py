"""Train / validation / test splits that are stratified, seeded and leak-free.

Public medical data sets often contain the same image more than once. A split that
puts one copy in training and another in the test set measures memory, not skill,
so every split made here assigns whole groups of identical images (same pixels,
after preprocessing) to one side. Groups are stratified by class: each class is
divided in the requested proportions, up to the granularity of its groups.
"""

from __future__ import annotations

import hashlib

import numpy as np

from jaxmed.errors import DataError

SPLITS = ("train", "val", "test")


def content_groups(images: np.ndarray) -> np.ndarray:
    """A group id per image: images with identical pixels share one.

    Args:
      images: (N, ...) array.

    Returns:
      (N,) int64 ids, numbered by first occurrence.
    """
    ids: dict[bytes, int] = {}
    return np.array([ids.setdefault(hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest(), len(ids))
                     for image in images], np.int64)


def stratified_split(labels: np.ndarray, groups: np.ndarray, *, val_fraction: float = 0.15,
                     test_fraction: float = 0.15, seed: int = 0) -> np.ndarray:
    """Assigns each example to "train", "val" or "test".

    Args:
      labels: (N,) class per example.
      groups: (N,) group id per example (e.g. `content_groups`); a group never straddles splits.
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
            raise DataError(f"class {label} has {len(members)} distinct images: too few to split into "
                            f"train/val/test (need at least {n_test + n_val + 1})")
        group_split[members[:n_test]] = "test"
        group_split[members[n_test:n_test + n_val]] = "val"
        group_split[members[n_test + n_val:]] = "train"
    return group_split[np.searchsorted(unique_groups, groups)].astype(str)
