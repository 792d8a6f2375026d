"""Tests for the procedural brain MRI / lung CT phantoms."""

import numpy as np
import pytest
import scipy.ndimage as ndi

from jaxmed.data import phantoms
from jaxmed.data.phantoms import common

GENERATORS = {
    "brain": (phantoms.brain, "tumor_fraction", ("no_tumor", "tumor")),
    "lung": (phantoms.lung, "nodule_fraction", ("no_nodule", "nodule")),
}


def _make(kind, n, fraction=0.5, **kwargs):
    fn, frac_name, _ = GENERATORS[kind]
    return fn(n, **{frac_name: fraction}, **kwargs)


def _ring(mask, width):
    return ndi.binary_dilation(mask, iterations=width) & ~mask


def _head_region(img):
    """Head/body support estimated from the image alone: smoothed signal above the
    air noise floor, holes (dark skull, CSF) filled."""
    return ndi.binary_fill_holes(ndi.gaussian_filter(img, 1.0) > 0.15)


# ------------------------------------------------------------------- shapes and types


@pytest.mark.parametrize("kind,size", [("brain", 64), ("brain", 16), ("brain", 100), ("lung", 64), ("lung", 24)])
def test_shapes_dtypes_and_range(kind, size):
    ps = _make(kind, 12, size=size, seed=1)
    assert ps.images.shape == (12, size, size) and ps.images.dtype == np.float32
    assert ps.masks.shape == (12, size, size) and ps.masks.dtype == np.bool_
    assert ps.labels.shape == (12,) and ps.labels.dtype == np.int32
    assert ps.class_names == GENERATORS[kind][2]
    assert np.isfinite(ps.images).all()
    assert ps.images.min() >= 0.0 and ps.images.max() <= 1.0
    assert set(np.unique(ps.labels)) <= {0, 1}


def test_default_sizes():
    assert phantoms.brain(2).images.shape == (2, 128, 128)
    assert phantoms.lung(2).images.shape == (2, 64, 64)


def test_phantom_set_is_frozen():
    ps = phantoms.lung(2, size=16)
    with pytest.raises(AttributeError):
        ps.labels = None


# -------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("kind", ["brain", "lung"])
def test_same_seed_is_bit_identical(kind):
    a = _make(kind, 20, size=48, seed=7)
    b = _make(kind, 20, size=48, seed=7)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.labels, b.labels)


