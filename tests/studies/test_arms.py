"""The arms: names, scarcity, and each arm's training split."""

import numpy as np

from jaxmed.families.classifier import SplitData
from jaxmed.studies.arms import filter_synthetic, make_scarce, study_arms, synthetic_count, training_split


def _data():
    labels = np.array([0] * 10 + [1] * 8, np.int32)
    images = np.arange(len(labels), dtype=np.float32)[:, None, None, None] * np.ones((1, 4, 4, 1), np.float32)
    test = (np.full((2, 4, 4, 1), -1.0, np.float32), np.array([0, 1], np.int32))
    return SplitData((images, labels), test, test, ("healthy", "rare"), {})


def test_arm_names_and_order():
    names = [arm.name for arm in study_arms(("gan", "vae"), (2.0, 0.5), 1.0)]
    assert names == ["real", "augment", "gan+augment+synthetic_x0.5", "gan+augment+synthetic_x2", "gan+filtered_x1",
                     "gan+tstr", "vae+augment+synthetic_x0.5", "vae+augment+synthetic_x2", "vae+filtered_x1",
                     "vae+tstr", "all_real"]
    assert "gan+filtered_x1" not in [arm.name for arm in study_arms(("gan",), (1.0,), 0.0)]
    assert study_arms(("gan",), (1.0,), 1.0)[2].folder == "gan_plus_augment_plus_synthetic_x1"


def test_smaller_scarcities_keep_a_subset_of_larger_ones():
    data = _data()
    small, large = make_scarce(data, 1, 3, seed=0), make_scarce(data, 1, 6, seed=0)
    small_rare = {image.tobytes() for image, label in zip(*small.train) if label == 1}
    large_rare = {image.tobytes() for image, label in zip(*large.train) if label == 1}
    assert len(small_rare) == 3 and len(large_rare) == 6 and small_rare <= large_rare
    assert np.sum(small.train[1] == 0) == 10 and make_scarce(data, 1, 0, seed=0) is data


def test_each_arm_builds_its_training_split():
    scarce = make_scarce(_data(), 1, 4, seed=1)
    synthetic = np.full((20, 4, 4, 1), 0.5, np.float32)
    arms = {arm.kind + str(arm.ratio): arm for arm in study_arms(("gan",), (0.5, 2.0), 1.0)}
    assert training_split(arms["real0.0"], scarce, 1, synthetic) is scarce
    for ratio, added in ((0.5, 2), (2.0, 8)):
        split = training_split(arms[f"synthetic{ratio}"], scarce, 1, synthetic)
        assert len(split.train[1]) == 14 + added and np.sum(split.train[1] == 1) == 4 + added
    filtered = training_split(arms["filtered1.0"], scarce, 1, synthetic, filtered=synthetic[:3])
    assert np.sum(filtered.train[1] == 1) == 7
    tstr = training_split(arms["tstr1.0"], scarce, 1, synthetic)
    rare = tstr.train[0][tstr.train[1] == 1]
    assert len(rare) == 4 and np.all(rare == 0.5)  # synthetic only, as many as the real ones
    assert synthetic_count(0.25, 6) == 2


def test_the_filter_keeps_the_most_minority_like_candidates_in_order():
    candidates = np.arange(6, dtype=np.float32)[:, None, None, None]
    kept = filter_synthetic(candidates, np.array([0.9, 0.2, 0.5, 0.7, 0.1, 0.99]), wanted=3)
    assert kept[:, 0, 0, 0].tolist() == [0.0, 3.0, 5.0]
    # An unsure filter still ranks: no candidate reaches 0.5, the three most likely are kept.
    kept = filter_synthetic(candidates, np.array([0.1, 0.3, 0.05, 0.3, 0.2, 0.01]), wanted=3)
    assert kept[:, 0, 0, 0].tolist() == [1.0, 3.0, 4.0]
    # Ties keep stream order.
    assert filter_synthetic(candidates, np.zeros(6), wanted=2)[:, 0, 0, 0].tolist() == [0.0, 1.0]
