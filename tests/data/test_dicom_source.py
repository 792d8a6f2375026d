"""The DICOM source: the test files that ship inside pydicom and nibabel, and series written here."""

import shutil
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from pydicom.pixels import get_decoder
from pydicom.uid import JPEGLSLossless, MPEG2MPML, generate_uid

from jaxmed.data import load
from jaxmed.data.preprocess import preprocess
from jaxmed.data.sources import dicom, window
from jaxmed.data.sources.common import ReadOptions
from jaxmed.errors import DataError, UsageError

# Bundled with the installed packages (never downloaded): pydicom.data.get_testdata_file
# would fetch files that are not in the wheel, so the folder is used directly.
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
NIBABEL_FILES = Path(nibabel.__file__).parent / "nicom" / "tests" / "data"


def options(**overrides):
    return ReadOptions(**{"image_size": 16, **overrides})


def windowed(values, low, high):
    """The model-range image a window maps `values` to, computed independently of the reader."""
    return np.clip((values.astype(np.float64) - low) / (high - low), 0.0, 1.0) * 2.0 - 1.0


def hounsfield(name="CT_small.dcm"):
    ds = pydicom.dcmread(PYDICOM_FILES / name)
    return ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def write_series(folder, pixels_by_name, *, positions, orientation=(1, 0, 0, 0, 1, 0), instance_numbers=None,
                 series_uid=None, photometric="MONOCHROME2", window=None):
    """Writes a CT series (from CT_small.dcm's header) with the given pixels, one file per name."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    for index, (name, pixels) in enumerate(pixels_by_name.items()):
        ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImageOrientationPatient = list(orientation)
        ds.ImagePositionPatient = list(positions[index]) if positions is not None else None
        if positions is None:
            del ds.ImagePositionPatient
        if instance_numbers is not None:
            ds.InstanceNumber = instance_numbers[index]
        ds.PhotometricInterpretation = photometric
        if window is not None:
            ds.WindowCenter, ds.WindowWidth = window
        ds.PixelData = np.asarray(pixels, dtype=np.int16).tobytes()
        ds.Rows, ds.Columns = np.asarray(pixels).shape
        ds.save_as(folder / name, enforce_file_format=True)


def test_ct_is_rescaled_to_hounsfield_units_and_windowed():
    hu = hounsfield()
    assert pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm").RescaleIntercept == -1024  # rescale matters here
    read = dicom.read(PYDICOM_FILES / "CT_small.dcm", options(image_size=128, window="40,400"))
    np.testing.assert_allclose(read.images[0, ..., 0], windowed(hu, -160, 240), atol=1e-5)
    assert read.raw["intensity"] == [hu.min(), hu.max()]  # raw stats are in HU, not stored values
    assert read.files == ("CT_small.dcm",) and read.class_names == ("unlabelled",)


def test_window_presets_change_the_output_as_their_range_says():
    hu = hounsfield()
    by_preset = {}
    for preset in ("brain", "lung", "bone"):
        center, width = window.WINDOW_PRESETS[preset]
        image = dicom.read(PYDICOM_FILES / "CT_small.dcm", options(image_size=128, window=preset)).images[0, ..., 0]
        np.testing.assert_allclose(image, windowed(hu, center - width / 2, center + width / 2), atol=1e-5)
        by_preset[preset] = image
    assert not np.allclose(by_preset["brain"], by_preset["lung"])
    assert not np.allclose(by_preset["lung"], by_preset["bone"])
    assert window.parse_window("Brain") == window.WINDOW_PRESETS["brain"]
    assert window.parse_window(" -600, 1500 ") == (-600.0, 1500.0)
    assert window.parse_window("") is None


@pytest.mark.parametrize("window", ["brian", "40", "40,0", "40,-5", "a,b", "40,80,1", "nan,80"])
def test_invalid_window_is_a_usage_error(window):
    with pytest.raises(UsageError, match="brain, subdural") as error:
        dicom.read(PYDICOM_FILES / "CT_small.dcm", options(window=window))
    assert "\n" not in str(error.value)


def test_own_window_of_the_file_is_used_when_no_window_is_asked_for():
    ds = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    read = dicom.read(PYDICOM_FILES / "MR_small.dcm", options(image_size=64))
    np.testing.assert_allclose(read.images[0, ..., 0], windowed(ds.pixel_array, center - width / 2,
                                                                center + width / 2), atol=1e-5)


def test_without_any_window_a_series_shares_one_range(tmp_path):
    ramp = np.arange(16 * 16, dtype=np.int16).reshape(16, 16)
    write_series(tmp_path / "series", {"a.dcm": ramp, "b.dcm": ramp + 1000}, positions=[(0, 0, 0), (0, 0, 1)])
    read = dicom.read(tmp_path / "series", options())
    low, high = -1024 + 0, -1024 + 1000 + 255  # CT_small's rescale, then min and max over both files
    np.testing.assert_allclose(read.images[0, ..., 0], windowed(ramp - 1024, low, high), atol=1e-5)
    np.testing.assert_allclose(read.images[1, ..., 0], windowed(ramp + 1000 - 1024, low, high), atol=1e-5)


def test_monochrome1_is_inverted(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 2000, (16, 16))
    for photometric in ("MONOCHROME1", "MONOCHROME2"):
        write_series(tmp_path / photometric, {"x.dcm": pixels}, positions=[(0, 0, 0)], photometric=photometric,
                     window=(0, 1500))
    mono1 = dicom.read(tmp_path / "MONOCHROME1", options()).images
    mono2 = dicom.read(tmp_path / "MONOCHROME2", options()).images
    assert np.abs(mono2).max() > 0.5  # not a flat image, so the check below means something
    np.testing.assert_allclose(mono1, -mono2, atol=1e-5)


def test_series_are_grouped_and_ordered_by_position_not_file_name(tmp_path):
    # A sagittal series: rows along +y, columns along -z, so the slice normal row x column
    # is -x and slices come from the highest x to the lowest.
    x_positions = {"a.dcm": 30.0, "b.dcm": -10.0, "c.dcm": 10.0, "d.dcm": -30.0}
    pixels = {name: np.full((16, 16), int(x) * 10, dtype=np.int16) for name, x in x_positions.items()}
    write_series(tmp_path / "scan", pixels, positions=[(x, 5.0, 7.0) for x in x_positions.values()],
                 orientation=(0, 1, 0, 0, 0, -1), window=(-1024, 1000))
    # A second series in the same folder, with names between the first's; InstanceNumber order.
    write_series(tmp_path / "scan", {"b2.dcm": np.zeros((16, 16)), "a2.dcm": np.zeros((16, 16))}, positions=None,
                 instance_numbers=[1, 2], window=(0, 100))
    read = dicom.read(tmp_path / "scan", options())
    assert read.files == ("a.dcm", "c.dcm", "b.dcm", "d.dcm", "b2.dcm", "a2.dcm")
    assert np.all(np.diff(read.images[:4].mean(axis=(1, 2, 3))) < 0)  # pixels (x * 10) follow the order


def test_series_of_mixed_orientations_falls_back_to_instance_number(tmp_path):
    # A real radial MR series (each slice its own orientation) from pydicom's DICOMDIR tests.
    shutil.copytree(PYDICOM_FILES / "dicomdirtests" / "98892003" / "MR700", tmp_path / "mr700")
    read = dicom.read(tmp_path / "mr700", options())
    numbers = [pydicom.dcmread(tmp_path / "mr700" / name).InstanceNumber for name in read.files]
    assert numbers == sorted(numbers) and read.files != tuple(sorted(read.files))


def test_multi_frame_file_gives_one_image_per_frame():
    frames = pydicom.dcmread(PYDICOM_FILES / "rtdose.dcm").pixel_array  # 15 frames, no window
    read = dicom.read(PYDICOM_FILES / "rtdose.dcm", options(image_size=10))
    assert read.files == tuple(f"rtdose.dcm#{index}" for index in range(15))
    for index in (0, 7, 14):
        expected = windowed(frames[index], frames.min(), frames.max())  # the range of the whole file
        np.testing.assert_allclose(read.images[index, ..., 0], expected, atol=1e-5)


@pytest.mark.parametrize("compressed, uncompressed", [
    ("MR_small_RLE.dcm", "MR_small.dcm"),
    ("MR_small_jp2klossless.dcm", "MR_small.dcm"),  # JPEG 2000 lossless (openjpeg)
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),  # JPEG-LS (libjpeg)
    ("MR_small_bigendian.dcm", "MR_small.dcm"),
    ("MR_small_implicit.dcm", "MR_small.dcm"),
    ("rtdose_rle.dcm", "rtdose.dcm"),  # multi-frame RLE
    ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle.dcm"),  # JPEG lossless, RGB
])
def test_lossless_compressed_files_decode_to_the_pixels_of_their_uncompressed_twin(compressed, uncompressed):
    twin = dicom.read(PYDICOM_FILES / uncompressed, options(channels=3))
    read = dicom.read(PYDICOM_FILES / compressed, options(channels=3))
    np.testing.assert_array_equal(read.images, twin.images)


@pytest.mark.parametrize("lossy", ["SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_gdcm_KY.dcm"])
def test_lossy_and_ybr_colour_files_decode_close_to_the_lossless_original(lossy):
    # JPEG baseline stored as YBR_FULL / YBR_FULL_422, and JPEG 2000: converted to RGB.
    original = dicom.read(PYDICOM_FILES / "SC_rgb_rle.dcm", options(image_size=100, channels=3)).images
    read = dicom.read(PYDICOM_FILES / lossy, options(image_size=100, channels=3)).images
    assert np.abs(original[..., 0] - original[..., 1]).mean() > 0.1  # really colour
    assert np.abs(read - original).mean() < 0.05  # unconverted YBR would be off by about 0.7


def test_palette_colour_is_read_through_its_palette():
    read = dicom.read(PYDICOM_FILES / "examples_palette.dcm", options(channels=3))
    assert np.abs(read.images[..., 0] - read.images[..., 2]).max() > 0.2


def test_class_folders_of_dicom_series_through_load(tmp_path):
    ramp = np.arange(16 * 16, dtype=np.int16).reshape(16, 16)
    write_series(tmp_path / "data" / "ct" / "patient1" / "series1", {"1.dcm": ramp, "2.dcm": ramp},
                 positions=[(0, 0, 1), (0, 0, 0)])
    (tmp_path / "data" / "mr").mkdir()
    for name in ("0.dcm", "1.dcm"):
        shutil.copy(NIBABEL_FILES / name, tmp_path / "data" / "mr" / f"nibabel_{name}")
    shutil.copy(PYDICOM_FILES / "MR_small.dcm", tmp_path / "data" / "mr" / "MR_small")  # no extension
    dataset = load(str(tmp_path / "data"), image_size=16)
    assert dataset.provenance["source"] == "dicom"
    assert dataset.class_names == ("ct", "mr")
    assert dataset.provenance["files"] == ["ct/patient1/series1/2.dcm", "ct/patient1/series1/1.dcm",
                                           "mr/MR_small", "mr/nibabel_0.dcm", "mr/nibabel_1.dcm"]
    assert dataset.labels.tolist() == [0, 0, 1, 1, 1]


def one_line_error(error):
    message = str(error.value)
    return "\n" not in message and "Traceback" not in message


CT_BYTES = (PYDICOM_FILES / "CT_small.dcm").read_bytes()

# (file name, writer, reason fragment) of bad entries in a DICOM folder.
BAD_FILES = [
    ("truncated.dcm", lambda path: path.write_bytes(CT_BYTES[:20000]), "cannot decode pixel data"),
    ("header_cut.dcm", lambda path: path.write_bytes(CT_BYTES[:3000]), "no pixel data (the file ends"),
    ("notes.dcm", lambda path: path.write_text("not an image\n"), "not a DICOM file"),
    ("empty.dcm", lambda path: path.write_bytes(b""), "empty file"),
    ("export.bin", lambda path: path.write_text("export notes\n"), "not a DICOM file"),
    ("report.dcm", lambda path: shutil.copy(PYDICOM_FILES / "reportsi.dcm", path),
     "no pixel data (a Basic Text SR Storage object)"),
    ("DICOMDIR", lambda path: shutil.copy(PYDICOM_FILES / "dicomdirtests" / "DICOMDIR", path),
     "no pixel data (a DICOMDIR"),
    ("pixels_cut.dcm", lambda path: shutil.copy(PYDICOM_FILES / "MR_truncated.dcm", path),
     "cannot decode pixel data"),
    ("bad_jpeg.dcm", lambda path: shutil.copy(PYDICOM_FILES / "JPEG-lossy.dcm", path), "cannot decode pixel data"),
    ("tiny.dcm", lambda path: shutil.copy(PYDICOM_FILES / "SC_rgb_small_odd.dcm", path), "smaller than"),
    ("no_meta.dcm", lambda path: shutil.copy(PYDICOM_FILES / "no_meta.dcm", path), "no 'DICM' marker"),
    ("bad_vr.dcm", lambda path: shutil.copy(PYDICOM_FILES / "badVR.dcm", path), "corrupt DICOM header"),
]


@pytest.mark.parametrize("name, write, reason", BAD_FILES, ids=[name for name, _, _ in BAD_FILES])
def test_bad_entry_is_one_line_error_or_listed_skip(tmp_path, name, write, reason):
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(PYDICOM_FILES / "CT_small.dcm", folder / "good.dcm")
    write(folder / name)
    with pytest.raises(DataError) as error:
        dicom.read(folder, options())
    assert str(error.value).startswith(f"{folder / name}: ") and reason in str(error.value)
    assert one_line_error(error)
    read = dicom.read(folder, options(skip_bad=True))
    assert read.files == ("good.dcm",)
    assert len(read.skipped) == 1 and read.skipped[0][0] == name and reason in read.skipped[0][1]


def test_nan_pixels_are_a_bad_entry(tmp_path):
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm", stop_before_pixels=True)
    values = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    values[3, 3] = np.nan
    for keyword in ("PixelData", "RescaleSlope", "RescaleIntercept", "PixelRepresentation", "BitsStored",
                    "HighBit", "WindowCenter", "WindowWidth"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated = 32
    ds.FloatPixelData = values.tobytes()
    ds.save_as(tmp_path / "nan.dcm", enforce_file_format=True)
    with pytest.raises(DataError, match="nan.dcm: .*NaN") as error:
        dicom.read(tmp_path / "nan.dcm", options())
    assert one_line_error(error)


def test_transfer_syntax_without_decoder_names_it_and_what_to_do(tmp_path):
    ds = pydicom.dcmread(PYDICOM_FILES / "MR_small_RLE.dcm")
    ds.file_meta.TransferSyntaxUID = MPEG2MPML  # pydicom decodes no video
    ds.save_as(tmp_path / "video.dcm")
    with pytest.raises(DataError, match=r"video.dcm: pixel data is encoded as MPEG2 Main Profile / Main Level")\
            as error:
        dicom.read(tmp_path / "video.dcm", options())
    assert "no decoder" in str(error.value) and one_line_error(error)


def test_missing_codec_plugin_says_what_to_install(monkeypatch):
    # As if pylibjpeg-libjpeg were not installed: the JPEG-LS decoder has no plugin left.
    monkeypatch.setattr(get_decoder(JPEGLSLossless), "_available", {})
    with pytest.raises(DataError) as error:
        dicom.read(PYDICOM_FILES / "MR_small_jpeg_ls_lossless.dcm", options())
    message = str(error.value)
    assert message.startswith(str(PYDICOM_FILES / "MR_small_jpeg_ls_lossless.dcm"))
    assert "JPEG-LS Lossless Image Compression" in message and "pylibjpeg-libjpeg" in message
    assert one_line_error(error)


def test_folder_with_only_bad_files_stops_even_with_skip_bad(tmp_path):
    (tmp_path / "scans").mkdir()
    shutil.copy(PYDICOM_FILES / "reportsi.dcm", tmp_path / "scans" / "report.dcm")
    with pytest.raises(DataError, match="no readable images .*no pixel data"):
        dicom.read(tmp_path / "scans", options(skip_bad=True))


def test_images_match_preprocess_of_the_decoded_frame():
    # The reader adds no scaling of its own beyond the window: same as preprocess with that range.
    ds = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    expected = preprocess(ds.pixel_array[None], image_size=16, intensity_range=(center - width / 2,
                                                                                center + width / 2))
    np.testing.assert_array_equal(dicom.read(PYDICOM_FILES / "MR_small.dcm", options()).images, expected)
