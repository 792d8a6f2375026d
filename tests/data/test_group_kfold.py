"""Stratified group K-fold cross-validation and the rarest-class default."""

import numpy as np
import pytest

from jaxmed.data import rarest_class
from jaxmed.data.splits import joined_groups, stratified_group_fold_ids, stratified_group_kfold
from jaxmed.errors import DataError


def _data():
    """60 of class 0, 30 of class 1; groups of 1-3 examples, some groups shared by duplicates and subjects."""
    rng = np.random.default_rng(0)
    labels = np.array([0] * 60 + [1] * 30)
    groups = np.repeat(np.arange(45), 2)  # pairs, all within one class (60 and 30 are even)
    subjects = np.arange(90)
    subjects[[10, 12]] = 1000  # a subject joining two pairs: one group of four
    return labels, joined_groups(groups, subjects), rng


def test_each_group_is_in_exactly_one_test_fold_per_repeat_and_never_crosses():
    labels, groups, _ = _data()
    pairs = stratified_group_kfold(labels, groups, 5, repeats=3, seed=7)
    assert len(pairs) == 15
    for repeat in range(3):
        tested = np.concatenate([test for _, test in pairs[repeat * 5:(repeat + 1) * 5]])
        assert np.array_equal(np.sort(tested), np.arange(90))  # every example tested once
        for train, test in pairs[repeat * 5:(repeat + 1) * 5]:
            assert not set(groups[train].tolist()) & set(groups[test].tolist())
            assert np.array_equal(np.sort(np.r_[train, test]), np.arange(90))
    assert len({groups[10], groups[11], groups[12], groups[13]}) == 1  # the joined group of four


def test_folds_are_stratified():
    labels, groups, _ = _data()
    fold_ids = stratified_group_fold_ids(labels, groups, 5, seed=1)[0]
    for fold in range(5):
        counts = np.bincount(labels[fold_ids == fold], minlength=2)
        # 12 of class 0 and 6 of class 1 per fold, up to one group (2 or 4 examples).
        assert abs(counts[0] - 12) <= 4 and abs(counts[1] - 6) <= 2, (fold, counts)


def test_repeats_differ_and_seeds_fix_them():
    labels, groups, _ = _data()
    ids = stratified_group_fold_ids(labels, groups, 3, repeats=2, seed=4)
    assert ids.shape == (2, 90)
    assert not np.array_equal(ids[0], ids[1])
    assert np.array_equal(ids, stratified_group_fold_ids(labels, groups, 3, repeats=2, seed=4))
    assert not np.array_equal(ids, stratified_group_fold_ids(labels, groups, 3, repeats=2, seed=5))
    # More repeats keep the earlier ones.
    assert np.array_equal(ids, stratified_group_fold_ids(labels, groups, 3, repeats=3, seed=4)[:2])


def test_a_class_with_fewer_groups_than_folds_is_a_clear_error():
    labels = np.array([0] * 20 + [1] * 6)
    groups = np.r_[np.arange(20), [100, 100, 101, 101, 102, 102]]  # class 1: three groups
    with pytest.raises(DataError, match="class 1 has 3 distinct images.*too few for 5-fold"):
        stratified_group_kfold(labels, groups, 5)
    assert len(stratified_group_kfold(labels, groups, 3)) == 3


def test_bad_fold_counts_are_errors():
    with pytest.raises(DataError, match="folds must be an integer >= 2"):
        stratified_group_kfold(np.zeros(4, int), np.arange(4), 1)
    with pytest.raises(DataError, match="repeats must be a positive integer"):
        stratified_group_kfold(np.zeros(4, int), np.arange(4), 2, repeats=0)


def test_rarest_class_is_the_smallest_present_class_ties_to_the_first_name():
    assert rarest_class(np.array([0, 0, 1, 2, 2, 2]), ("a", "b", "c")) == "b"
    assert rarest_class(np.array([1, 1, 0, 0, 2, 2, 2]), ("zeta", "alpha", "mid")) == "alpha"  # tie: sorted first
    assert rarest_class(np.array([0, 2, 2]), ("a", "empty", "c")) == "a"  # absent classes are passed over
    with pytest.raises(DataError, match="no labels"):
        rarest_class(np.array([], int), ("a",))
    with pytest.raises(DataError, match="outside the 2 classes"):
        rarest_class(np.array([0, 2]), ("a", "b"))
