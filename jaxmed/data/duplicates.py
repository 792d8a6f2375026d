"""Exact and near-duplicate images: content hashes, perceptual hashes, groups of copies.

Public medical data sets often hold the same scan more than once: re-exported,
re-compressed, resized, or filed under two classes or two splits. Two tests find them,
both on the preprocessed images (the arrays a model sees):

* **Exact duplicates** have identical pixels (a SHA-1 of the array; :func:`content_groups`).
* **Near duplicates** are the same picture up to re-encoding, resizing, a brightness or
  contrast change or light noise. Candidates are pairs whose 64-bit DCT perceptual hashes
  (:func:`perceptual_hashes`: the "pHash" of the ``imagehash`` package) differ in at most
  :data:`NEAR_DUPLICATE_BITS` bits; a candidate counts when the Pearson correlation of the
  two 32x32 reductions is at least :data:`NEAR_DUPLICATE_CORRELATION`. The second test
  is needed because a 64-bit hash cannot tell apart different images that share one
  layout, as all slices of one anatomy do. Images with no structure (blank or constant)
  are never near duplicates, only exact ones.

:func:`duplicate_groups` joins both kinds, and chains of them, into groups (connected
components): what a leak-free split keeps on one side (:mod:`jaxmed.data.splits`).
:func:`find_duplicates` sorts the duplicates into those within a class, those across
classes (conflicting labels) and those across predefined splits (test leakage), for
``jaxmed data inspect``.

Everything is vectorised numpy, so tens of thousands of images are checked in seconds.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np
import scipy.fft
import scipy.sparse
import scipy.sparse.csgraph

from jaxmed.data.preprocess import LUMA_WEIGHTS

HASH_SIDE = 8  # the 8x8 lowest DCT frequencies: a 64-bit hash
THUMBNAIL_SIDE = 32  # images are reduced to 32x32 first (imagehash's default, highfreq_factor=4)
# Measured on phantom brain slices and lung patches (README, "Duplicates"): JPEG at
# quality 75-90, resizing to 70 % and back, a contrast change and noise of 3/255 moved
# hashes by at most 4 bits and kept correlations >= 0.99 (lung patches resized: 91 %).
NEAR_DUPLICATE_BITS = 6
NEAR_DUPLICATE_CORRELATION = 0.99
# A thumbnail with a standard deviation below this (in the images' units, [-1, 1] for
# preprocessed images) is flat: its hash bits and correlation would be rounding noise.
FLAT_STD = 1e-3
# Images handled at once (memory: this many x N x 8 bytes for the pairwise comparison).
_CHUNK = 512
# Example pairs kept per category in a `Findings` report.
EXAMPLES = 5


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


def _area_weights(source: int, target: int) -> np.ndarray:
    """(target, source) weights that average the source pixels each target pixel covers."""
    edges = np.arange(target + 1) * (source / target)
    pixel = np.arange(source)
    overlap = np.clip(np.minimum(edges[1:, None], pixel + 1) - np.maximum(edges[:-1, None], pixel), 0.0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def thumbnails(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32) float32 grayscale reductions by area averaging.

    Args:
      images: (N, H, W) or (N, H, W, C) with C = 1, 3 or 4 (colour is reduced by BT.601
        luma, alpha dropped), any real scale.
    """
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[..., 0] if images.shape[-1] == 1 else images[..., :3] @ np.asarray(LUMA_WEIGHTS, np.float32)
    rows = _area_weights(images.shape[1], THUMBNAIL_SIDE)
    columns = _area_weights(images.shape[2], THUMBNAIL_SIDE).T
    out = np.empty((len(images), THUMBNAIL_SIDE, THUMBNAIL_SIDE), np.float32)
    for start in range(0, len(images), _CHUNK):  # chunks bound the float32 copy of the input
        out[start:start + _CHUNK] = rows @ images[start:start + _CHUNK].astype(np.float32) @ columns
    return out


def unit_thumbnails(images: np.ndarray) -> np.ndarray:
    """(N, 1024) centred, unit-length thumbnails: the dot product of two is their Pearson correlation.

    Args:
      images: as for `thumbnails`, or (N, 32, 32) thumbnails.
    """
    unit = thumbnails(images).reshape(len(images), -1)
    unit = unit - unit.mean(axis=1, keepdims=True)
    return unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)


class PerceptualHashes(NamedTuple):
    """64-bit DCT perceptual hashes.

    Attributes:
      bits: (N,) uint64; the most significant bit is the DC coefficient, then row-major
        order (the bit order of ``str(imagehash.phash(image))``).
      flat: (N,) bool: images with no structure to hash (never near duplicates).
    """

    bits: np.ndarray
    flat: np.ndarray


