"""Exported images are valid files that say they are synthetic and carry nothing of any input."""

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom import config
from pydicom.dataset import validate_file_meta
from pydicom.uid import UID, SecondaryCaptureImageStorage

from jaxmed.cli import main
from jaxmed.data import load
from jaxmed.data.preprocess import from_model_range
from jaxmed.export import SYNTHETIC_NOTE, write_images

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"

# Attributes of the DICOM PS3.15 basic confidentiality profile (Annex E, Table E.1-1)
# that the test input below has, plus its UIDs.
IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientWeight", "PatientSize",
               "InstitutionName", "StationName", "NameOfPhysiciansReadingStudy", "OperatorsName",
               "DeviceSerialNumber", "StudyDate", "StudyTime", "InstanceCreationDate", "InstanceCreationTime",
               "InstanceCreatorUID", "StudyID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
               "FrameOfReferenceUID", "ImageComments", "ReferringPhysicianName", "AccessionNumber")


@pytest.fixture
def strict_pydicom(monkeypatch):
    """pydicom raises, instead of warning, on any value that breaks its VR's rules."""
    monkeypatch.setattr(config.settings, "writing_validation_mode", config.RAISE)
    monkeypatch.setattr(config.settings, "reading_validation_mode", config.RAISE)


def header_bytes(path):
    """The bytes of a DICOM file before its pixel data (pixel bytes may hold any text by chance)."""
    with open(path, "rb") as handle:
        pydicom.dcmread(handle, stop_before_pixels=True)
        end = handle.tell()
    return Path(path).read_bytes()[:end]


def assert_valid_synthetic_dicom(path):
    ds = pydicom.dcmread(path)  # strict_pydicom: any invalid value raises here
    validate_file_meta(ds.file_meta, enforce_standard=True)
    assert Path(path).read_bytes()[128:132] == b"DICM"
    assert ds.SOPClassUID == SecondaryCaptureImageStorage == ds.file_meta.MediaStorageSOPClassUID
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID):
        assert UID(uid).is_valid
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"] and ds.ConversionType == "SYN"
    assert ds.ImageComments == SYNTHETIC_NOTE and ds.DerivationDescription.startswith(SYNTHETIC_NOTE)
    assert "SYNTHETIC" in ds.SeriesDescription and ds.Manufacturer == "jaxmed"
    assert ds.BurnedInAnnotation == "NO" and ds.PatientIdentityRemoved == "YES"
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime"):
        assert ds[keyword].value in ("", None)  # Type 2: present, empty
    return ds


def test_dicom_export_is_valid_and_marked_synthetic(tmp_path, strict_pydicom):
    images = np.random.default_rng(0).uniform(-1, 1, (3, 16, 12, 1)).astype(np.float32)
    paths = write_images(images, tmp_path / "a", "dcm", source="runs/gan step 7 seed 0")
    assert [path.name for path in paths] == ["sample_00000.dcm", "sample_00001.dcm", "sample_00002.dcm"]
    datasets = [assert_valid_synthetic_dicom(path) for path in paths]
    for ds, image in zip(datasets, images):
        assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.BitsStored == 8
        np.testing.assert_array_equal(ds.pixel_array, np.round(from_model_range(image[..., 0]) * 255))
    assert "runs/gan step 7" in datasets[0].DerivationDescription
    # One fresh study and series per export, one fresh instance per image.
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1 and len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == 3
    assert [ds.InstanceNumber for ds in datasets] == [1, 2, 3]
    again = pydicom.dcmread(write_images(images[:1], tmp_path / "b", "dcm")[0])
    assert again.StudyInstanceUID != datasets[0].StudyInstanceUID
    assert again.SOPInstanceUID not in {ds.SOPInstanceUID for ds in datasets}


def test_rgb_images_export_as_rgb_dicom(tmp_path, strict_pydicom):
    images = np.random.default_rng(1).uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)
    ds = assert_valid_synthetic_dicom(write_images(images, tmp_path, "dcm")[0])
    assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
    np.testing.assert_array_equal(ds.pixel_array, np.round(from_model_range(images[0]) * 255))


def test_dicom_made_from_a_real_scan_carries_none_of_its_identifying_values(tmp_path, strict_pydicom):
    source = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm", stop_before_pixels=True)
    values = {keyword: str(source[keyword].value) for keyword in IDENTIFYING
              if keyword in source and len(str(source[keyword].value)) >= 4}
    assert {"PatientName", "PatientID", "StudyInstanceUID", "InstitutionName"} <= set(values)  # a real test
    dataset = load(str(PYDICOM_FILES / "MR_small.dcm"), image_size=32)
    [path] = write_images(dataset.images, tmp_path, "dcm", source="MR_small preprocessed")
    exported = assert_valid_synthetic_dicom(path)
    header = header_bytes(path)
    for keyword, value in values.items():
        assert value.encode() not in header, keyword
    # Of the profile's attributes only the empty Type 2 ones, fresh UIDs and the synthetic note are there.
    for keyword in IDENTIFYING:
        if keyword in exported and exported[keyword].value not in ("", None):
            assert keyword.endswith("InstanceUID") or exported[keyword].value == SYNTHETIC_NOTE, keyword


def test_png_export_says_it_is_synthetic(tmp_path):
    [path] = write_images(np.zeros((1, 8, 8, 1), np.float32), tmp_path, "png", source="x")
    assert Image.open(path).text["Description"] == SYNTHETIC_NOTE


@pytest.mark.slow
def test_sample_format_dcm_through_the_cli(tmp_path, strict_pydicom):
    workdir = str(tmp_path / "w")
    tiny = ["--image-size", "32", "--batch-size", "8", "--set", "data.n=16", "--set", "latent_dim=8",
            "--set", "eval.n=8", "--set", "sample.n=4", "--no-progress"]
    assert main(["train", "gan", "--data", "phantom:brain", "--workdir", workdir, "--steps", "1", *tiny]) == 0
    for image_format in ("dcm", "png"):
        assert main(["sample", "--workdir", workdir, "--n", "2", "--out", str(tmp_path / image_format),
                     "--format", image_format, "--seed", "3"]) == 0
    paths = sorted((tmp_path / "dcm").iterdir())
    assert [path.name for path in paths] == ["sample_00000.dcm", "sample_00001.dcm"]
    for path in paths:
        ds = assert_valid_synthetic_dicom(path)
        assert (ds.Rows, ds.Columns) == (32, 32)
        assert workdir in ds.DerivationDescription
        # The same samples as the PNG export of the same seed.
        png = np.asarray(Image.open(tmp_path / "png" / path.with_suffix(".png").name))
        np.testing.assert_array_equal(ds.pixel_array, png)
