"""Tests for jaxmed.data.sources.folder: reading Kaggle-style folders of scans."""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxmed.data.sources import folder
from jaxmed.data.sources import common, layout
from jaxmed.data.sources.common import ReadOptions, SourceImages
from jaxmed.errors import DataError, UsageError

SIZE = 16


def _save(path: Path, image: Image.Image | np.ndarray, fmt: str | None = None, **kwargs) -> Path:
    """Writes an image (creating folders) and returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image.save(path, format=fmt, **kwargs)
    return path


def _gray(value: int, size: tuple[int, int] = (SIZE, SIZE)) -> Image.Image:
    return Image.new("L", size, value)


def _u8(value: int) -> float:
    """The model-range value of an 8-bit intensity."""
    return value / 255 * 2 - 1


def _two_classes(root: Path) -> None:
    """A small good folder: 2 images of class "no", 2 of class "yes"."""
    _save(root / "no" / "n1.png", _gray(10))
    _save(root / "no" / "n2.png", _gray(20))
    _save(root / "yes" / "y1.png", _gray(200))
    _save(root / "yes" / "y2.png", _gray(220))


def _read(root: Path, **kwargs) -> SourceImages:
    return folder.read(root, ReadOptions(image_size=SIZE, **kwargs))


def _error(root: Path, **kwargs) -> str:
    """The message of the DataError that reading `root` raises; checks it is one line."""
    with pytest.raises(DataError) as info:
        _read(root, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    return message


@contextlib.contextmanager
def _deadline(seconds: int):
    """Fails the test instead of hanging if the block runs longer than `seconds`."""

    def _timeout(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- layouts, formats and modes ---------------------------------------------------------


def test_class_folders_with_mixed_sizes_modes_and_formats(tmp_path):
    root = tmp_path / "brain_tumor"
    rgb = np.zeros((40, 30, 3), np.uint8)
    rgb[..., 0] = 255
    palette = Image.new("P", (24, 24))
    palette.putpalette([0, 0, 255] * 256)  # every index is pure blue
    gray_palette = _gray(90, (20, 20)).convert("P")
    _save(root / "yes" / "a_gray.jpg", _gray(128, (50, 37)))
    _save(root / "yes" / "b_rgb.jpg", rgb)
    _save(root / "yes" / "c_rgba.png", Image.new("RGBA", (12, 9), (0, 255, 0, 30)))
    _save(root / "yes" / "d_palette.png", palette)
    _save(root / "yes" / "patient7" / "deep" / "e_nested.bmp", _gray(60, (33, 33)))
    _save(root / "no" / "f_16bit.png", np.full((21, 21), 65535, np.uint16))
    _save(root / "no" / "g_16bit.tif", np.full((19, 25), 0, np.uint16))
    _save(root / "no" / "h_gray_palette.png", gray_palette)
    _save(root / "no" / "i_rgb.bmp", Image.new("RGB", (17, 17), (0, 0, 0)))
    _save(root / "no" / "j_la.png", Image.new("LA", (10, 14), (255, 0)))
    _save(root / "no" / "k_bilevel.tif", Image.new("1", (9, 9), 1))
    _save(root / "no" / "l_gray.tiff", _gray(30, (64, 8)))

    out = _read(root)

    assert out.class_names == ("no", "yes")
    assert out.files == (
        "no/f_16bit.png", "no/g_16bit.tif", "no/h_gray_palette.png", "no/i_rgb.bmp", "no/j_la.png",
        "no/k_bilevel.tif", "no/l_gray.tiff",
        "yes/a_gray.jpg", "yes/b_rgb.jpg", "yes/c_rgba.png", "yes/d_palette.png", "yes/patient7/deep/e_nested.bmp",
    )
    assert out.labels.dtype == np.int32
    np.testing.assert_array_equal(out.labels, [0] * 7 + [1] * 5)
    assert out.images.shape == (12, SIZE, SIZE, 1) and out.images.dtype == np.float32
    assert out.images.min() >= -1.0 and out.images.max() <= 1.0
    assert out.splits is None and out.skipped == ()
    # Every test image is one flat colour, so each must come out as one known value.
    expected = [
        1.0, -1.0, _u8(90), -1.0, 1.0,  # 16-bit max, 16-bit zero, gray palette, black, LA (alpha dropped)
        1.0, _u8(30),  # bilevel white, gray TIFF
        _u8(128), _u8(0.299 * 255), _u8(0.587 * 255), _u8(0.114 * 255), _u8(60),  # BT.601 luma for colour
    ]
    per_image = out.images.reshape(12, -1)
    np.testing.assert_allclose(per_image.mean(axis=1), expected, atol=0.02)  # JPEG is lossy
    np.testing.assert_allclose(per_image.std(axis=1), 0.0, atol=0.02)


def test_channels_3_keeps_colour_and_replicates_gray(tmp_path):
    _save(tmp_path / "a" / "red.png", Image.new("RGB", (SIZE, SIZE), (255, 0, 0)))
    _save(tmp_path / "b" / "gray.png", _gray(51))

    out = folder.read(tmp_path, ReadOptions(image_size=SIZE, channels=3))

    assert out.images.shape == (2, SIZE, SIZE, 3)
    np.testing.assert_allclose(out.images[0, 0, 0], [1.0, -1.0, -1.0], atol=1e-6)
    np.testing.assert_allclose(out.images[1, 0, 0], [_u8(51)] * 3, atol=1e-6)


def test_flat_folder_is_unlabelled(tmp_path):
    for name, value in [("b.png", 40), ("a.jpg", 120), ("c.bmp", 250)]:
        _save(tmp_path / name, _gray(value, (SIZE + 7, SIZE)))

    out = _read(tmp_path)

    assert out.class_names == ("unlabelled",)
    assert out.files == ("a.jpg", "b.png", "c.bmp")
    np.testing.assert_array_equal(out.labels, [0, 0, 0])
    assert out.splits is None
    np.testing.assert_allclose(out.images.reshape(3, -1).mean(axis=1), [_u8(120), _u8(40), _u8(250)], atol=0.02)


def test_training_testing_layout_gives_splits_and_union_of_classes(tmp_path):
    _save(tmp_path / "Training" / "glioma" / "1.png", _gray(10))
    _save(tmp_path / "Training" / "no_tumor" / "2.png", _gray(20))
    _save(tmp_path / "TESTING" / "no_tumor" / "3.png", _gray(30))
    _save(tmp_path / "TESTING" / "pituitary" / "4.png", _gray(40))  # only in the test split
    _save(tmp_path / "val" / "glioma" / "5.png", _gray(50))

    out = _read(tmp_path)

    assert out.class_names == ("glioma", "no_tumor", "pituitary")
    assert out.files == ("TESTING/no_tumor/3.png", "TESTING/pituitary/4.png", "Training/glioma/1.png",
                         "Training/no_tumor/2.png", "val/glioma/5.png")
    assert out.splits is not None
    assert out.splits.tolist() == ["test", "test", "train", "train", "val"]
    np.testing.assert_array_equal(out.labels, [1, 2, 0, 1, 0])
    np.testing.assert_allclose(out.images[:, 0, 0, 0], [_u8(v) for v in (30, 40, 10, 20, 50)], atol=1e-6)


def test_split_folders_without_classes_are_unlabelled(tmp_path):
    _save(tmp_path / "train" / "a.png", _gray(1))
    _save(tmp_path / "test" / "b.png", _gray(2))

    out = _read(tmp_path)

    assert out.class_names == ("unlabelled",)
    assert out.splits.tolist() == ["test", "train"]
    np.testing.assert_array_equal(out.labels, [0, 0])


def test_split_folders_mixed_with_class_folders_are_an_error(tmp_path):
    _save(tmp_path / "Training" / "yes" / "a.png", _gray(1))
    _save(tmp_path / "yes" / "b.png", _gray(2))

    message = _error(tmp_path)

    assert str(tmp_path) in message and "Training" in message and "yes" in message


def test_two_folders_for_one_split_are_an_error(tmp_path):
    _save(tmp_path / "train" / "yes" / "a.png", _gray(1))
    _save(tmp_path / "Training" / "yes" / "b.png", _gray(2))

    assert "'train' split" in _error(tmp_path)


def test_16bit_uses_full_uint16_range_and_8bit_uses_255(tmp_path):
    values = np.array([[0, 32768, 65535, 255]], np.uint16).repeat(8, axis=0).repeat(2, axis=1)  # 8x8
    _save(tmp_path / "sixteen" / "a.png", values)
    _save(tmp_path / "sixteen" / "b.tif", values)
    _save(tmp_path / "eight" / "c.png", np.array([[0, 255]], np.uint8).repeat(8, axis=0).repeat(4, axis=1))
    # A 32-bit integer TIFF holding 16-bit data is scaled like 16-bit.
    _save(tmp_path / "sixteen" / "d.tif", values.astype(np.int32))

    out = folder.read(tmp_path, ReadOptions(image_size=8))  # no resampling at this size

    assert out.files == ("eight/c.png", "sixteen/a.png", "sixteen/b.tif", "sixteen/d.tif")
    np.testing.assert_allclose(out.images[0, 0, [0, 7], 0], [-1.0, 1.0], atol=1e-6)
    for i in (1, 2, 3):
        row = out.images[i, 0, ::2, 0]
        np.testing.assert_allclose(row, [-1.0, 32768 / 65535 * 2 - 1, 1.0, 255 / 65535 * 2 - 1], atol=1e-6)


def test_float_tiff_in_unit_range_is_read_and_outside_is_bad(tmp_path):
    _save(tmp_path / "a" / "ok.tif", np.full((SIZE, SIZE), 0.75, np.float32))
    _save(tmp_path / "a" / "wide.tif", np.full((SIZE, SIZE), 1000.0, np.float32))

    message = _error(tmp_path)
    out = _read(tmp_path, skip_bad=True)

    assert "wide.tif" in message and "outside [0, 1]" in message
    assert out.files == ("a/ok.tif",)
    np.testing.assert_allclose(out.images, 0.5, atol=1e-6)
    assert out.skipped[0][0] == "a/wide.tif"


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((SIZE, SIZE), np.uint8)
    stored[:, : SIZE // 2] = 255  # left half white as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    _save(tmp_path / "x" / "a.png", stored, exif=exif)

    out = _read(tmp_path)

    # Rotated clockwise, the white left half becomes the top half.
    assert out.images[0, 1, SIZE // 2, 0] > 0.9 and out.images[0, SIZE - 2, SIZE // 2, 0] < -0.9


def test_content_not_extension_decides_format(tmp_path):
    png_bytes = io.BytesIO()
    _gray(77).save(png_bytes, format="PNG")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "really_png.jpg").write_bytes(png_bytes.getvalue())
    (tmp_path / "a" / "no_extension").write_bytes(png_bytes.getvalue())

    out = _read(tmp_path)

    assert out.files == ("a/no_extension", "a/really_png.jpg")
    np.testing.assert_allclose(out.images, _u8(77), atol=1e-6)  # decoded losslessly, not as JPEG


def test_hidden_and_system_files_are_ignored_silently(tmp_path):
    _two_classes(tmp_path)
    (tmp_path / "yes" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "yes" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0junk")
    (tmp_path / "no" / "thumbs.db").write_bytes(b"junk")
    (tmp_path / "no" / "._n1.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "x.txt").write_text("notes")
    (tmp_path / "__MACOSX" / "yes").mkdir(parents=True)
    (tmp_path / "__MACOSX" / "yes" / "._y1.png").write_bytes(b"junk")

    out = _read(tmp_path)  # skip_bad=False: any of these, if read, would raise

    assert out.class_names == ("no", "yes")
    assert out.files == ("no/n1.png", "no/n2.png", "yes/y1.png", "yes/y2.png")
    assert out.skipped == ()


# --- bad entries: DataError naming the file, or skipped with a reason ------------------


def _truncated(kind: str) -> bytes:
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format=kind)
    data = buffer.getvalue()
    return data[: len(data) // 2]


def _bad_crc_png() -> bytes:
    buffer = io.BytesIO()
    _gray(5).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    idat = data.index(b"IDAT")
    length = int.from_bytes(data[idat - 4 : idat], "big")
    # Corrupts only the IDAT checksum: the pixels still decode, so only a CRC check
    # (Pillow's verify) notices the file is damaged.
    data[idat + 4 + length] ^= 0xFF
    return bytes(data)


def _multipage_tiff() -> bytes:
    buffer = io.BytesIO()
    _gray(1).save(buffer, format="TIFF", save_all=True, append_images=[_gray(2), _gray(3)])
    return buffer.getvalue()


def _tiny_png() -> bytes:
    buffer = io.BytesIO()
    _gray(1, (4, 4)).save(buffer, format="PNG")
    return buffer.getvalue()


def _make_file(data: bytes):
    def make(path: Path) -> None:
        path.write_bytes(data)

    return make


def _make_symlink_to(target: str):
    def make(path: Path) -> None:
        path.symlink_to(target)

    return make


def _make_dir_loop(path: Path) -> None:
    path.symlink_to(path.parent, target_is_directory=True)  # yes/loop -> yes


# (name inside the "yes" class folder, how to make it, words the reason must contain)
BAD_CASES = [
    ("truncated.jpg", _make_file(_truncated("JPEG")), "truncated or corrupt image"),
    ("truncated.png", _make_file(_truncated("PNG")), "truncated or corrupt image"),
    ("bad_crc.png", _make_file(_bad_crc_png()), "truncated or corrupt image"),
    ("empty.png", _make_file(b""), "truncated or corrupt image (empty file, 0 bytes)"),
    ("text.png", _make_file(b"this is not an image\n"), "truncated or corrupt image"),
    ("notes.dat", _make_file(b"patient list\n"), "not an image file"),  # .txt is a document: ignored
    ("scan.dcm", _make_file(b"\x00" * 128 + b"DICM"), "not an image file"),
    ("tiny.png", _make_file(_tiny_png()), "image is 4×4, smaller than the 8×8 minimum"),
    ("stack.tif", _make_file(_multipage_tiff()), "3 frames"),
    ("dangling.png", _make_symlink_to("does_not_exist.png"), "broken symbolic link"),
    ("self.png", _make_symlink_to("self.png"), "symlink loop"),
    ("loop", _make_dir_loop, "symlink loop"),
    ("bad\nname.png", _make_file(b"junk"), "truncated or corrupt image"),
]


@pytest.mark.parametrize(("name", "make", "reason"), BAD_CASES, ids=[case[0] for case in BAD_CASES])
def test_bad_entry_raises_naming_it_or_is_skipped(tmp_path, name, make, reason):
    _two_classes(tmp_path)
    make(tmp_path / "yes" / name)

    with _deadline(10):
        message = _error(tmp_path)
        out = _read(tmp_path, skip_bad=True)

    shown = name.replace("\n", "\\n")  # the message stays one line even for odd file names
    assert message.startswith(f"{tmp_path}/yes/{shown}: ")
    assert reason in message
    assert out.files == ("no/n1.png", "no/n2.png", "yes/y1.png", "yes/y2.png")
    assert len(out.images) == 4
    np.testing.assert_array_equal(out.labels, [0, 0, 1, 1])
    assert len(out.skipped) == 1
    assert out.skipped[0][0] == f"yes/{name}"
    assert reason in out.skipped[0][1]


def test_skip_bad_lists_every_bad_file_in_order(tmp_path):
    _two_classes(tmp_path)
    (tmp_path / "yes" / "z.png").write_bytes(b"")
    (tmp_path / "no" / "m.jpg").write_bytes(_truncated("JPEG"))
    (tmp_path / "stray.png").write_bytes(_tiny_png())  # beside the class folders

    out = _read(tmp_path, skip_bad=True)

    assert [path for path, _ in out.skipped] == ["no/m.jpg", "stray.png", "yes/z.png"]
    assert "outside any class folder" in out.skipped[1][1]
    assert len(out.files) == 4 and out.images.shape[0] == 4


def test_symlinked_class_folder_is_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    _save(elsewhere / "a.png", _gray(9))
    root = tmp_path / "root"
    _save(root / "real" / "b.png", _gray(8))
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)

    out = _read(root)

    assert out.class_names == ("linked", "real")
    assert out.files == ("linked/a.png", "real/b.png")


def test_symlink_loops_and_fifos_do_not_hang(tmp_path):
    _two_classes(tmp_path)
    (tmp_path / "yes" / "sub").mkdir()
    (tmp_path / "yes" / "sub" / "up").symlink_to(tmp_path / "yes", target_is_directory=True)
    (tmp_path / "yes" / "sub" / "root").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(tmp_path / "no" / "pipe.png")  # opening a FIFO for reading would block forever

    with _deadline(10):
        out = _read(tmp_path, skip_bad=True)

    assert out.files == ("no/n1.png", "no/n2.png", "yes/y1.png", "yes/y2.png")
    assert [path for path, _ in out.skipped] == ["no/pipe.png", "yes/sub/root", "yes/sub/up"]
    assert "not a regular file" in out.skipped[0][1]
    assert all("symlink loop" in reason for _, reason in out.skipped[1:])


def test_permission_error_on_a_file(tmp_path, monkeypatch):
    _two_classes(tmp_path)
    locked = tmp_path / "yes" / "locked.png"
    _save(locked, _gray(3))
    real_open = open

    # Tests may run as root, which chmod cannot lock out; fail the open the way the OS would.
    def fake_open(path, *args, **kwargs):
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(common, "open", fake_open, raising=False)

    message = _error(tmp_path)
    out = _read(tmp_path, skip_bad=True)

    assert message == f"{locked}: permission denied"
    assert out.skipped == (("yes/locked.png", "permission denied"),)
    assert len(out.files) == 4


def test_permission_error_on_a_subfolder(tmp_path, monkeypatch):
    _two_classes(tmp_path)
    locked = tmp_path / "yes" / "locked_dir"
    _save(locked / "c.png", _gray(3))
    real_scandir = os.scandir

    def fake_scandir(path="."):
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(layout.os, "scandir", fake_scandir)

    message = _error(tmp_path)
    out = _read(tmp_path, skip_bad=True)

    assert message == f"{locked}: cannot list folder: permission denied"
    assert out.skipped == (("yes/locked_dir", "cannot list folder: permission denied"),)


# --- folder-level problems: errors even with skip_bad ----------------------------------


@pytest.mark.parametrize("skip_bad", [False, True])
def test_missing_root(tmp_path, skip_bad):
    missing = tmp_path / "nope"
    assert _error(missing, skip_bad=skip_bad) == f"{missing}: no such folder"


@pytest.mark.parametrize("skip_bad", [False, True])
def test_root_is_a_file(tmp_path, skip_bad):
    file = _save(tmp_path / "scan.png", _gray(1))
    message = _error(file, skip_bad=skip_bad)
    assert message.startswith(f"{file}: ") and "not a folder" in message


@pytest.mark.parametrize("skip_bad", [False, True])
def test_empty_root_and_root_with_only_ignored_files(tmp_path, skip_bad):
    assert _error(tmp_path, skip_bad=skip_bad) == f"{tmp_path}: no images found"
    (tmp_path / ".DS_Store").write_bytes(b"x")
    (tmp_path / "Thumbs.db").write_bytes(b"x")
    assert _error(tmp_path, skip_bad=skip_bad) == f"{tmp_path}: no images found"


@pytest.mark.parametrize("skip_bad", [False, True])
def test_empty_class_folder_is_an_error_even_with_skip_bad(tmp_path, skip_bad):
    _two_classes(tmp_path)
    (tmp_path / "maybe").mkdir()
    (tmp_path / "maybe" / ".DS_Store").write_bytes(b"x")  # ignored, so the folder counts as empty

    message = _error(tmp_path, skip_bad=skip_bad)

    assert message.startswith(f"{tmp_path}/maybe: class folder has no images")
    assert "cannot be trained on" in message


def test_class_folder_with_only_bad_files_is_an_error_with_skip_bad(tmp_path):
    _two_classes(tmp_path)
    (tmp_path / "maybe").mkdir()
    (tmp_path / "maybe" / "a.png").write_bytes(b"")

    message = _error(tmp_path, skip_bad=True)

    assert message.startswith(f"{tmp_path}/maybe: class folder has no readable images")
    assert "maybe/a.png" in message


def test_empty_split_folder_is_an_error(tmp_path):
    _save(tmp_path / "Training" / "yes" / "a.png", _gray(1))
    (tmp_path / "Testing").mkdir()

    assert _error(tmp_path, skip_bad=True) == f"{tmp_path}/Testing: split folder has no images"


def test_all_files_skipped_is_an_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.dat").write_text("x")

    message = _error(tmp_path, skip_bad=True)

    assert message.startswith(f"{tmp_path}: no readable images (2 skipped")


@pytest.mark.parametrize(("kwargs", "word"), [({"channels": 2}, "channels"), ({"image_size": 0}, "image_size")])
def test_invalid_options_are_usage_errors(tmp_path, kwargs, word):
    _two_classes(tmp_path)
    with pytest.raises(UsageError, match=word):
        folder.read(tmp_path, ReadOptions(**{"image_size": SIZE, **kwargs}))


# --- determinism and memory -------------------------------------------------------------


def _write_shuffled(root: Path, seed: int) -> None:
    names = [f"{cls}/{sub}{i}.png" for cls in ("b", "a") for sub in ("", "x/", "x y/") for i in range(3)]
    random.Random(seed).shuffle(names)  # creation order differs between the two copies
    for k, name in enumerate(names):
        value = int(zlib.crc32(name.encode()) % 256)  # content tied to the name, not to creation order
        _save(root / name, _gray(value, (SIZE + k, SIZE)))


def test_order_is_deterministic_and_sorted_by_relative_path(tmp_path):
    _write_shuffled(tmp_path / "one", seed=1)
    _write_shuffled(tmp_path / "two", seed=2)

    first, second = _read(tmp_path / "one"), _read(tmp_path / "two")

    assert first.files == second.files
    assert list(first.files) == sorted(first.files, key=lambda path: path.split("/"))
    assert first.files[:3] == ("a/0.png", "a/1.png", "a/2.png")
    np.testing.assert_array_equal(first.labels, second.labels)
    # Same names, so same pixels once sizes are equalised (sizes differ with creation order).
    for a, b in zip(first.images, second.images):
        assert abs(float(a.mean()) - float(b.mean())) < 0.01
    np.testing.assert_array_equal(_read(tmp_path / "one").images, first.images)


def test_images_are_preprocessed_one_at_a_time(tmp_path, monkeypatch):
    _two_classes(tmp_path)
    batch_sizes = []
    real_preprocess = common.preprocess

    def spy(images, **kwargs):
        batch_sizes.append(len(images))
        return real_preprocess(images, **kwargs)

    monkeypatch.setattr(common, "preprocess", spy)

    out = _read(tmp_path)

    assert batch_sizes == [1, 1, 1, 1]
    assert out.images.shape == (4, SIZE, SIZE, 1)