def perceptual_hashes(images: np.ndarray) -> PerceptualHashes:
    """The DCT perceptual hash ("pHash") of each image.

    The definition is ``imagehash.phash``'s: a 32x32 grayscale reduction, its 2-D DCT-II,
    the top-left 8x8 coefficients, a bit per coefficient set when it is above their
    median. The reduction here averages areas where imagehash resamples 8-bit pixels
    with a Lanczos filter, so the two agree on most images but not bit for bit.

    Args:
      images: (N, H, W) or (N, H, W, C), see `thumbnails`; or (N, 32, 32) thumbnails.
    """
    small = thumbnails(images)
    coefficients = scipy.fft.dctn(small, type=2, axes=(1, 2))[:, :HASH_SIDE, :HASH_SIDE].reshape(len(small), -1)
    # On 0..255 pixels (imagehash) the DC term is the largest coefficient; on [-1, 1]
    # images it may be negative. Fixing it as the largest keeps the hashes comparable.
    coefficients[:, 0] = np.inf
    above = coefficients > np.median(coefficients, axis=1, keepdims=True)
    bits = np.packbits(above, axis=1).view(">u8")[:, 0].astype(np.uint64)
    return PerceptualHashes(bits, small.reshape(len(small), -1).std(axis=1) < FLAT_STD)


class Pairs(NamedTuple):
    """Pairs of images (first < second) with their hash distance and thumbnail correlation."""

    first: np.ndarray
    second: np.ndarray
    distance: np.ndarray
    correlation: np.ndarray

    @property
    def count(self) -> int:
        return len(self.first)


def hash_pairs(hashes: PerceptualHashes, max_bits: int = NEAR_DUPLICATE_BITS) -> Pairs:
    """Every pair of non-flat images whose hashes differ in at most `max_bits` bits.

    Compares all N*(N-1)/2 pairs a block of rows at a time (XOR and popcount), so memory
    stays at `_CHUNK` x N.

    Returns:
      The pairs, ordered by first then second index, with correlation left NaN.
    """
    usable = np.flatnonzero(~hashes.flat)
    bits = hashes.bits[usable]
    firsts, seconds, distances = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.uint8)]
    for start in range(0, len(bits), _CHUNK):
        block = bits[start:start + _CHUNK]
        distance = np.bitwise_count(block[:, None] ^ bits[None, start:])  # each row against itself and later rows
        row, column = np.nonzero(distance <= max_bits)
        later = column > row  # column counts from `start` too: this drops each image paired with itself
        row, column = row[later], column[later]
        firsts.append(usable[start + row])
        seconds.append(usable[start + column])
        distances.append(distance[row, column])
    first, second = np.concatenate(firsts), np.concatenate(seconds)
    return Pairs(first, second, np.concatenate(distances), np.full(len(first), np.nan, np.float32))


def near_duplicate_pairs(images: np.ndarray, *, max_bits: int = NEAR_DUPLICATE_BITS,
                         min_correlation: float = NEAR_DUPLICATE_CORRELATION) -> Pairs:
    """Every pair of near-duplicate images (including exact duplicates that are not flat).

    Args:
      images: (N, H, W, C).
      max_bits: the largest perceptual-hash distance of a candidate pair.
      min_correlation: the smallest Pearson correlation of the 32x32 reductions.

    Returns:
      The pairs, ordered by first then second index.
    """
    small = thumbnails(images)
    candidates = hash_pairs(perceptual_hashes(small), max_bits)
    unit = unit_thumbnails(small)
    correlation = np.concatenate([np.zeros(0, np.float32)] + [
        np.einsum("ij,ij->i", unit[candidates.first[start:start + _CHUNK]],
                  unit[candidates.second[start:start + _CHUNK]])
        for start in range(0, candidates.count, _CHUNK)])
    keep = correlation >= min_correlation
    return Pairs(candidates.first[keep], candidates.second[keep], candidates.distance[keep], correlation[keep])


def duplicate_groups(images: np.ndarray, *, near: bool = True) -> np.ndarray:
    """A group id per image: exact and near duplicates, and chains of them, share one.

    Args:
      images: (N, H, W, C).
      near: also join near duplicates (else exact duplicates only, as `content_groups`).

    Returns:
      (N,) int64 ids, numbered by first occurrence.
    """
    exact = content_groups(images)
    if not near or len(images) < 2:
        return exact
    pairs = near_duplicate_pairs(images)
    n = len(images)
    # A graph on the images: edges join near-duplicate pairs, and each image to the
    # first member of its exact group.
    first_member = np.unique(exact, return_index=True)[1][exact]
    start = np.concatenate([pairs.first, np.arange(n)])
    end = np.concatenate([pairs.second, first_member])
    graph = scipy.sparse.coo_matrix((np.ones(len(start), np.int8), (start, end)), shape=(n, n))
    _, component = scipy.sparse.csgraph.connected_components(graph, directed=False)
    return _renumber(component)


