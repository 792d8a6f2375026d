"""Exact and near-duplicate detection: perceptual hashes, verified pairs, groups, categories."""

import io
import itertools

import numpy as np
import pytest
from PIL import Image

import jaxmed.data
from jaxmed.data import duplicates
from jaxmed.data.duplicates import (content_groups, duplicate_groups, find_duplicates, hash_pairs,
                                    near_duplicate_pairs, perceptual_hashes)


@pytest.fixture(scope="module")
def brains():
    """Distinct phantom brain slices: similar layouts, different images."""
    return jaxmed.data.load("phantom:brain", 64, n=240, seed=3).images


def to_uint8(image):
    return np.rint((image[..., 0] + 1) * 127.5).astype(np.uint8)


def from_uint8(pixels):
    return (pixels.astype(np.float32) / 127.5 - 1.0)[..., None]


def jpeg(image, quality=75):
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, "JPEG", quality=quality)
    return from_uint8(np.asarray(Image.open(buffer)))


def resized(image, fraction=0.7):
    pixels = Image.fromarray(to_uint8(image))
    side = int(pixels.width * fraction)
    return from_uint8(np.asarray(pixels.resize((side, side), Image.BICUBIC).resize(pixels.size, Image.BICUBIC)))


def distance(a, b):
    return int(np.bitwise_count(a ^ b))


def test_hash_ignores_brightness_and_contrast_and_barely_moves_under_reencoding(brains):
    image = brains[0]
    base = perceptual_hashes(image[None]).bits[0]
    assert perceptual_hashes((0.6 * image + 0.2)[None]).bits[0] == base
    assert distance(perceptual_hashes(jpeg(image)[None]).bits[0], base) <= duplicates.NEAR_DUPLICATE_BITS
    assert distance(perceptual_hashes(resized(image)[None]).bits[0], base) <= duplicates.NEAR_DUPLICATE_BITS
    # A different slice is far away in bits on average (32 of 64 for unrelated images).
    others = perceptual_hashes(brains[1:40]).bits
    assert np.mean([distance(other, base) for other in others]) > 2 * duplicates.NEAR_DUPLICATE_BITS


def test_hash_does_not_depend_on_batching(brains, monkeypatch):
    whole = perceptual_hashes(brains[:50]).bits
    monkeypatch.setattr(duplicates, "_CHUNK", 7)
    assert np.array_equal(perceptual_hashes(brains[:50]).bits, whole)
    assert np.array_equal(np.concatenate([perceptual_hashes(brains[i:i + 1]).bits for i in range(50)]), whole)


def test_hash_bits_follow_the_dct_of_the_thumbnail():
    # A horizontal ramp has DCT energy only in the first row, at odd horizontal
    # frequencies: positive when it falls left to right, negative when it rises. The top
    # byte of the hash is that row (DC first), every other coefficient is zero (the median).
    ramp = np.tile(np.linspace(1.0, -1.0, 64, dtype=np.float32), (64, 1))[None, ..., None]
    assert int(perceptual_hashes(ramp).bits[0]) == 0b11010101 << 56
    assert int(perceptual_hashes(-ramp).bits[0]) == 0b10000000 << 56


def test_hash_pairs_match_brute_force_across_blocks(monkeypatch):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 40, dtype=np.uint64)
    # Neighbours within a few bits of some of the base hashes.
    flips = np.uint64(1) << rng.integers(0, 64, (40, 3)).astype(np.uint64)
    bits = np.concatenate([base, base ^ flips[:, 0] ^ flips[:, 1], base ^ flips[:, 2]])
    hashes = duplicates.PerceptualHashes(bits, np.zeros(len(bits), bool))
    monkeypatch.setattr(duplicates, "_CHUNK", 16)
    pairs = hash_pairs(hashes, 2)
    expected = {(i, j) for i, j in itertools.combinations(range(len(bits)), 2) if distance(bits[i], bits[j]) <= 2}
    assert set(zip(pairs.first.tolist(), pairs.second.tolist(), strict=True)) == expected
    assert len(expected) >= 80
    assert all(d == distance(bits[i], bits[j]) for i, j, d in zip(pairs.first, pairs.second, pairs.distance))