@pytest.mark.parametrize("kind", ["brain", "lung"])
def test_output_does_not_depend_on_thread_scheduling(kind, monkeypatch):
    # 300 images of 32 px are two chunks; rendered on one thread, then on up to four.
    monkeypatch.setattr(common, "_MAX_THREADS", 1)
    serial = _make(kind, 300, size=32, seed=11)
    monkeypatch.setattr(common, "_MAX_THREADS", 4)
    monkeypatch.setattr(common.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    threaded = _make(kind, 300, size=32, seed=11)
    np.testing.assert_array_equal(serial.images, threaded.images)
    np.testing.assert_array_equal(serial.masks, threaded.masks)
    np.testing.assert_array_equal(serial.labels, threaded.labels)


def test_lung_parenchyma_sits_at_its_window_level():
    # Parenchyma of about -850 HU through the lung window (-1350 .. 150 HU) is about 0.33.
    ps = phantoms.lung(16, size=32, nodule_fraction=0.0, seed=5)
    medians = np.median(ps.images, axis=(1, 2))
    assert np.all((medians > 0.28) & (medians < 0.40))


@pytest.mark.parametrize("kind", ["brain", "lung"])
def test_different_seed_differs(kind):
    a = _make(kind, 20, size=48, seed=7)
    b = _make(kind, 20, size=48, seed=8)
    # Every image differs, not just a few.
    assert np.all(np.abs(a.images - b.images).reshape(20, -1).max(axis=1) > 0.05)


# ----------------------------------------------------------------------------- labels


@pytest.mark.parametrize("kind", ["brain", "lung"])
@pytest.mark.parametrize("n,fraction", [(40, 0.5), (37, 0.3), (25, 0.0), (25, 1.0), (9, 0.12)])
def test_exact_positive_count(kind, n, fraction):
    ps = _make(kind, n, fraction, size=16, seed=3)
    assert int(ps.labels.sum()) == round(n * fraction)


@pytest.mark.parametrize("kind", ["brain", "lung"])
def test_rare_class_count_exact(kind):
    ps = _make(kind, 2000, 0.0035, size=16, seed=11)
    assert int(ps.labels.sum()) == 7
    assert int(ps.masks.reshape(2000, -1).any(axis=1).sum()) == 7


@pytest.mark.parametrize("kind", ["brain", "lung"])
def test_positives_are_shuffled(kind):
    labels = _make(kind, 40, 0.5, size=16, seed=0).labels
    first = np.flatnonzero(labels)
    assert not np.array_equal(first, np.arange(20)) and not np.array_equal(first, np.arange(20, 40))
    other = _make(kind, 40, 0.5, size=16, seed=1).labels
    assert not np.array_equal(labels, other)


# ------------------------------------------------------------------------------ masks


@pytest.mark.parametrize("kind", ["brain", "lung"])
def test_masks_empty_for_negatives_and_present_for_positives(kind):
    ps = _make(kind, 48, size=64, seed=5)
    has_lesion = ps.masks.reshape(48, -1).any(axis=1)
    assert 0 < ps.labels.sum() < 48
    np.testing.assert_array_equal(has_lesion, ps.labels == 1)


def test_brain_lesions_lie_inside_the_head():
    ps = phantoms.brain(40, size=96, tumor_fraction=1.0, difficulty=2.0, seed=2)
    for img, mask in zip(ps.images, ps.masks):
        head = _head_region(img)
        assert 0.1 < head.mean() < 0.8  # the estimate found a head
        assert not (mask & ~head).any()
        # Lesions sit in the brain, not in the scalp: away from the head outline.
        assert not (mask & ~ndi.binary_erosion(head, iterations=3)).any()


def test_brain_lesions_differ_from_surroundings():
    ps = phantoms.brain(48, size=64, seed=0)
    pos = np.flatnonzero(ps.labels == 1)
    neg = np.flatnonzero(ps.labels == 0)

    def deviation(img, mask):
        return np.abs(img[mask] - img[_ring(mask, 2)].mean()).mean()

    lesion = np.mean([deviation(ps.images[i], ps.masks[i]) for i in pos])
    # The same masks placed on tumour-free images measure the anatomy's own contrast.
    baseline = np.mean([deviation(ps.images[j], ps.masks[i]) for i, j in zip(pos, neg)])
    assert lesion > 0.08
    assert lesion > baseline + 0.03


def test_lung_nodules_are_denser_than_surroundings():
    ps = phantoms.lung(48, seed=0)
    pos = np.flatnonzero(ps.labels == 1)
    neg = np.flatnonzero(ps.labels == 0)

    def excess(img, mask):
        return img[mask].mean() - img[_ring(mask, 3)].mean()

    nodule = np.mean([excess(ps.images[i], ps.masks[i]) for i in pos])
    baseline = np.mean([excess(ps.images[j], ps.masks[i]) for i, j in zip(pos, neg)])
    assert nodule > 0.1
    assert nodule > baseline + 0.1


def test_lung_nodule_sizes_are_physical():
    ps = phantoms.lung(60, nodule_fraction=1.0, seed=4)
    areas = ps.masks.reshape(60, -1).sum(axis=1)
    diameter_mm = 2 * np.sqrt(areas / np.pi) * 0.7  # 0.7 mm pixels at size 64
    assert diameter_mm.min() >= 1.0
    assert 3.0 <= np.median(diameter_mm) <= 30.0
    assert diameter_mm.max() <= 45.0


# ------------------------------------------------------------------------- difficulty


def _component_areas(masks):
    return np.concatenate([np.bincount(ndi.label(m)[0].ravel())[1:] for m in masks])


def test_difficulty_shrinks_brain_lesions():
    easy = phantoms.brain(40, size=64, tumor_fraction=1.0, difficulty=0.5, seed=3)
    hard = phantoms.brain(40, size=64, tumor_fraction=1.0, difficulty=2.0, seed=3)
    assert _component_areas(hard.masks).mean() < 0.5 * _component_areas(easy.masks).mean()


def test_difficulty_shrinks_lung_nodules():
    easy = phantoms.lung(40, nodule_fraction=1.0, difficulty=0.5, seed=3)
    hard = phantoms.lung(40, nodule_fraction=1.0, difficulty=2.0, seed=3)
    assert hard.masks.sum() < 0.5 * easy.masks.sum()


def test_difficulty_raises_noise():
    easy = phantoms.brain(24, size=64, difficulty=0.5, seed=3)
    hard = phantoms.brain(24, size=64, difficulty=2.0, seed=3)
    # Corners are air: what is there is the Rician noise floor.
    corner = (slice(None), slice(0, 6), slice(0, 6))
    assert hard.images[corner].std() > 1.3 * easy.images[corner].std()


def test_default_difficulty_has_small_faint_lesions():
    ps = phantoms.brain(60, size=128, tumor_fraction=1.0, seed=9)
    areas = _component_areas(ps.masks)
    small = areas <= 16  # about 4 pixels across or less
    assert small.mean() >= 0.12
    assert areas.max() >= 200  # and large masses too
    easy = phantoms.brain(60, size=128, tumor_fraction=1.0, difficulty=0.5, seed=9)
    assert (_component_areas(easy.masks) <= 16).mean() < small.mean()


# ---------------------------------------------------------------------------- variety


@pytest.mark.parametrize("kind", ["brain", "lung"])
def test_images_vary(kind):
    ps = _make(kind, 16, size=64, seed=6, fraction=0.0)
    flat = ps.images.reshape(16, -1)
    diffs = [np.abs(flat[i] - flat[j]).mean() for i in range(16) for j in range(i + 1, 16)]
    assert min(diffs) > 0.01
    assert ps.images.std(axis=0).mean() > 0.03


def test_brain_head_geometry_varies():
    ps = phantoms.brain(16, size=64, tumor_fraction=0.0, seed=6)
    head_area = np.array([_head_region(img).sum() for img in ps.images])
    assert head_area.std() > 0.05 * head_area.mean()
    assert ps.images[:, 0:4, 0:4].mean() < 0.1  # air stays dark


@pytest.mark.parametrize("kind", ["brain", "lung"])
def test_labels_only_add_lesions(kind):
    """Same n/size/seed: anatomy and noise do not depend on the class fraction."""
    none = _make(kind, 24, 0.0, size=48, seed=4)
    half = _make(kind, 24, 0.5, size=48, seed=4)
    neg = half.labels == 0
    np.testing.assert_array_equal(none.images[neg], half.images[neg])
    assert not np.array_equal(none.images[~neg], half.images[~neg])


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kind", ["brain", "lung"])
@pytest.mark.parametrize(
    "kwargs,word",
    [
        ({"n": 0}, "n must"),
        ({"n": -3}, "n must"),
        ({"n": 2.5}, "n must"),
        ({"fraction": -0.1}, "fraction"),
        ({"fraction": 1.5}, "fraction"),
        ({"fraction": float("nan")}, "fraction"),
        ({"size": 15}, "size"),
        ({"size": 513}, "size"),
        ({"difficulty": 0.0}, "difficulty"),
        ({"difficulty": -1.0}, "difficulty"),
        ({"difficulty": float("inf")}, "difficulty"),
        ({"seed": -1}, "seed"),
        ({"seed": None}, "seed"),
    ],
)
def test_bad_arguments_raise(kind, kwargs, word):
    fn, frac_name, _ = GENERATORS[kind]
    args = {"n": 4, "size": 16}
    args.update(kwargs)
    if "fraction" in args:
        args[frac_name] = args.pop("fraction")
    n = args.pop("n")
    with pytest.raises(ValueError) as err:
        fn(n, **args)
    message = str(err.value)
    assert word in message and "\n" not in message
