"""Acceptance: `jaxmed data inspect` and `jaxmed train classifier` on each kind of real data.

The data: a folder of class sub-folders with JPEGs of mixed sizes; a class-folder tree
of the DICOM files that ship inside pydicom and nibabel (CT in ct/, MR in mr/); the
NIfTI files that ship inside nibabel (anatomical.nii, example4d.nii.gz) as two classes;
a MedMNIST-format .npz made here. Every run uses the same tiny classifier (32 px, 2
classes, batch 4), so it compiles once.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from PIL import Image

from jaxmed.cli import main

SITE = Path(pydicom.__file__).parent.parent
CLASSIFIER = ["--image-size", "32", "--epochs", "1", "--batch-size", "4", "--set", "width=8",
              "--set", "eval.bootstrap_resamples=20", "--set", "optimizer.schedule=constant",
              "--set", "optimizer.warmup_fraction=0", "--no-progress"]


def jpeg_folder(root: Path) -> str:
    """Classes dark/ and bright/, 10 JPEGs each, sizes from 24x24 to 90x61."""
    rng = np.random.default_rng(0)
    for class_name, mean in (("bright", 170), ("dark", 80)):
        (root / class_name).mkdir(parents=True)
        for index in range(10):
            width, height = rng.integers(24, 91, 2)
            pixels = np.clip(rng.normal(mean, 40, (height, width, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / class_name / f"{index}.jpg", quality=85)
    return str(root)


def dicom_tree(root: Path) -> str:
    """Every CT and MR file in pydicom's and nibabel's test data, in ct/ and mr/."""
    candidates = sorted((SITE / "pydicom" / "data" / "test_files").glob("*.dcm"))
    candidates += sorted((SITE / "nibabel").rglob("*.dcm"))
    for path in candidates:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                modality = pydicom.dcmread(path, stop_before_pixels=True).get("Modality")
        except pydicom.errors.InvalidDicomError:
            continue
        if modality in ("CT", "MR"):
            folder = root / modality.lower()
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, folder / "_".join(path.relative_to(SITE).parts))  # nibabel has two 0.dcm
    return str(root)


def nifti_tree(root: Path) -> str:
    data = Path(nibabel.__file__).parent / "tests" / "data"
    for class_name, name in (("anatomical", "anatomical.nii"), ("functional", "example4d.nii.gz")):
        (root / class_name).mkdir(parents=True)
        shutil.copy(data / name, root / class_name / name)
    return str(root)


def medmnist_npz(root: Path) -> str:
    rng = np.random.default_rng(1)
    arrays = {}
    for split, count in (("train", 24), ("val", 6), ("test", 8)):
        labels = np.arange(count) % 2
        images = rng.integers(0, 120, (count, 28, 28), dtype=np.uint8) + (labels * 100).astype(np.uint8)[:, None, None]
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels.reshape(-1, 1)
    root.mkdir()
    np.savez_compressed(root / "tinymnist.npz", **arrays)
    return str(root / "tinymnist.npz")


def inspect(capsys, spec: str, *extra: str) -> dict:
    status = main(["data", "inspect", spec, "--image-size", "32", "--json", *extra])
    out, err = capsys.readouterr()
    assert status == 0, err
    return json.loads(out)


def train(capsys, spec: str, workdir: Path, *extra: str) -> dict:
    status = main(["train", "classifier", "--data", spec, "--workdir", str(workdir), *CLASSIFIER, *extra])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "test accuracy" in err
    return json.loads((workdir / "eval.json").read_text())


@pytest.mark.parametrize("kind", [pytest.param("jpeg", marks=pytest.mark.slow), pytest.param("dicom", marks=pytest.mark.slow),
                                  pytest.param("nifti", marks=pytest.mark.slow), "medmnist"])
def test_inspect_and_train_on_real_data(kind, tmp_path, capsys):
    if kind == "jpeg":
        spec = jpeg_folder(tmp_path / "jpeg")
        report = inspect(capsys, spec)
        assert report["source"] == "images" and report["classes"] == {"bright": 10, "dark": 10}
        assert len(report["raw"]["sizes"]) > 10 and report["raw"]["bit_depths"] == {"8-bit": 20}
        evaluation = train(capsys, spec, tmp_path / "run")
    elif kind == "dicom":
        spec = dicom_tree(tmp_path / "dicom")
        report = inspect(capsys, spec, "--skip-bad")
        assert report["source"] == "dicom" and set(report["classes"]) == {"ct", "mr"}
        assert report["classes"]["ct"] >= 3 and report["classes"]["mr"] >= 8
        # Two of the shipped MR files are deliberately broken: listed, not silently dropped.
        skipped = {Path(item["file"]).name for item in report["skipped"]}
        assert skipped == {"nibabel_nicom_tests_data_csa_slice_norm.dcm", "pydicom_data_test_files_MR_truncated.dcm"}
        # MR_small ships in 8 transfer syntaxes: the same image, found as exact duplicates.
        assert report["duplicates"]["exact"]["images"] >= 8
        assert report["duplicates"]["exact"]["across_classes"]["pairs"] == 0
        assert {"16-bit", "16-bit signed"} <= set(report["raw"]["bit_depths"])
        evaluation = train(capsys, spec, tmp_path / "run", "--skip-bad")
        listed = json.loads((tmp_path / "run" / "skipped.json").read_text())
        assert {Path(item["file"]).name for item in listed["skipped"]} == skipped
    elif kind == "nifti":
        spec = nifti_tree(tmp_path / "nifti")
        report = inspect(capsys, spec)
        assert report["source"] == "nifti" and set(report["classes"]) == {"anatomical", "functional"}
        assert report["classes"]["functional"] > report["classes"]["anatomical"] > 10  # 4-D: two volumes
        # One scan per class cannot give a split that keeps scans whole: said in one line...
        status = main(["train", "classifier", "--data", spec, "--workdir", str(tmp_path / "refused"), *CLASSIFIER])
        assert status == 1 and "split.by_subject=false" in capsys.readouterr().err
        # ...and the user may split slices independently instead, knowingly.
        evaluation = train(capsys, spec, tmp_path / "run", "--set", "split.by_subject=false")
    else:
        spec = medmnist_npz(tmp_path / "npz")
        report = inspect(capsys, spec)
        assert report["source"] == "npz" and report["total"] == 38
        assert report["splits"] == {"test": {"0": 4, "1": 4}, "train": {"0": 12, "1": 12}, "val": {"0": 3, "1": 3}}
        evaluation = train(capsys, spec, tmp_path / "run")
        assert evaluation["split_sizes"]["test"] == 8  # the archive's own test split
    assert evaluation["n"] == evaluation["split_sizes"]["test"] > 0
    assert 0.0 <= evaluation["accuracy"] <= 1.0
    assert evaluation["class_names"] == sorted(report["classes"])