def _renumber(ids: np.ndarray) -> np.ndarray:
    """Ids renumbered 0, 1, ... by first occurrence."""
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse]


class Category(NamedTuple):
    """Duplicate pairs of one kind: how many, which images, and a few examples.

    Attributes:
      pairs: the number of pairs.
      images: the number of distinct images in them.
      examples: up to `EXAMPLES` pairs (first, second) of image indices.
    """

    pairs: int
    images: int
    examples: list[tuple[int, int]]


class Findings(NamedTuple):
    """Duplicates in a data set, sorted by what they mean.

    Attributes:
      exact_groups: one array of image indices per set of >= 2 identical images.
      near: near-duplicate pairs that are not exact duplicates.
      exact: {"within_class", "across_classes", "across_splits"} -> `Category` of exact pairs.
      near_categories: the same for `near`.
    """

    exact_groups: list[np.ndarray]
    near: Pairs
    exact: dict[str, Category]
    near_categories: dict[str, Category]


CATEGORIES = ("within_class", "across_classes", "across_splits")


def _categorize_pairs(pairs: Pairs, labels: np.ndarray, splits: np.ndarray | None) -> dict[str, Category]:
    """Sorts pairs of images into the three `CATEGORIES`."""
    first, second = pairs.first, pairs.second
    same_split = np.ones(len(first), bool) if splits is None else splits[first] == splits[second]
    masks = {"within_class": labels[first] == labels[second], "across_classes": labels[first] != labels[second],
             "across_splits": ~same_split}
    categories = {}
    for name, mask in masks.items():
        a, b = first[mask], second[mask]
        categories[name] = Category(int(mask.sum()), len(np.union1d(a, b)),
                                    [(int(i), int(j)) for i, j in zip(a[:EXAMPLES], b[:EXAMPLES], strict=True)])
    return categories


def _categorize_groups(groups: list[np.ndarray], labels: np.ndarray, splits: np.ndarray | None
                       ) -> dict[str, Category]:
    """Sorts the pairs within groups of identical images into the three `CATEGORIES`.

    Counts are combinatorial, so a blank image repeated 10,000 times costs nothing.
    """
    tally = {name: [0, 0, []] for name in CATEGORIES}  # pairs, images, examples

    def add(name: str, pairs: int, images: int, example: tuple[int, int] | None) -> None:
        tally[name][0] += pairs
        tally[name][1] += images
        if example is not None and len(tally[name][2]) < EXAMPLES:
            tally[name][2].append(example)

    for group in groups:
        total = len(group) * (len(group) - 1) // 2
        for name, values in (("class", labels[group]), ("split", None if splits is None else splits[group])):
            if values is None:
                continue
            _, first_index, counts = np.unique(values, return_index=True, return_counts=True)
            same = int(np.sum(counts * (counts - 1) // 2))
            across = f"across_{'classes' if name == 'class' else 'splits'}"
            if len(counts) > 1:
                other = group[np.flatnonzero(values != values[0])[0]]
                add(across, total - same, len(group), (int(group[0]), int(other)))
            if name == "class" and same:
                repeated = values == values[first_index[np.argmax(counts >= 2)]]
                a, b = group[np.flatnonzero(repeated)[:2]]
                add("within_class", same, int(np.sum(counts[counts >= 2])), (int(a), int(b)))
    return {name: Category(pairs, images, examples) for name, (pairs, images, examples) in tally.items()}


def find_duplicates(images: np.ndarray, labels: np.ndarray, splits: np.ndarray | None = None) -> Findings:
    """Exact and near duplicates, sorted into within a class, across classes and across splits.

    Duplicates are counted in pairs, so a set of k identical images is k*(k-1)/2 exact
    pairs; near-duplicate pairs leave out pairs that are also exact duplicates.

    Args:
      images: (N, H, W, C).
      labels: (N,) class per image.
      splits: (N,) predefined split per image, or None.

    Returns:
      `Findings`.
    """
    labels = np.asarray(labels)
    splits = None if splits is None else np.asarray(splits)
    exact = content_groups(images)
    members = np.argsort(exact, kind="stable")
    boundaries = np.flatnonzero(np.diff(exact[members])) + 1
    groups = [group for group in np.split(members, boundaries) if len(group) > 1]
    near = near_duplicate_pairs(images)
    distinct = exact[near.first] != exact[near.second]
    near = Pairs(*(field[distinct] for field in near))
    return Findings(groups, near, _categorize_groups(groups, labels, splits),
                    _categorize_pairs(near, labels, splits))