def test_near_duplicates_are_copies_not_lookalikes(brains):
    images = np.concatenate([brains[:100], jpeg(brains[5])[None], resized(brains[7])[None],
                             (0.8 * brains[9] - 0.1)[None]])
    pairs = near_duplicate_pairs(images)
    found = set(zip(pairs.first.tolist(), pairs.second.tolist(), strict=True))
    assert {(5, 100), (7, 101), (9, 102)} <= found
    assert found - {(5, 100), (7, 101), (9, 102)} == set()
    # The hash alone pairs many different phantoms (same layout); the correlation test removes them.
    assert hash_pairs(perceptual_hashes(images)).count > 3 * len(found)
    assert np.all(pairs.correlation >= duplicates.NEAR_DUPLICATE_CORRELATION)


def test_flat_images_are_only_exact_duplicates():
    images = np.zeros((4, 16, 16, 1), np.float32)
    images[0] = -1.0
    images[1] = 0.5
    images[2] = 0.5
    images[3] = np.random.default_rng(0).normal(size=(16, 16, 1))
    assert perceptual_hashes(images).flat.tolist() == [True, True, True, False]
    assert near_duplicate_pairs(images).count == 0
    assert duplicate_groups(images).tolist() == [0, 1, 1, 2]


def test_groups_join_exact_and_near_duplicates_and_chains(brains):
    a, b, c = brains[0], brains[1], brains[2]
    images = np.stack([a, b, jpeg(a), c, jpeg(a), b, resized(c)])
    # a ~ jpeg(a) (near); the two jpeg(a) are identical (exact); b == b; c ~ resized(c).
    groups = duplicate_groups(images)
    assert groups.tolist() == [0, 1, 0, 2, 0, 1, 2]
    assert duplicate_groups(images, near=False).tolist() == content_groups(images).tolist() == [0, 1, 2, 3, 2, 1, 4]


def test_find_duplicates_sorts_pairs_by_class_and_split(brains):
    images = np.stack([brains[0], brains[0], brains[0], brains[1], brains[2], jpeg(brains[2]), brains[3],
                       brains[4], brains[4]])
    labels = np.array([0, 0, 1, 0, 0, 1, 1, 1, 1])
    splits = np.array(["train", "test", "train", "train", "train", "test", "train", "train", "train"])
    found = find_duplicates(images, labels, splits)
    assert [group.tolist() for group in found.exact_groups] == [[0, 1, 2], [7, 8]]
    # Brute force over the exact pairs.
    exact_pairs = [(0, 1), (0, 2), (1, 2), (7, 8)]
    assert found.exact["within_class"].pairs == sum(labels[i] == labels[j] for i, j in exact_pairs) == 2
    assert found.exact["across_classes"].pairs == sum(labels[i] != labels[j] for i, j in exact_pairs) == 2
    assert found.exact["across_splits"].pairs == sum(splits[i] != splits[j] for i, j in exact_pairs) == 2
    assert found.exact["across_classes"].images == 3
    for name, category in found.exact.items():
        for i, j in category.examples:
            assert (i, j) in exact_pairs
            if name == "across_classes":
                assert labels[i] != labels[j]
            if name == "across_splits":
                assert splits[i] != splits[j]
    # The JPEG copy of image 4 is a near duplicate with another label, in another split.
    assert list(zip(found.near.first, found.near.second)) == [(4, 5)]
    assert found.near_categories["across_classes"].examples == [(4, 5)]
    assert found.near_categories["across_splits"].pairs == 1
    assert found.near_categories["within_class"].pairs == 0


def test_exact_counts_scale_to_a_large_group_of_blank_images():
    images = np.zeros((3000, 8, 8, 1), np.float32)
    labels = np.arange(3000) % 2
    found = find_duplicates(images, labels)
    assert found.exact["within_class"].pairs == 2 * (1500 * 1499 // 2)
    assert found.exact["across_classes"].pairs == 1500 * 1500
    assert found.exact["across_splits"].pairs == 0
    assert found.near.count == 0
