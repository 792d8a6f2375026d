"""Leak-free stratified splits."""

import numpy as np
import pytest

from jaxmed.data.splits import content_groups, stratified_split
from jaxmed.errors import DataError


def test_content_groups_find_identical_images():
    images = np.random.default_rng(0).normal(size=(6, 4, 4, 1)).astype(np.float32)
    images[4] = images[1]
    groups = content_groups(images)
    assert groups[4] == groups[1]
    assert len(set(groups.tolist())) == 5


def test_split_is_stratified_seeded_and_keeps_duplicates_together():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(200, 4, 4, 1)).astype(np.float32)
    labels = np.array([0] * 150 + [1] * 50)
    images[100:110] = images[0]  # ten copies of one class-0 image
    splits = stratified_split(labels, content_groups(images), seed=3)
    copies = set(splits[[0, *range(100, 110)]].tolist())
    assert len(copies) == 1  # all copies on one side
    for label, count in ((0, 150), (1, 50)):
        share = np.mean(splits[labels == label] == "test")
        assert abs(share - 0.15) < 0.08, (label, share)
    assert np.array_equal(splits, stratified_split(labels, content_groups(images), seed=3))
    assert not np.array_equal(splits, stratified_split(labels, content_groups(images), seed=4))
    # No test image's pixels appear in training.
    train_hashes = {image.tobytes() for image in images[splits == "train"]}
    assert not any(image.tobytes() in train_hashes for image in images[splits == "test"])


def test_too_small_class_is_a_clear_error():
    labels = np.array([0] * 20 + [1] * 2)
    with pytest.raises(DataError, match="class 1 has 2 distinct images"):
        stratified_split(labels, np.arange(22))
