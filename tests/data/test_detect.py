"""Which source reads a path: content first, names as the fallback."""

import gzip

import numpy as np
import pytest
from PIL import Image

from jaxmed import data as data_lib
from jaxmed.data.sources import detect
from jaxmed.errors import DataError, UsageError


def _dicom_bytes() -> bytes:
    return b"\0" * 128 + b"DICM" + b"\0" * 300


def _nifti1_bytes() -> bytes:
    header = bytearray(352)
    header[344:348] = b"n+1\0"
    return bytes(header)


def test_files_are_recognised_by_content_before_name(tmp_path):
    (tmp_path / "scan").write_bytes(_dicom_bytes())  # no extension: the DICM marker decides
    (tmp_path / "volume.bin").write_bytes(_nifti1_bytes())  # NIfTI-1 magic at byte 344
    (tmp_path / "named.dcm").write_text("not really DICOM")  # the DICOM reader will report it
    (tmp_path / "v.nii.gz").write_bytes(gzip.compress(_nifti1_bytes()))  # compressed: by name
    (tmp_path / "d.npz").write_bytes(b"PK\x03\x04")
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("hello")

    kinds = {name: detect.file_kind(str(tmp_path / name))
             for name in ("scan", "volume.bin", "named.dcm", "v.nii.gz", "d.npz", "a.png", "notes.txt")}

    assert kinds == {"scan": "dicom", "volume.bin": "nifti", "named.dcm": "dicom", "v.nii.gz": "nifti",
                     "d.npz": "npz", "a.png": "images", "notes.txt": None}


def test_a_folder_is_read_by_the_source_of_its_first_recognised_file(tmp_path):
    series = tmp_path / "dicom" / "ct" / "patient1"
    series.mkdir(parents=True)
    (series.parent / "README.txt").write_text("export notes")  # unrecognised files do not decide
    (series / "IM0001").write_bytes(_dicom_bytes())
    images = tmp_path / "images" / "yes"
    images.mkdir(parents=True)
    Image.new("L", (8, 8)).save(images / "a.jpg")
    (tmp_path / "images" / ".DS_Store").write_bytes(_dicom_bytes())  # litter is ignored

    assert detect.folder_kind(str(tmp_path / "dicom")) == "dicom"
    assert detect.folder_kind(str(tmp_path / "images")) == "images"


@pytest.mark.parametrize(("make", "fragment"), [
    (lambda path: None, "no such file or folder"),
    (lambda path: path.write_text("hello"), "not a data file jaxmed reads"),
])
def test_unreadable_specs_are_one_line_errors_naming_the_path(tmp_path, make, fragment):
    path = tmp_path / "thing.txt"
    make(path)

    with pytest.raises(DataError) as error:
        data_lib.load(str(path), image_size=16)

    message = str(error.value)
    assert message.startswith(str(path)) and fragment in message and "\n" not in message


def test_an_image_folder_goes_through_the_folder_source_with_provenance(tmp_path):
    for name, value in (("a", 0), ("b", 255)):
        (tmp_path / name).mkdir()
        Image.fromarray(np.full((12, 10), value, np.uint8)).save(tmp_path / name / "x.png")

    dataset = data_lib.load(str(tmp_path), image_size=16)

    assert dataset.class_names == ("a", "b") and dataset.labels.tolist() == [0, 1]
    assert dataset.provenance["source"] == "images" and dataset.provenance["files"] == ["a/x.png", "b/x.png"]
    assert dataset.provenance["raw"] == {"sizes": {"10x12": 2}, "bit_depths": {"8-bit": 2}, "intensity": [0.0, 255.0]}
    np.testing.assert_allclose(dataset.images[:, 0, 0, 0], [-1.0, 1.0])


def test_a_bad_window_is_refused_for_every_source_not_only_dicom(tmp_path):
    (tmp_path / "a").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "a" / "x.png")

    with pytest.raises(UsageError, match="window 'nonsense'"):
        data_lib.load(str(tmp_path), image_size=16, window="nonsense")
