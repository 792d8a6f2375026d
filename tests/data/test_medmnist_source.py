"""Tests for jaxmed.data.sources.medmnist: MedMNIST-style .npz archives."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from jaxmed import data as data_lib
from jaxmed.data.preprocess import preprocess
from jaxmed.data.sources import medmnist
from jaxmed.data.sources.common import ReadOptions, SourceImages
from jaxmed.errors import DataError

SIZE = 16


def _read(path: Path, **kwargs) -> SourceImages:
    return medmnist.read(path, ReadOptions(image_size=kwargs.pop("image_size", SIZE), **kwargs))


def _error(path: Path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        _read(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def _images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _save(path: Path, compressed: bool = True, **arrays) -> Path:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def _medmnist(path: Path, side: int = 28, rgb: bool = False, compressed: bool = True) -> Path:
    """A small MedMNIST-format archive: 6 train, 2 val, 3 test images, labels (N, 1) uint8."""
    shape = (side, side, 3) if rgb else (side, side)
    arrays = {}
    for seed, (split, n) in enumerate((("train", 6), ("val", 2), ("test", 3))):
        arrays[f"{split}_images"] = _images(n, shape, seed)
        arrays[f"{split}_labels"] = (np.arange(n) % 3).astype(np.uint8)[:, None]
    return _save(path, compressed, **arrays)


# --- reading ----------------------------------------------------------------------------


@pytest.mark.parametrize("side", [28, 64])
@pytest.mark.parametrize("rgb", [False, True])
def test_gray_and_rgb_at_any_size(tmp_path, side, rgb):
    path = _medmnist(tmp_path / "d.npz", side=side, rgb=rgb)
    with np.load(path) as stored:
        train = stored["train_images"]

    read = _read(path, channels=3 if rgb else 1)

    assert read.images.shape == (11, SIZE, SIZE, 3 if rgb else 1)
    assert read.splits.tolist() == ["train"] * 6 + ["val"] * 2 + ["test"] * 3
    assert read.files[:2] == ("train[0]", "train[1]") and read.files[-1] == "test[2]"
    assert read.labels.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 0, 1, 2]
    assert read.class_names == ("0", "1", "2")
    expected = preprocess(train[3:4], image_size=SIZE, channels=3 if rgb else 1)[0]  # uint8 / 255
    np.testing.assert_allclose(read.images[3], expected, atol=1e-6)
    assert read.raw["sizes"] == {f"{side}x{side}": 11}


def test_uncompressed_archive_and_a_subset_of_splits_through_load(tmp_path):
    path = _save(tmp_path / "d.npz", compressed=False, test_images=_images(4, (28, 28)),
                 test_labels=np.array([1, 0, 1, 1]))

    dataset = data_lib.load(str(path), image_size=SIZE)

    assert dataset.provenance["source"] == "npz"
    assert dataset.provenance["splits"] == ["test"] * 4
    assert dataset.labels.tolist() == [1, 0, 1, 1]


def test_class_names_array_names_the_classes(tmp_path):
    path = _save(tmp_path / "d.npz", train_images=_images(3, (28, 28)), train_labels=np.array([0, 1, 1]),
                 class_names=np.array(["benign", "malignant"]))
    assert _read(path).class_names == ("benign", "malignant")

    short = _save(tmp_path / "short.npz", train_images=_images(3, (28, 28)), train_labels=np.array([0, 2, 1]),
                  class_names=np.array(["benign", "malignant"]))
    assert "class_names: names 2 classes but the labels go up to 2" in _error(short)


def test_volumes_are_read_as_slices_along_the_frame_axis(tmp_path):
    volumes = np.zeros((2, 10, 12, 14), np.uint8)
    volumes[:, 2:8] = _images(2, (6, 12, 14))  # frames 0-1 and 8-9 are empty
    path = _save(tmp_path / "d3.npz", train_images=volumes, train_labels=np.array([[0], [1]]))

    read = _read(path)

    assert read.files[:3] == ("train[0]#z2", "train[0]#z3", "train[0]#z4") and len(read.files) == 12
    assert read.labels.tolist() == [0] * 6 + [1] * 6
    assert read.raw["sizes"] == {"14x12": 12}  # stored (H, W) planes
    np.testing.assert_allclose(read.images[0], preprocess(volumes[0, 2][None], image_size=SIZE)[0], atol=1e-6)

    across = _read(path, slice_axis=0, skip_empty_slices=False, slice_start=0.0, slice_stop=0.5)
    assert across.files[:2] == ("train[0]#x0", "train[0]#x1") and len(across.files) == 14
    assert across.raw["sizes"] == {"12x10": 14}  # (D, H) planes


def test_gray_volumes_with_a_channel_axis(tmp_path):
    path = _save(tmp_path / "d.npz", val_images=_images(1, (9, 9, 9, 1)), val_labels=np.array([[0]]))
    assert len(_read(path).files) == 9


# --- bad input --------------------------------------------------------------------------


def test_multi_label_is_refused_with_a_clear_message(tmp_path):
    path = _save(tmp_path / "chest.npz", train_images=_images(4, (28, 28)),
                 train_labels=np.zeros((4, 14), np.uint8))
    message = _error(path)
    assert "train_labels: multi-label array of shape (4, 14)" in message and "ChestMNIST" in message


@pytest.mark.parametrize("arrays, expected", [
    ({"x_train": np.zeros((2, 28, 28))}, "no MedMNIST arrays"),
    ({"train_images": np.zeros((2, 28, 28), np.uint8)}, "train_images: has no matching train_labels"),
    ({"test_labels": np.zeros(2, np.uint8)}, "test_labels: has no matching test_images"),
    ({"train_images": np.zeros((3, 28, 28), np.uint8), "train_labels": np.zeros(2, np.uint8)},
     "train_labels: has 2 labels for the 3 images of train_images"),
    ({"train_images": np.zeros((2, 28, 28), np.uint8), "train_labels": np.zeros(2, np.float32)},
     "train_labels: dtype float32; expected integer class indices"),
    ({"train_images": np.zeros((2, 28, 28), np.uint8), "train_labels": np.array([0, -1])},
     "train_labels: negative label -1"),
    ({"train_images": np.zeros((2, 28, 28), np.uint8), "train_labels": np.zeros((2, 1, 1), np.uint8)},
     "train_labels: shape (2, 1, 1)"),
    ({"train_images": np.zeros((2, 28), np.uint8), "train_labels": np.zeros(2, np.uint8)},
     "train_images: shape (2, 28)"),
    ({"train_images": np.array([["a"] * 28] * 28)[None], "train_labels": np.zeros(1, np.uint8)},
     "train_images: dtype <U1"),
    ({"train_images": np.zeros((0, 28, 28), np.uint8), "train_labels": np.zeros(0, np.uint8)},
     "train_images: has no images"),
])
def test_malformed_archives_give_one_line_errors_naming_the_key(tmp_path, arrays, expected):
    path = _save(tmp_path / "bad.npz", **arrays)
    assert expected in _error(path)
    assert expected in _error(path, skip_bad=True)  # whole-file problems are not skippable


def test_files_that_are_not_intact_archives(tmp_path):
    good = _medmnist(tmp_path / "good.npz").read_bytes()
    (tmp_path / "text.npz").write_text("not an archive")
    (tmp_path / "truncated.npz").write_bytes(good[: len(good) // 2])
    (tmp_path / "empty.npz").write_bytes(b"")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    (tmp_path / "plain.npz").write_bytes((tmp_path / "plain.npy").read_bytes())
    with zipfile.ZipFile(tmp_path / "pickled.npz", "w") as archive:
        with archive.open("train_images.npy", "w") as member:
            np.save(member, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        with archive.open("train_labels.npy", "w") as member:
            np.save(member, np.zeros(1, np.uint8))
    # A member cut short inside an otherwise valid zip (stored, so the zip still opens).
    with zipfile.ZipFile(tmp_path / "short.npz", "w") as archive:
        with archive.open("train_images.npy", "w") as member:
            header = np.lib.format.header_data_from_array_1_0(np.zeros((5, 28, 28), np.uint8))
            np.lib.format.write_array_header_1_0(member, header)
            member.write(bytes(28 * 28 * 2))
        with archive.open("train_labels.npy", "w") as member:
            np.save(member, np.zeros(5, np.uint8))

    for name in ("text.npz", "truncated.npz", "empty.npz", "plain.npz"):
        assert "not a zip/.npz archive, or truncated" in _error(tmp_path / name), name
    assert "train_images: holds Python objects" in _error(tmp_path / "pickled.npz")
    assert "train_images: truncated: expected 3920 bytes of array data, found 1568" in _error(tmp_path / "short.npz")
    assert _error(tmp_path / "missing.npz") == f"{tmp_path / 'missing.npz'}: no such file"


def test_corrupt_compressed_member(tmp_path):
    path = _medmnist(tmp_path / "d.npz")
    content = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("train_images.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    content[start + 40: start + 80] = bytes(40)  # damage the deflate stream of train_images
    path.write_bytes(bytes(content))

    message = _error(path)
    assert "train_images: truncated or corrupt member" in message


def test_nan_and_out_of_range_images_are_skippable_entries(tmp_path):
    images = np.random.default_rng(0).random((4, 28, 28)).astype(np.float32)
    images[1, 3, 3] = np.nan
    images[2] *= 255.0
    path = _save(tmp_path / "f.npz", train_images=images, train_labels=np.zeros(4, np.uint8))

    assert "train[1]: preprocess: images contain NaN or infinite values" in _error(path)
    read = _read(path, skip_bad=True)
    assert read.files == ("train[0]", "train[3]")
    assert [entry for entry, _ in read.skipped] == ["train[1]", "train[2]"]
    assert "must be in [0, 1]" in read.skipped[1][1]


def test_large_arrays_are_streamed_in_chunks(tmp_path, monkeypatch):
    path = _medmnist(tmp_path / "d.npz", side=28)
    monkeypatch.setattr(medmnist, "_CHUNK_BYTES", 2 * 28 * 28)  # two images per chunk
    reads = []
    original = medmnist._read_exact

    def counting(archive, key, stream, shape, dtype, fortran):
        reads.append((key, shape))
        return original(archive, key, stream, shape, dtype, fortran)

    monkeypatch.setattr(medmnist, "_read_exact", counting)
    read = _read(path)

    image_reads = [shape for key, shape in reads if key == "train_images"]
    assert image_reads == [(2, 28, 28)] * 3
    np.testing.assert_array_equal(read.labels[:6], [0, 1, 2, 0, 1, 2])
