"""A corpus of malformed inputs, generated here, each giving its documented result.

Every case runs through the command line (`jaxmed data inspect`). Without ``--skip-bad``
each one stops with exit status 1 and exactly one line on stderr naming the file (or
folder) and the problem. With ``--skip-bad``, a problem with one entry becomes a listed
skip (in the JSON report, with its reason) and the command succeeds; problems with the
source as a whole (nothing readable, an empty class, a missing path) stay one-line
errors. Usage errors exit with status 2, also on one line. Nothing gives a traceback.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import UID

from jaxmed.cli import main

CT_FILE = Path(get_testdata_file("CT_small.dcm"))
MR_FILE = Path(get_testdata_file("MR_small.dcm"))


# --- building blocks -------------------------------------------------------------------


def png_bytes(seed: int = 0, size: tuple[int, int] = (24, 24)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size[::-1], dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_bytes(seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def image_folder(tmp_path: Path) -> Path:
    """Two classes of two good 24x24 PNGs each: what every folder case spoils."""
    root = tmp_path / "data"
    for label, class_name in enumerate(("a", "b")):
        (root / class_name).mkdir(parents=True)
        for index in range(2):
            (root / class_name / f"good{index}.png").write_bytes(png_bytes(10 * label + index))
    return root


def with_bad_file(name: str, content: bytes | Callable[[Path], None]):
    """A builder: the good folder plus one bad entry in class a."""

    def build(tmp_path: Path) -> str:
        root = image_folder(tmp_path)
        if callable(content):
            content(root / "a" / name)
        else:
            (root / "a" / name).write_bytes(content)
        return str(root)

    return build


def tiff_writer(pixels: np.ndarray, **save_options):
    def write(path: Path) -> None:
        Image.fromarray(pixels).save(path, "TIFF", **save_options)

    return write


def multipage_tiff(path: Path) -> None:
    pages = [Image.fromarray(np.full((16, 16), value, np.uint8)) for value in (10, 200)]
    pages[0].save(path, "TIFF", save_all=True, append_images=pages[1:])


def symlink_loop(path: Path) -> None:
    os.symlink(path.parent, path)  # a link in class a to class a itself


def broken_symlink(path: Path) -> None:
    os.symlink(path.parent / "nowhere.png", path)


def fifo(path: Path) -> None:
    os.mkfifo(path)


def corrupt_png_crc() -> bytes:
    data = bytearray(png_bytes(3))
    data[-20] ^= 0xFF  # inside the IDAT chunk: its CRC no longer matches
    return bytes(data)


def empty_folder(tmp_path: Path) -> str:
    (tmp_path / "empty").mkdir()
    return str(tmp_path / "empty")


def empty_class_folder(tmp_path: Path) -> str:
    root = image_folder(tmp_path)
    (root / "c").mkdir()
    return str(root)


def class_of_bad_files(tmp_path: Path) -> str:
    root = image_folder(tmp_path)
    (root / "c").mkdir()
    (root / "c" / "x.png").write_bytes(b"")
    (root / "c" / "y.png").write_bytes(b"not a png")
    return str(root)


def file_outside_classes(tmp_path: Path) -> str:
    root = image_folder(tmp_path)
    (root / "stray.png").write_bytes(png_bytes(4))
    return str(root)


def good_folder(tmp_path: Path) -> str:
    return str(image_folder(tmp_path))


def missing_path(tmp_path: Path) -> str:
    return str(tmp_path / "does" / "not" / "exist")


def image_file_for_folder(tmp_path: Path) -> str:
    path = tmp_path / "scan.png"
    path.write_bytes(png_bytes())
    return str(path)


# MedMNIST-style .npz


def npz(arrays: dict[str, np.ndarray], name: str = "data.npz"):
    def build(tmp_path: Path) -> str:
        np.savez(tmp_path / name, **arrays)
        return str(tmp_path / name)

    return build


def good_splits(n: int = 6, dtype=np.uint8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "test"):
        images = rng.integers(0, 256, (n, 16, 16), dtype=np.uint8)
        arrays[f"{split}_images"] = images.astype(dtype) / (255.0 if dtype != np.uint8 else 1)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(n, 1)
    return arrays


def npz_with_nan(tmp_path: Path) -> str:
    arrays = good_splits(dtype=np.float32)
    arrays["train_images"][2, 5, 5] = np.nan
    return npz(arrays)(tmp_path)


def npz_truncated(tmp_path: Path) -> str:
    path = Path(npz(good_splits())(tmp_path))
    path.write_bytes(path.read_bytes()[:700])
    return str(path)


def npz_not_a_zip(tmp_path: Path) -> str:
    (tmp_path / "data.npz").write_text("train_images,train_labels\n1,2\n")
    return str(tmp_path / "data.npz")


def npz_with_pickle(tmp_path: Path) -> str:
    arrays = good_splits()
    arrays["train_labels"] = np.array([{"label": 0}] * 6, dtype=object)
    return npz(arrays)(tmp_path)


# DICOM


def dicom_folder(tmp_path: Path, bad_name: str, bad: bytes | Callable[[Path], None]) -> str:
    """Classes ct/ (CT_small.dcm) and mr/ (MR_small.dcm), plus a bad file in ct/."""
    root = tmp_path / "dicom"
    for class_name, source in (("ct", CT_FILE), ("mr", MR_FILE)):
        (root / class_name).mkdir(parents=True)
        shutil.copy(source, root / class_name / source.name)
    if callable(bad):
        bad(root / "ct" / bad_name)
    else:
        (root / "ct" / bad_name).write_bytes(bad)
    return str(root)


def dicom_case(bad_name: str, bad):
    return lambda tmp_path: dicom_folder(tmp_path, bad_name, bad)


def dicom_without_pixels(path: Path) -> None:
    dataset = pydicom.dcmread(CT_FILE)
    del dataset.PixelData
    dataset.save_as(path, enforce_file_format=True)


def dicom_with_unsupported_codec(path: Path) -> None:
    """A CT slice claiming MPEG-2 video compression, which no installed plugin decodes."""
    dataset = pydicom.dcmread(CT_FILE)
    dataset.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")  # MPEG2 Main Profile @ Main Level
    dataset.PixelData = pydicom.encaps.encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    dataset["PixelData"].VR = "OB"
    dataset["PixelData"].is_undefined_length = True
    dataset.save_as(path, enforce_file_format=True)


# NIfTI


def nifti_volume(seed: int = 0, shape=(20, 20, 6)) -> nib.Nifti1Image:
    data = np.random.default_rng(seed).normal(100, 20, shape).astype(np.float32)
    return nib.Nifti1Image(data, np.eye(4))


def nifti_truncated(tmp_path: Path) -> str:
    root = tmp_path / "nifti"
    root.mkdir()
    nib.save(nifti_volume(), root / "vol.nii")
    nib.save(nifti_volume(1), root / "cut.nii")
    (root / "cut.nii").write_bytes((root / "cut.nii").read_bytes()[:2000])
    return str(root)


def nifti_garbage_gz(tmp_path: Path) -> str:
    root = tmp_path / "nifti"
    root.mkdir()
    nib.save(nifti_volume(), root / "vol.nii.gz")
    (root / "junk.nii.gz").write_bytes(gzip.compress(b"this is not a NIfTI header" * 20))
    return str(root)


def nifti_with_nan(tmp_path: Path) -> str:
    root = tmp_path / "nifti"
    root.mkdir()
    nib.save(nifti_volume(), root / "vol.nii.gz")
    volume = nifti_volume(1)
    data = volume.get_fdata(dtype=np.float32)
    data[3, 4, 2] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), root / "nan.nii.gz")
    return str(root)


def nifti_mask_shape_mismatch(tmp_path: Path) -> str:
    root = tmp_path / "nifti"
    root.mkdir()
    for stem, seed in (("case1", 0), ("case2", 1)):
        nib.save(nifti_volume(seed), root / f"{stem}.nii.gz")
    mask = np.zeros((20, 20, 6), np.uint8)
    mask[5:9, 5:9, 2:4] = 1
    nib.save(nib.Nifti1Image(mask, np.eye(4)), root / "case1_mask.nii.gz")
    nib.save(nib.Nifti1Image(mask[:, :10], np.eye(4)), root / "case2_mask.nii.gz")
    return str(root)


# --- the corpus ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """A malformed input.

    Attributes:
      name: the test id.
      build: makes the input under a temporary folder and returns the spec.
      names: text the error line must contain to name the culprit (a file or folder).
      problem: a fragment of the error line that says what is wrong (lower case).
      skipped: the entry `--skip-bad` lists (relative path), or None if the problem is
        with the source as a whole and stays an error.
      args: extra command-line arguments.
      status: the exit status without --skip-bad.
    """

    name: str
    build: Callable[[Path], str]
    names: str
    problem: str
    skipped: str | None = None
    args: tuple[str, ...] = ()
    status: int = 1


CASES = [
    # Image folders.
    Case("zero-byte file", with_bad_file("zero.png", b""), "zero.png", "empty file", "a/zero.png"),
    Case("truncated png", with_bad_file("cut.png", png_bytes()[:60]), "cut.png", "truncated", "a/cut.png"),
    Case("truncated jpeg", with_bad_file("cut.jpg", jpeg_bytes()[:400]), "cut.jpg", "truncated", "a/cut.jpg"),
    Case("png with a bad checksum", with_bad_file("crc.png", corrupt_png_crc()), "crc.png", "corrupt", "a/crc.png"),
    Case("text named .png", with_bad_file("notes.png", b"patient list\nname,id\n"), "notes.png",
         "content is not", "a/notes.png"),
    Case("binary garbage", with_bad_file("blob.bin", bytes(range(256)) * 4), "blob.bin", "not an image file",
         "a/blob.bin"),
    Case("image too small", with_bad_file("tiny.png", png_bytes(size=(4, 4))), "tiny.png", "smaller than",
         "a/tiny.png"),
    Case("float tiff with nan", with_bad_file("nan.tif", tiff_writer(np.full((16, 16), np.nan, np.float32))),
         "nan.tif", "nan", "a/nan.tif"),
    Case("float tiff out of range", with_bad_file("hot.tif", tiff_writer(np.full((16, 16), 7.5, np.float32))),
         "hot.tif", "outside [0, 1]", "a/hot.tif"),
    Case("multi-page tiff", with_bad_file("stack.tif", multipage_tiff), "stack.tif", "2 frames", "a/stack.tif"),
    Case("symlink loop", with_bad_file("loop", symlink_loop), "loop", "symlink loop", "a/loop"),
    Case("broken symlink", with_bad_file("gone.png", broken_symlink), "gone.png", "broken symbolic link",
         "a/gone.png"),
    # Running as root, permissions do not stop reads; a named pipe is the unreadable entry instead.
    Case("named pipe", with_bad_file("pipe.png", fifo), "pipe.png", "not a regular file", "a/pipe.png"),
    Case("file outside class folders", file_outside_classes, "stray.png", "outside any class folder", "stray.png"),
    Case("empty folder", empty_folder, "empty", "no images"),
    Case("empty class folder", empty_class_folder, "c", "class folder has no images"),
    Case("class with only bad files", class_of_bad_files, "x.png", "empty file"),
    Case("path that does not exist", missing_path, "does/not/exist", "no such file or folder"),
    Case("image file where a folder is expected", image_file_for_folder, "scan.png", "not a folder"),
    # MedMNIST .npz.
    Case("npz that is not a zip", npz_not_a_zip, "data.npz", "not a zip"),
    Case("npz missing labels", npz({"train_images": good_splits()["train_images"]}), "data.npz", "train_labels"),
    Case("npz label count mismatch", npz({**good_splits(), "test_labels": np.zeros((5, 1), np.int64)}),
         "data.npz", "5 labels for the 6 images"),
    Case("npz truncated", npz_truncated, "data.npz", "truncated"),
    Case("npz with pickled labels", npz_with_pickle, "data.npz", "pickle"),
    Case("npz multi-label", npz({**good_splits(), "train_labels": np.zeros((6, 3), np.int64)}), "data.npz",
         "multi-label"),
    Case("npz nan image", npz_with_nan, "data.npz", "nan", "train[2]"),
    # DICOM.
    Case("truncated dicom", dicom_case("cut.dcm", CT_FILE.read_bytes()[:3000]), "cut.dcm", "truncated", "ct/cut.dcm"),
    Case("text named .dcm", dicom_case("readme.dcm", b"exported by PACS\n" * 20), "readme.dcm", "not a dicom file",
         "ct/readme.dcm"),
    Case("dicom without pixel data", dicom_case("nopixels.dcm", dicom_without_pixels), "nopixels.dcm",
         "no pixel data", "ct/nopixels.dcm"),
    Case("dicom with an unsupported codec", dicom_case("mpeg.dcm", dicom_with_unsupported_codec), "mpeg.dcm",
         "mpeg2", "ct/mpeg.dcm"),
    # NIfTI.
    Case("truncated nifti", nifti_truncated, "cut.nii", "truncated", "cut.nii"),
    Case("garbage nii.gz", nifti_garbage_gz, "junk.nii.gz", "not a nifti file", "junk.nii.gz"),
    Case("nifti with nan voxels", nifti_with_nan, "nan.nii.gz", "nan", "nan.nii.gz"),
    Case("nifti mask shape mismatch", nifti_mask_shape_mismatch, "case2", "shape", "case2.nii.gz"),
    # Usage errors: one line, exit status 2.
    Case("unknown --set key", good_folder, "data.colour",
         "unknown data key", args=("--set", "data.colour=red"), status=2),
    Case("bad window preset", dicom_case("extra.dcm", MR_FILE.read_bytes()), "hounsfield", "window",
         args=("--set", "data.window=hounsfield"), status=2),
    Case("bad slice axis", good_folder, "slice_axis", "must be 0, 1 or 2", args=("--set", "data.slice_axis=3"),
         status=2),
]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the command, whether it returns or argparse exits."""
    try:
        status = main(list(argv))
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(case: Case, status: int, out: str, err: str) -> None:
    lines = err.strip().splitlines()
    assert status == case.status, err
    assert len(lines) == 1, err
    assert "Traceback" not in err and out == ""
    assert case.names in lines[0], lines[0]
    assert case.problem in lines[0].lower(), lines[0]


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 30
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_malformed_input(case, tmp_path, capsys):
    spec = case.build(tmp_path)
    base = ["data", "inspect", spec, "--image-size", "16", *case.args]
    assert_one_line_error(case, *run(capsys, *base))

    status, out, err = run(capsys, *base, "--skip-bad", "--json")
    if case.skipped is None:
        assert_one_line_error(case, status, out, err)
        return
    assert status == 0, err
    report = json.loads(out)
    reasons = {item["file"]: item["reason"] for item in report["skipped"]}
    assert case.skipped in reasons, reasons
    assert case.problem in reasons[case.skipped].lower()
    assert report["total"] >= 2  # the good images were read


@pytest.mark.slow
@pytest.mark.multiprocess
def test_no_traceback_from_the_console_command(tmp_path):
    """Two real processes: a stop on bad input, and the same input skipped."""
    spec = with_bad_file("cut.png", png_bytes()[:60])(tmp_path)
    command = [sys.executable, "-m", "jaxmed", "data", "inspect", spec, "--image-size", "16"]
    stopped = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 1 and stopped.stdout == ""
    assert stopped.stderr.count("\n") == 1 and "cut.png" in stopped.stderr and "Traceback" not in stopped.stderr
    skipped = subprocess.run([*command, "--skip-bad", "--json"], capture_output=True, text=True, timeout=300)
    assert skipped.returncode == 0, skipped.stderr
    assert "Traceback" not in skipped.stderr
    assert [item["file"] for item in json.loads(skipped.stdout)["skipped"]] == ["a/cut.png"]
