"""Real folders as people have them: documents beside the scans are ignored and listed, never fatal."""

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

import jaxmed.data
from jaxmed.data import inspection
from jaxmed.data.sources import detect, dicom
from jaxmed.data.sources.common import ReadOptions
from jaxmed.data.sources.documents import document_reason, has_data_signature, named_like_document
from jaxmed.errors import DataError

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16), value, np.uint8) + np.eye(16, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _class_folders(root: Path) -> None:
    for class_name, values in (("healthy", (10, 20)), ("nodule", (200, 210))):
        (root / class_name).mkdir(parents=True)
        for value in values:
            (root / class_name / f"{value}.png").write_bytes(_png(value))


def test_readme_at_the_root_and_csv_in_a_class_folder_are_ignored_and_listed(tmp_path):
    _class_folders(tmp_path)
    (tmp_path / "README.txt").write_text("Lung CT patches, 2 classes.\n")
    (tmp_path / "nodule" / "notes.csv").write_text("file,diameter\n200.png,4\n")
    (tmp_path / "LICENSE").write_text("CC BY 4.0\n")

    dataset = jaxmed.data.load(str(tmp_path), 16)

    assert dataset.class_names == ("healthy", "nodule") and len(dataset.images) == 4
    assert dataset.provenance["skipped"] == []
    assert dataset.provenance["ignored"] == [["LICENSE", "a document (LICENSE), not image data"],
                                             ["README.txt", "a document (.txt), not image data"],
                                             ["nodule/notes.csv", "a document (.csv), not image data"]]
    summary = inspection.report(dataset)
    assert [item["file"] for item in summary["ignored"]] == ["LICENSE", "README.txt", "nodule/notes.csv"]
    text = inspection.render_text(summary)
    assert "ignored (not image data): 3 files:" in text
    assert "  README.txt: a document (.txt), not image data" in text
    assert "  nodule/notes.csv: a document (.csv), not image data" in text


def test_documents_beside_split_folders_are_ignored(tmp_path):
    for split in ("Training", "Testing"):
        _class_folders(tmp_path / split)
    (tmp_path / "description.pdf").write_bytes(b"%PDF-1.4\n...")
    (tmp_path / "Training" / "labels.xlsx").write_bytes(b"PK\x03\x04 spreadsheet")

    dataset = jaxmed.data.load(str(tmp_path), 16)

    assert len(dataset.images) == 8
    assert [entry for entry, _ in dataset.provenance["ignored"]] == ["Training/labels.xlsx", "description.pdf"]


def test_a_corrupt_png_beside_a_readme_is_still_a_one_line_error_naming_it(tmp_path):
    _class_folders(tmp_path)
    (tmp_path / "README.md").write_text("# data\n")
    (tmp_path / "healthy" / "cut.png").write_bytes(_png(30)[:40])

    with pytest.raises(DataError) as error:
        jaxmed.data.load(str(tmp_path), 16)

    message = str(error.value)
    assert message.startswith(f"{tmp_path}/healthy/cut.png: truncated or corrupt image") and "\n" not in message


def test_content_decides_before_the_name(tmp_path):
    _class_folders(tmp_path)
    (tmp_path / "healthy" / "scan.txt").write_bytes(_png(40))  # an image under a document's name: read
    (tmp_path / "nodule" / "readme.png").write_bytes(b"this is not an image\n")  # an image's name: corrupt

    with pytest.raises(DataError, match="nodule/readme.png: truncated or corrupt image"):
        jaxmed.data.load(str(tmp_path), 16)
    (tmp_path / "nodule" / "readme.png").unlink()
    dataset = jaxmed.data.load(str(tmp_path), 16)
    assert "healthy/scan.txt" in dataset.provenance["files"] and dataset.provenance["ignored"] == []


def test_a_class_folder_holding_only_documents_is_empty(tmp_path):
    _class_folders(tmp_path)
    (tmp_path / "unsure").mkdir()
    (tmp_path / "unsure" / "todo.txt").write_text("label these\n")

    with pytest.raises(DataError, match="unsure: class folder has no images"):
        jaxmed.data.load(str(tmp_path), 16)


def test_document_rules():
    assert named_like_document("README") and named_like_document("LICENSE.Apache")
    assert named_like_document("Labels.CSV") and named_like_document("paper.pdf")
    assert not named_like_document("readme.png") and not named_like_document("scan") \
        and not named_like_document("volume.bin")
    assert has_data_signature(_png(1)) and has_data_signature(b"\x00" * 128 + b"DICM")
    assert not has_data_signature(b"file,label\n")


def test_document_reason_reads_the_content(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "image.txt").write_bytes(_png(1))
    assert document_reason(str(tmp_path / "notes.txt")) == "a document (.txt), not image data"
    assert document_reason(str(tmp_path / "image.txt")) is None


def _without_preamble(path: Path, *, file_meta: bool) -> None:
    """CT_small.dcm rewritten with no 128-byte preamble and 'DICM' (and optionally no file meta)."""
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    ds.preamble = None
    if not file_meta:
        del ds.file_meta
        pydicom.dcmwrite(path, ds, enforce_file_format=False, implicit_vr=True, little_endian=True)
    else:
        pydicom.dcmwrite(path, ds, enforce_file_format=False)
    assert path.read_bytes()[128:132] != b"DICM"
    with pytest.raises(pydicom.errors.InvalidDicomError):
        pydicom.dcmread(path)  # what the reader had to handle


@pytest.mark.parametrize("file_meta", [True, False], ids=["file_meta", "no_file_meta"])
def test_dicom_without_preamble_reads_like_its_part10_twin(tmp_path, file_meta):
    folder = tmp_path / "series"
    folder.mkdir()
    _without_preamble(folder / "slice1", file_meta=file_meta)  # no extension, as PACS exports
    (folder / "README.txt").write_text("exported from PACS\n")
    options = ReadOptions(image_size=16)

    assert detect.folder_kind(str(folder)) == detect.DICOM
    read = dicom.read(folder, options)
    twin = dicom.read(PYDICOM_FILES / "CT_small.dcm", options)

    assert read.files == ("slice1",) and read.ignored == (("README.txt", "a document (.txt), not image data"),)
    np.testing.assert_array_equal(read.images, twin.images)
