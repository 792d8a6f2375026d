"""Leak-free stratified splits."""

import io

import numpy as np
import pytest
from PIL import Image

import jaxmed.data
from jaxmed.data import splits
from jaxmed.data.splits import content_groups, duplicate_groups, stratified_split
from jaxmed.errors import DataError
from jaxmed.families.classifier import ClassifierConfig, split_dataset


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


def test_near_duplicates_never_straddle_a_split():
    """Re-encoded copies (near, not exact duplicates) land on the same side as their original."""
    dataset = jaxmed.data.load("phantom:brain", 64, n=120, seed=5)

    def reencoded(image):
        buffer = io.BytesIO()
        Image.fromarray(np.rint((image[..., 0] + 1) * 127.5).astype(np.uint8)).save(buffer, "JPEG", quality=70)
        return (np.asarray(Image.open(buffer)).astype(np.float32) / 127.5 - 1)[..., None]

    originals = np.arange(0, 120, 4)  # 30 originals, each with a JPEG copy appended
    copies = np.stack([reencoded(dataset.images[i]) for i in originals])
    images = np.concatenate([dataset.images, copies])
    labels = np.concatenate([dataset.labels, dataset.labels[originals]])
    assert not np.any(content_groups(images)[originals] == content_groups(images)[120:])  # not exact copies
    groups = duplicate_groups(images)
    assert np.array_equal(groups[originals], groups[120:])

    for seed in range(3):
        splits = stratified_split(labels, groups, seed=seed)
        assert np.array_equal(splits[originals], splits[120:])
        # Splitting by exact content alone would have separated some copies.
        if seed == 0:
            exact_only = stratified_split(labels, content_groups(images), seed=seed)
            assert np.any(exact_only[originals] != exact_only[120:])

    # The classifier's own split (no predefined splits) keeps them together too.
    combined = jaxmed.data.Dataset(images, labels, dataset.class_names, {"spec": "test"})
    split = split_dataset(combined, ClassifierConfig.tiny())
    test_images = split.test[0]
    train_images = np.concatenate([split.train[0], split.val[0]])
    for original, copy in zip(images[originals], copies, strict=True):
        in_test = [any(np.array_equal(candidate, t) for t in test_images) for candidate in (original, copy)]
        in_train = [any(np.array_equal(candidate, t) for t in train_images) for candidate in (original, copy)]
        assert in_test[0] == in_test[1] and in_train[0] == in_train[1]


def test_joined_groups_connects_images_that_share_any_group():
    duplicates = np.array([0, 0, 1, 2, 3, 4])
    subjects = np.array(["a", "b", "b", "c", "d", "d"])

    joined = splits.joined_groups(duplicates, subjects)

    # 0-1 are copies, 1-2 share subject b, so 0,1,2 are one group; 4,5 share subject d.
    assert len(set(joined[:3])) == 1 and len(set(joined)) == 3
    assert joined[3] != joined[0] and joined[4] == joined[5] != joined[3]


def test_the_classifier_split_keeps_every_slice_of_a_volume_on_one_side():
    rng = np.random.default_rng(0)
    volumes, slices = 24, 6
    images = rng.uniform(-1, 1, (volumes * slices, 16, 16, 1)).astype(np.float32)  # all distinct
    labels = np.repeat(np.arange(volumes) % 2, slices).astype(np.int32)
    subjects = [f"scan{volume}.nii.gz" for volume in range(volumes) for _ in range(slices)]
    dataset = jaxmed.data.Dataset(images, labels, ("a", "b"), {"spec": "test", "subjects": subjects})

    def sides(config):
        split = split_dataset(dataset, config)
        side_of = {}
        for name, (part, _) in (("train", split.train), ("val", split.val), ("test", split.test)):
            for image in part:
                index = int(np.flatnonzero(np.all(images == image, axis=(1, 2, 3)))[0])
                side_of.setdefault(subjects[index], set()).add(name)
        return side_of

    assert all(len(names) == 1 for names in sides(ClassifierConfig.tiny()).values())
    # Splitting slices independently (split.by_subject=false) does scatter volumes.
    scattered = sides(ClassifierConfig.tiny(**{"split.by_subject": "false"}))
    assert any(len(names) > 1 for names in scattered.values())
