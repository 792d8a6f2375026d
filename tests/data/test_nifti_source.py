"""Tests for jaxmed.data.sources.nifti: NIfTI volumes read as 2-D slices."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

from jaxmed import data as data_lib
from jaxmed.data.preprocess import preprocess
from jaxmed.data.sources import nifti
from jaxmed.data.sources.common import ReadOptions, SourceImages
from jaxmed.errors import DataError, UsageError

SIZE = 16
ANATOMICAL = os.path.join(data_path, "anatomical.nii")
EXAMPLE_4D = os.path.join(data_path, "example4d.nii.gz")


def _read(path: Path | str, **kwargs) -> SourceImages:
    return nifti.read(path, ReadOptions(image_size=SIZE, **kwargs))


def _error(path: Path | str, **kwargs) -> str:
    """The one-line message of the DataError reading `path` raises."""
    with pytest.raises(DataError) as info:
        _read(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def _save(path: Path, data: np.ndarray, affine: np.ndarray | None = None, pair: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image_type = nib.Nifti1Pair if pair else nib.Nifti1Image
    nib.save(image_type(data, np.eye(4) if affine is None else affine), path)
    return path


def _volume(shape=(12, 10, 8), seed=0) -> np.ndarray:
    """A random int16 volume with no constant slice."""
    return np.random.default_rng(seed).integers(1, 1000, size=shape).astype(np.int16)


def _expected(plane_ras: np.ndarray, intensity_range: tuple[float, float]) -> np.ndarray:
    """What the reader should give for a canonical plane: radiological display, then preprocess."""
    return preprocess(plane_ras.T[::-1, ::-1][None], image_size=SIZE, intensity_range=intensity_range)[0]


def _robust(volume: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(volume[volume != 0], (0.5, 99.5))
    return float(lo), float(hi)


# --- nibabel's own files --------------------------------------------------------------


def test_anatomical_slices_match_nibabels_canonical_volume():
    canonical = nib.as_closest_canonical(nib.load(ANATOMICAL)).get_fdata()
    nonempty = [k for k in range(canonical.shape[2]) if np.ptp(canonical[:, :, k]) > 0]

    read = _read(ANATOMICAL)

    assert read.files == tuple(f"anatomical.nii#z{k}" for k in nonempty)
    assert read.images.shape == (len(nonempty), SIZE, SIZE, 1)
    assert read.class_names == ("unlabelled",) and read.splits is None and not read.skipped
    middle = nonempty[len(nonempty) // 2]
    expected = _expected(canonical[:, :, middle], _robust(canonical))
    np.testing.assert_allclose(read.images[nonempty.index(middle)], expected, atol=1e-5)
    assert read.raw["bit_depths"] == {"16-bit signed": len(nonempty)}  # the stored big-endian int16


def test_example4d_reads_each_volume_with_its_own_range():
    image = nib.load(EXAMPLE_4D)
    canonical = nib.as_closest_canonical(image).get_fdata()

    read = _read(EXAMPLE_4D, skip_empty_slices=False)

    depth = canonical.shape[2]
    assert read.images.shape == (2 * depth, SIZE, SIZE, 1)
    assert read.files[depth + 5] == "example4d.nii.gz#t1:z5"
    for volume in range(2):
        expected = _expected(canonical[:, :, 5, volume], _robust(canonical[..., volume]))
        np.testing.assert_allclose(read.images[volume * depth + 5], expected, atol=1e-5)


def test_a_folder_of_volumes_goes_through_load(tmp_path):
    _save(tmp_path / "scans" / "b.nii.gz", _volume(seed=1))
    _save(tmp_path / "scans" / "a.nii", _volume(seed=2))

    dataset = data_lib.load(str(tmp_path / "scans"), image_size=SIZE)

    assert dataset.provenance["source"] == "nifti"
    assert dataset.provenance["files"][:2] == ["a.nii#z0", "a.nii#z1"]
    assert dataset.provenance["files"][-1] == "b.nii.gz#z7"
    assert len(dataset.images) == 16


# --- orientation ----------------------------------------------------------------------


def test_a_volume_stored_in_another_orientation_gives_the_same_slices(tmp_path):
    ras = _volume(shape=(12, 10, 8)).astype(np.float32)
    _save(tmp_path / "ras.nii", ras)
    # Stored as (z, x, y) with x running right-to-left and z top-to-bottom: the affine
    # says so, so reorienting must undo it.
    stored = np.transpose(ras[::-1, :, ::-1], (2, 0, 1))
    affine = np.zeros((4, 4))
    affine[0, 1] = -1.0  # stored axis 1 -> R, flipped
    affine[1, 2] = 1.0   # stored axis 2 -> A
    affine[2, 0] = -1.0  # stored axis 0 -> S, flipped
    affine[:3, 3] = (11.0, 0.0, 7.0)
    affine[3, 3] = 1.0
    _save(tmp_path / "odd.nii.gz", stored, affine)
    assert nib.aff2axcodes(affine) == ("I", "L", "A")

    for axis in (0, 1, 2):
        plain = _read(tmp_path / "ras.nii", slice_axis=axis)
        odd = _read(tmp_path / "odd.nii.gz", slice_axis=axis)
        np.testing.assert_array_equal(odd.images, plain.images)
        assert [name.split("#")[1] for name in odd.files] == [name.split("#")[1] for name in plain.files]


def test_slices_are_shown_as_radiologists_view_them(tmp_path):
    volume = np.ones((20, 20, 20), np.float32)
    volume[15:, 15:, 15:] = 100.0  # a block at the patient's right, anterior, superior
    _save(tmp_path / "block.nii", volume)
    half = SIZE // 2

    def bright_quadrant(image):
        quadrants = {"top-left": image[:half, :half], "top-right": image[:half, half:],
                     "bottom-left": image[half:, :half], "bottom-right": image[half:, half:]}
        return max(quadrants, key=lambda name: quadrants[name].mean())

    axial = _read(tmp_path / "block.nii", slice_axis=2, slice_start=0.9, slice_stop=1.0).images[-1, ..., 0]
    coronal = _read(tmp_path / "block.nii", slice_axis=1, slice_start=0.9, slice_stop=1.0).images[-1, ..., 0]
    sagittal = _read(tmp_path / "block.nii", slice_axis=0, slice_start=0.9, slice_stop=1.0).images[-1, ..., 0]
    assert bright_quadrant(axial) == "top-left"     # anterior up, patient's right on the left
    assert bright_quadrant(coronal) == "top-left"   # superior up, patient's right on the left
    assert bright_quadrant(sagittal) == "top-left"  # superior up, anterior on the left


# --- slice selection and intensities ----------------------------------------------------


def test_slice_range_keeps_the_slices_overlapping_the_fraction(tmp_path):
    _save(tmp_path / "v.nii", _volume(shape=(10, 10, 20)))

    assert _read(tmp_path / "v.nii", slice_start=0.25, slice_stop=0.5).files == tuple(f"v.nii#z{k}" for k in range(5, 10))
    assert _read(tmp_path / "v.nii", slice_start=0.26, slice_stop=0.3).files == ("v.nii#z5",)
    assert len(_read(tmp_path / "v.nii", slice_axis=0, slice_start=0.0, slice_stop=0.5).files) == 5


def test_empty_slices_are_skipped_unless_asked_for(tmp_path):
    volume = np.zeros((10, 10, 10), np.int16)
    volume[2:8, 2:8, 3:7] = 500
    _save(tmp_path / "v.nii", volume)

    assert _read(tmp_path / "v.nii").files == tuple(f"v.nii#z{k}" for k in range(3, 7))
    every = _read(tmp_path / "v.nii", skip_empty_slices=False)
    assert len(every.files) == 10
    assert np.all(every.images[0] == -1.0)  # an all-background slice is black
    message = _error(tmp_path / "v.nii", slice_start=0.0, slice_stop=0.3)
    assert "v.nii" in message and "no non-empty slice among slices 0..2 along z" in message


def test_robust_range_ignores_an_outlier_and_the_background(tmp_path):
    volume = np.zeros((10, 10, 10), np.float32)
    volume[1:9, 1:9, :] = np.linspace(1.0, 100.0, 8 * 8 * 10).reshape(8, 8, 10)
    volume[5, 5, 5] = 1e6
    _save(tmp_path / "v.nii", volume)

    read = _read(tmp_path / "v.nii", skip_empty_slices=False)

    # Without the robust range the outlier would map everything else to near black.
    assert read.images.max() == 1.0 and np.percentile(read.images, 95) > 0.5


def test_window_maps_hounsfield_units(tmp_path):
    volume = np.full((10, 10, 3), -1000, np.int16)
    volume[:, :, 1] = 40
    volume[:, :, 2] = 3000
    _save(tmp_path / "ct.nii.gz", volume)

    read = _read(tmp_path / "ct.nii.gz", window="40,80", skip_empty_slices=False)
    np.testing.assert_allclose(read.images[:, 0, 0, 0], [-1.0, 0.0, 1.0], atol=1e-6)
    brain = _read(tmp_path / "ct.nii.gz", window="brain", skip_empty_slices=False)
    np.testing.assert_allclose(brain.images, read.images)
    with pytest.raises(UsageError):
        _read(tmp_path / "ct.nii.gz", window="40")


def test_scl_slope_and_intercept_are_applied(tmp_path):
    image = nib.Nifti1Image(np.arange(3 * 10 * 10, dtype=np.int16).reshape(10, 10, 3), np.eye(4))
    image.header.set_slope_inter(2.0, -1000.0)
    nib.save(image, tmp_path / "ct.nii.gz")
    stored = np.asanyarray(nib.load(tmp_path / "ct.nii.gz").dataobj.get_unscaled())

    read = _read(tmp_path / "ct.nii.gz", window="-900,400")  # HU -1100..-700

    expected = _expected(stored[:, :, 1] * 2.0 - 1000.0, (-1100.0, -700.0))
    np.testing.assert_allclose(read.images[1], expected, atol=1e-5)


def test_two_d_nifti_and_single_slice_4d(tmp_path):
    _save(tmp_path / "flat.nii", _volume(shape=(20, 16)))
    _save(tmp_path / "series.nii", _volume(shape=(20, 16, 1, 3)))

    flat = _read(tmp_path / "flat.nii", slice_axis=0)  # the one slice, whatever the axis
    assert flat.files == ("flat.nii",)
    assert flat.raw["sizes"] == {"20x16": 1}  # width: the R-L axis (20), height: A-P (16)
    assert _read(tmp_path / "series.nii").files == ("series.nii#t0", "series.nii#t1", "series.nii#t2")


def test_analyze_style_pair_reads_like_a_single_file(tmp_path):
    data = _volume()
    _save(tmp_path / "pair" / "scan.hdr", data, pair=True)
    _save(tmp_path / "single" / "scan.nii", data)

    pair = _read(tmp_path / "pair")  # the .img is read through its .hdr, not reported

    np.testing.assert_array_equal(pair.images, _read(tmp_path / "single").images)
    assert pair.files[0] == "scan.hdr#z0" and not pair.skipped


def test_uncompressed_volumes_are_memory_mapped_not_loaded(tmp_path, monkeypatch):
    _save(tmp_path / "v.nii", _volume(shape=(12, 10, 8)))
    _save(tmp_path / "v.nii.gz", _volume(shape=(12, 10, 8)))
    opened = []
    original = nifti._Voxels.__init__

    def recording(self, path):
        original(self, path)
        opened.append((os.path.basename(path), isinstance(self._array, np.memmap)))

    monkeypatch.setattr(nifti._Voxels, "__init__", recording)
    assert len(_read(tmp_path / "v.nii", slice_axis=0).files) == 12
    assert len(_read(tmp_path / "v.nii.gz", slice_axis=0).files) == 12
    assert opened == [("v.nii", True), ("v.nii.gz", False)]  # gzip: decompressed once


# --- masks ----------------------------------------------------------------------------


def _lesion_volume(tmp_path: Path, name: str, lesion_slices: range, mask_name: str) -> None:
    _save(tmp_path / name, _volume(shape=(10, 10, 6)))
    mask = np.zeros((10, 10, 6), np.uint8)
    for k in lesion_slices:
        mask[4, 4, k] = 1
    _save(tmp_path / mask_name, mask)


def test_masks_beside_volumes_label_each_slice(tmp_path):
    _lesion_volume(tmp_path, "a.nii.gz", range(2, 4), "a_seg.nii.gz")
    _lesion_volume(tmp_path, "b.nii", range(5, 6), "b_Mask.nii")
    (tmp_path / "a.json").write_text("{}")  # BIDS sidecar: metadata, ignored (not skipped)

    read = _read(tmp_path)

    assert read.class_names == ("no_lesion", "lesion")
    assert len(read.files) == 12 and not read.skipped
    lesion = {name for name, label in zip(read.files, read.labels) if label == 1}
    assert lesion == {"a.nii.gz#z2", "a.nii.gz#z3", "b.nii#z5"}


def test_every_volume_needs_a_mask_once_some_have_one(tmp_path):
    _lesion_volume(tmp_path, "a.nii.gz", range(2, 4), "a_label.nii.gz")
    _save(tmp_path / "c.nii.gz", _volume(shape=(10, 10, 6)))

    assert "c.nii.gz: has no mask beside it" in _error(tmp_path)
    read = _read(tmp_path, skip_bad=True)
    assert [rel for rel, _ in read.skipped] == ["c.nii.gz"]
    assert len(read.files) == 6


def test_class_folders_win_over_masks(tmp_path):
    _lesion_volume(tmp_path / "tumor", "a.nii", range(2, 4), "a_seg.nii")
    _save(tmp_path / "healthy" / "b.nii", _volume(shape=(10, 10, 6)))

    read = _read(tmp_path)

    assert read.class_names == ("healthy", "tumor")
    assert not any("_seg" in name for name in read.files)
    assert read.raw["notes"] == ["1 mask file(s) ignored: class folders give the labels"]
    assert sorted(set(read.labels.tolist())) == [0, 1]


def test_single_file_with_a_mask_beside_it(tmp_path):
    _lesion_volume(tmp_path, "a.nii", range(0, 1), "a_labels.nii.gz")

    read = _read(tmp_path / "a.nii")

    assert read.class_names == ("no_lesion", "lesion")
    assert read.labels.tolist() == [1, 0, 0, 0, 0, 0]


# --- bad input --------------------------------------------------------------------------


def _bad_files(root: Path) -> dict[str, str]:
    """Writes one malformed input per kind; returns file name -> expected words in the reason."""
    root.mkdir(parents=True, exist_ok=True)
    good = _volume(shape=(10, 10, 4))
    raw = (root / "good.nii")
    _save(raw, good)
    content = raw.read_bytes()
    raw.unlink()
    (root / "empty.nii").write_bytes(b"")
    (root / "truncated.nii").write_bytes(content[: len(content) // 2])
    compressed = gzip.compress(content)
    (root / "truncated_gz.nii.gz").write_bytes(compressed[: len(compressed) * 2 // 3])
    (root / "broken_gz.nii.gz").write_bytes(compressed[:40])
    large = gzip.compress(_save(root / "large.nii", _volume(shape=(64, 64, 16))).read_bytes())
    (root / "large.nii").unlink()
    (root / "cut_data.nii.gz").write_bytes(large[: len(large) // 2])  # the header reads, the voxels do not
    (root / "plain_gz.nii.gz").write_bytes(content)  # named .gz, not compressed
    (root / "garbage.nii").write_bytes(b"hello world " * 40)
    (root / "notes.bin").write_text("hello")
    nan_volume = good.astype(np.float32)
    nan_volume[0, 0, :3] = np.nan
    nan_volume[1, 1, 0] = np.inf
    _save(root / "nan.nii", nan_volume)
    _save(root / "zeros.nii.gz", np.zeros((10, 10, 4), np.int16))
    _save(root / "vector.nii", np.ones((10, 10, 4, 1, 3), np.float32))
    _save(root / "complex.nii", np.ones((10, 10, 4), np.complex64))
    _save(root / "tiny.nii", _volume(shape=(4, 5, 6)))
    _save(root / "line.nii", _volume(shape=(30, 1, 1)))
    _save(root / "orphan_seg.nii.gz", np.ones((10, 10, 4), np.uint8))
    _save(root / "lonely.hdr", good, pair=True)
    (root / "lonely.img").unlink()
    _save(root / "headless.hdr", good, pair=True)
    (root / "headless.hdr").unlink()
    return {
        "empty.nii": "empty file (0 bytes)",
        "truncated.nii": "truncated: the header promises",
        "truncated_gz.nii.gz": "truncated or corrupt gzip stream (EOFError",
        "broken_gz.nii.gz": "truncated or corrupt gzip stream",
        "cut_data.nii.gz": "truncated or corrupt voxel data (EOFError",
        "plain_gz.nii.gz": "truncated or corrupt gzip stream (BadGzipFile",
        "garbage.nii": "not a NIfTI file",
        "notes.bin": "not a NIfTI file",
        "nan.nii": "4 of 400 voxels are NaN or infinite",
        "zeros.nii.gz": "every voxel is 0",
        "vector.nii": "is 5-D",
        "complex.nii": "voxel type complex64",
        "tiny.nii": "smaller than the 8×8 minimum",
        "line.nii": "not an image",
        "orphan_seg.nii.gz": "no orphan.nii or orphan.nii.gz beside it",
        "lonely.hdr": "header without its .img data file",
        "headless.img": ".img data file without its .hdr header",
    }


def test_each_bad_file_alone_is_a_one_line_error_naming_it(tmp_path):
    expected = _bad_files(tmp_path)
    for name, reason in expected.items():
        if name in ("orphan_seg.nii.gz", "headless.img", "notes.bin"):
            continue  # only recognised as bad in a folder (alone they are read as given)
        message = _error(tmp_path / name)
        assert message.startswith(str(tmp_path / name)) and reason in message, message


def test_skip_bad_lists_every_bad_file_in_a_folder(tmp_path):
    expected = _bad_files(tmp_path / "data")
    _save(tmp_path / "data" / "fine.nii", _volume(shape=(10, 10, 4)))

    with pytest.raises(DataError):
        _read(tmp_path / "data")
    read = _read(tmp_path / "data", skip_bad=True)

    assert read.files == tuple(f"fine.nii#z{k}" for k in range(4))
    skipped = dict(read.skipped)
    assert set(skipped) == set(expected)
    for name, reason in expected.items():
        assert reason in skipped[name], (name, skipped[name])


def test_mask_shape_mismatch_and_a_bad_4d_volume(tmp_path):
    _save(tmp_path / "masked" / "a.nii", _volume(shape=(10, 10, 6)))
    _save(tmp_path / "masked" / "a_seg.nii", np.ones((10, 10, 5), np.uint8))
    assert "mask a_seg.nii has shape 10×10×5 (in RAS+ order), the volume 10×10×6" in _error(tmp_path / "masked")

    series = _volume(shape=(10, 10, 4, 3)).astype(np.float32)
    series[..., 1] = np.nan
    _save(tmp_path / "series.nii", series)
    read = _read(tmp_path / "series.nii", skip_bad=True)
    assert read.skipped == (("series.nii#t1", "400 of 400 voxels are NaN or infinite"),)
    assert read.files[0] == "series.nii#t0:z0" and read.files[-1] == "series.nii#t2:z3"


def test_missing_path(tmp_path):
    assert _error(tmp_path / "nope.nii") == f"{tmp_path / 'nope.nii'}: no such file or folder"
