"""Reads DICOM files -- one file, or a folder of series -- into the model's convention.

:func:`read` takes a single DICOM file or a folder. A folder's layout (class
sub-folders, flat, predefined Training/Testing splits) is
:mod:`jaxmed.data.sources.layout`'s; every file under it is expected to be DICOM
(Part 10, with the ``DICM`` marker), whatever its name, as PACS exports often have no
extension, except documents that come with the data (a README, a ``.csv``...), which
are ignored and listed. Files written without the 128-byte preamble and ``DICM`` marker
are read too when they start like a DICOM data set (a group 0002 or 0008 tag) and
pydicom parses them (``force=True``); without file meta information their transfer
syntax is the little-endian encoding pydicom detects (implicit or explicit VR).

**Series and order.** Within each class folder, files are grouped by
SeriesInstanceUID (a file without one is a series of its own) and series come in the
order of their first file's path. Files in a series are ordered by position: the
ImagePositionPatient projected on the normal of ImageOrientationPatient (the slice
location along the scan axis). If any file lacks a usable position, or the files do
not share one orientation (localisers, radial scans), the series falls back to
InstanceNumber, and if any lacks that, to the file path. Every 2-D frame is one image,
named ``rel/path.dcm`` (a single-frame file) or ``rel/path.dcm#frame`` (frames of a
multi-frame file, from 0, in stored order).

**Intensities.** Stored values go through the modality transform first (Rescale
Slope/Intercept -- for enhanced multi-frame files the Pixel Value Transformation of
the frame's functional groups -- or a Modality LUT, by
:func:`pydicom.pixels.apply_modality_lut`), so CT is in Hounsfield units. A grayscale
image is then windowed: the window ``[center - width/2, center + width/2]`` maps to
``[-1, 1]`` and values outside are clipped (the DICOM linear VOI function differs from this by half a unit, which does
not matter here). The window is, in order:

- the ``window`` option: a preset name from :data:`jaxmed.data.sources.window.WINDOW_PRESETS` (CT, in HU) or
  ``"CENTER,WIDTH"``, the same for every image;
- else the file's own WindowCenter/WindowWidth (its first value; for enhanced files
  the frame's Frame VOI LUT), as a viewer would first show it;
- else the range (min..max) of the modality values of the whole series. Per series,
  not per image: a per-image stretch would give each slice of one scan its own
  intensity mapping, so the same tissue would change brightness from slice to slice
  (and an empty slice would be stretched into noise). This needs the series' values
  before its first image is scaled, so such series are decoded twice, file by file;
  a constant series maps to black.

VOI LUT sequences and the SIGMOID VOI function are not applied (the linear window is).
MONOCHROME1 images (where the highest value is black) are inverted within the window
(``v -> low + high - v``; the raw intensity range reported for them is of these values).
Colour images (RGB; YBR_FULL and YBR_FULL_422, converted to RGB by pydicom; the
YBR_RCT/YBR_ICT of JPEG 2000, decoded to RGB; PALETTE COLOR, through its palette) are
not windowed (the ``window`` option is ignored for them): they are scaled by the full
range of their stored bits, and reduced to gray by BT.601 luma when one channel is
asked for.

**Compressed transfer syntaxes** are decoded by pydicom's plugins: pylibjpeg with
pylibjpeg-libjpeg (JPEG baseline, extended, lossless, JPEG-LS), pylibjpeg-openjpeg
(JPEG 2000, HTJ2K) and pylibjpeg-rle (RLE; pydicom also has its own), which jaxmed
installs. A file whose transfer syntax no installed plugin decodes is reported with
the transfer syntax's name and what to install.

**Memory.** Headers are read first without pixel data (``stop_before_pixels``) to
group and order the series; then pixel data is decoded file by file and frame by frame
(:func:`pydicom.pixels.iter_pixels` reads one frame at a time from the file), and each
frame is preprocessed at once, so a large series is never in memory whole. Two kinds
of file are read whole, one at a time: deflated data sets (one zlib stream) and files
that pydicom's frame reader refuses but :func:`pydicom.dcmread` tolerates.

pydicom's warnings about non-conformant values it tolerates are silenced while
reading; what stops an image is reported as below.

**Problems.** Per entry, and skipped (each listed) under ``skip_bad``: a file that is
not DICOM (no ``DICM`` marker at byte 128 and no DICOM data set at byte 0), an
empty, truncated or corrupt file, a DICOM file without pixel data (a DICOMDIR, a
structured report, a presentation state...), pixel data that cannot be decoded or
whose transfer syntax has no installed decoder, an unsupported photometric
interpretation, NaN or infinite values, an image smaller than 8x8, and the entries
:mod:`~jaxmed.data.sources.layout` finds bad (broken links, loops...). With several
frames in a file, a frame that fails to decode ends that file (its earlier frames are
kept). Errors for the source as a whole, even with ``skip_bad``: a missing path, an
invalid ``window`` option (:class:`~jaxmed.errors.UsageError`), no readable image, a
class folder with no readable image.

Nothing of a file's header is kept beyond its pixels: outputs made from these images
never carry patient data (see :mod:`jaxmed.export`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder, iter_pixels
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from jaxmed.data.sources.common import (
    BadEntry,
    ImageCollector,
    ReadOptions,
    SourceImages,
    exception_text,
    one_line,
    open_entry,
    os_reason,
)
from jaxmed.data.sources.documents import looks_like_headerless_dicom
from jaxmed.data.sources.layout import UNLABELLED, Entry, check_folders_readable, collect_entries
from jaxmed.data.sources.window import parse_window, window_range
from jaxmed.errors import DataError

# Packages (all jaxmed dependencies) whose pydicom plugins decode compressed pixel data.
CODEC_PACKAGES = ("pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle")

_GRAY = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "PALETTE COLOR")
# Functional groups of enhanced multi-frame files hold per-frame rescale and window.
_FRAME_TAGS = [0x52009229, 0x52009230]  # Shared / Per-frame Functional Groups Sequence
_ORIENTATION_TOLERANCE = 1e-3
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float and Double Float Pixel Data


@dataclasses.dataclass(frozen=True)
class _Header:
    """What the series grouping and ordering need from one file's header."""

    entry: Entry
    series: tuple[Any, ...]
    frames: int
    position: tuple[float, ...] | None
    normal: tuple[float, ...] | None
    instance: int | None
    # Set for files without file meta information: the encoding pydicom detected.
    transfer_syntax: str | None = None

    @property
    def rel(self) -> str:
        return "/".join(self.entry.rel)


def _frame_value(ds: Dataset, keyword: str, frame: int) -> Any:
    """`keyword`'s value for one frame: its per-frame functional group, the shared one, else top level."""
    for groups_keyword, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        groups = ds.get(groups_keyword)
        if not groups or index >= len(groups):
            continue
        for element in groups[index]:  # macros such as Pixel Value Transformation Sequence
            if element.VR == "SQ" and element.value and keyword in element.value[0]:
                return element.value[0][keyword].value
    return ds.get(keyword)


def _first_float(value: Any) -> float | None:
    """The first number of a (possibly multi-valued) element value, or None if there is none."""
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        if not value:
            return None
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    """`count` finite numbers from a multi-valued element value, or None."""
    try:
        numbers = tuple(float(item) for item in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count and all(map(math.isfinite, numbers)) else None


def _normal(orientation: tuple[float, ...] | None) -> tuple[float, ...] | None:
    """The unit slice normal (row x column direction) of an ImageOrientationPatient."""
    if orientation is None:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    length = float(np.linalg.norm(normal))
    return tuple(float(v) for v in normal / length) if length > 1e-6 else None


def _no_pixel_data_reason(ds: Dataset) -> str:
    sop_class = ds.get("SOPClassUID") or getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID")
    if sop_class == _DICOMDIR_SOP_CLASS:
        return "no pixel data (a DICOMDIR media index, not an image)"
    name = getattr(sop_class, "name", "") or "unknown SOP class"
    if "Rows" in ds or "Image Storage" in name:  # an image, so the file ends where its pixels should be
        return "no pixel data (the file ends before its Pixel Data element: truncated or incomplete)"
    return f"no pixel data (a {name} object)"


def _codec_problem(transfer_syntax: pydicom.uid.UID) -> str | None:
    """Why pixel data of this transfer syntax cannot be decoded here, or None if it can."""
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        return (f"pixel data is encoded as {transfer_syntax.name} ({transfer_syntax}), which pydicom has no decoder "
                f"for; convert the file to an uncompressed transfer syntax (e.g. dcmtk dcmdjpeg, gdcmconv --raw)")
    if decoder.is_available:
        return None
    alternatives = "; or one of: " + ", ".join(decoder.missing_dependencies) if decoder.missing_dependencies else ""
    return (f"pixel data is compressed as {transfer_syntax.name}, and no installed decoder reads it; install "
            f"{' '.join(CODEC_PACKAGES)} (jaxmed's dependencies){alternatives}")


def _read_header(path: str, entry: Entry) -> _Header:
    """Reads one file's header (no pixel data) and checks its pixels can be decoded.

    Raises:
      BadEntry: not DICOM, empty, corrupt, no pixel data, no decoder for its transfer syntax.
    """
    handle, size = open_entry(path)
    with handle:
        try:
            if size == 0:
                raise BadEntry("empty file (0 bytes)")
            headerless = looks_like_headerless_dicom(handle.read(8))
            handle.seek(0)
            # force only for files that start like a data set: forced, pydicom "parses"
            # any bytes, and a stray file would be reported as a DICOM without pixels.
            ds = pydicom.dcmread(handle, stop_before_pixels=True, force=headerless)
            if ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
                # The whole data set is one zlib stream, read whole in any case.
                handle.seek(0)
                has_pixels = any(tag in pydicom.dcmread(handle) for tag in _PIXEL_TAGS)
            else:
                # dcmread leaves the file at the pixel data tag it stopped before; with
                # no pixel data it reads on to the end of the file.
                has_pixels = handle.read(2) in (b"\xe0\x7f", b"\x7f\xe0")  # group 7FE0, either endian
        except InvalidDicomError:
            raise BadEntry("not a DICOM file (no 'DICM' marker at byte 128)") from None
        except OSError as exc:
            raise BadEntry(os_reason(exc)) from None
        except BadEntry:
            raise
        except Exception as exc:  # noqa: BLE001 -- any parser failure means a bad file, not a bug here
            raise BadEntry(f"truncated or corrupt DICOM file ({exception_text(exc)})") from None
    try:
        if not has_pixels:
            raise BadEntry(_no_pixel_data_reason(ds))
        transfer_syntax = ds.file_meta.get("TransferSyntaxUID")
        guessed = None
        if not transfer_syntax and headerless and "TransferSyntaxUID" not in ds.file_meta:
            transfer_syntax = guessed = _detected_encoding(ds)
        if not transfer_syntax:
            raise BadEntry("no Transfer Syntax UID in the file meta information")
        if (problem := _codec_problem(transfer_syntax)) is not None:
            raise BadEntry(problem)
        photometric = str(ds.get("PhotometricInterpretation", "")).strip()
        if photometric not in _GRAY + _COLOUR:
            raise BadEntry(f"unsupported photometric interpretation {photometric or '(missing)'!r}")
        frames = int(ds.get("NumberOfFrames") or 1)
        orientation = _floats(_frame_value(ds, "ImageOrientationPatient", 0), 6)
        position = _floats(_frame_value(ds, "ImagePositionPatient", 0), 3)
        instance = ds.get("InstanceNumber")
        series_uid = ds.get("SeriesInstanceUID")
    except BadEntry:
        raise
    except Exception as exc:  # noqa: BLE001 -- malformed values (e.g. NumberOfFrames "1A")
        raise BadEntry(f"corrupt DICOM header ({exception_text(exc)})") from None
    series = (entry.folder, entry.split, str(series_uid) if series_uid else f"file:{'/'.join(entry.rel)}")
    return _Header(entry, series, max(frames, 1), position, _normal(orientation),
                   int(instance) if isinstance(instance, int) else None, guessed)


def _detected_encoding(ds: Dataset) -> pydicom.uid.UID:
    """The uncompressed transfer syntax of a data set read without file meta information."""
    implicit, little_endian = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little_endian else ExplicitVRBigEndian


def _ordered(series: list[_Header]) -> list[_Header]:
    """A series' files in slice order (see the module docstring)."""
    normals = [header.normal for header in series]
    if all(header.position is not None for header in series) and normals[0] is not None and all(
            normal is not None and np.allclose(normal, normals[0], atol=_ORIENTATION_TOLERANCE) for normal in normals):
        return sorted(series, key=lambda header: (float(np.dot(header.position, normals[0])),
                                                  header.instance or 0, header.entry.rel))
    if all(header.instance is not None for header in series):
        return sorted(series, key=lambda header: (header.instance, header.entry.rel))
    return sorted(series, key=lambda header: header.entry.rel)


def _narrowed(values: np.ndarray) -> np.ndarray:
    """Integer values in the smallest of int16/int32 that holds them (HU fit int16)."""
    low, high = int(values.min()), int(values.max())
    for dtype in (np.int16, np.int32):
        if np.iinfo(dtype).min <= low and high <= np.iinfo(dtype).max:
            return values.astype(dtype, copy=False)
    return values


def _modality_values(frame: np.ndarray, ds: Dataset, index: int) -> np.ndarray:
    """Stored values of one grayscale frame turned into modality values (e.g. HU).

    Integer rescales (the usual CT slope 1, intercept -1024) are applied in integer
    arithmetic, exactly, and kept as integers; others give float32.
    """
    frame = frame.astype(frame.dtype.newbyteorder("="), copy=False)  # big-endian files
    if "ModalityLUTSequence" in ds:
        return apply_modality_lut(frame, ds)
    slope = _first_float(_frame_value(ds, "RescaleSlope", index))
    intercept = _first_float(_frame_value(ds, "RescaleIntercept", index))
    if slope is None or intercept is None or (slope == 1 and intercept == 0):
        return frame
    if frame.dtype.kind in "iu" and slope.is_integer() and intercept.is_integer():
        return _narrowed(frame.astype(np.int64) * int(slope) + int(intercept))
    return (frame.astype(np.float64) * slope + intercept).astype(np.float32)


def _file_window(ds: Dataset, index: int) -> tuple[float, float] | None:
    """The (center, width) a frame's header gives, if usable."""
    center = _first_float(_frame_value(ds, "WindowCenter", index))
    width = _first_float(_frame_value(ds, "WindowWidth", index))
    if center is None or width is None or width <= 0:
        return None
    return center, width


def _frames(path: str, transfer_syntax: str | None = None) -> Iterator[tuple[np.ndarray, Dataset]]:
    """Decodes a file frame by frame, with its header (group 0028 and the functional groups).

    pydicom's frame-by-frame reader parses the file itself and is stricter than
    `pydicom.dcmread` (it refuses deflated files and some VR mix-ups that dcmread
    tolerates); if it fails before the first frame, the file is read whole instead.
    `transfer_syntax` is that of a file without file meta information (`_Header.transfer_syntax`).
    """
    header = Dataset()
    options = {"transfer_syntax_uid": transfer_syntax} if transfer_syntax else {}
    frames = iter_pixels(path, ds_out=header, specific_tags=_FRAME_TAGS, **options)
    try:
        first = next(frames, None)
    except OSError:
        raise
    except Exception:  # noqa: BLE001 -- retried below; a real decoding error recurs there
        # force: the header pass has checked this is DICOM, perhaps one without a preamble.
        dataset = pydicom.dcmread(path, force=True)
        if transfer_syntax and "TransferSyntaxUID" not in dataset.file_meta:
            dataset.file_meta.TransferSyntaxUID = transfer_syntax
        for frame in iter_pixels(dataset):
            yield frame, dataset
        return
    if first is None:
        return
    yield first, header
    for frame in frames:
        yield frame, header


def _series_range(files: list[tuple[str, str | None]]) -> tuple[float, float]:
    """The min..max of a series' finite modality values (one more than the min if constant).

    Args:
      files: (path, transfer syntax of a file without file meta or None) per file.

    Files that fail to decode are passed over here; the reading pass reports them.
    """
    low, high = math.inf, -math.inf
    for path, transfer_syntax in files:
        try:
            for index, (frame, ds) in enumerate(_frames(path, transfer_syntax)):
                if frame.ndim != 2:
                    continue
                values = _modality_values(frame, ds, index)
                finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
                if finite.size:
                    low, high = min(low, float(finite.min())), max(high, float(finite.max()))
        except Exception:  # noqa: BLE001, S112 -- reported when the file is read for its images
            continue
    if low > high:
        return 0.0, 1.0
    return (low, high) if high > low else (low, low + 1.0)


class _SeriesReader:
    """Reads the frames of one series into the collector, scaling them as the module docstring says."""

    def __init__(self, root: str, series: list[_Header], window: tuple[float, float] | None,
                 collector: ImageCollector) -> None:
        self.root = root
        self.series = series
        self.window = window
        self.collector = collector
        self._range: tuple[float, float] | None = None

    def series_range(self) -> tuple[float, float]:
        if self._range is None:
            self._range = _series_range([(self._path(header), header.transfer_syntax) for header in self.series])
        return self._range

    def _path(self, header: _Header) -> str:
        return os.path.join(self.root, *header.entry.rel)

    def scaled(self, frame: np.ndarray, ds: Dataset, index: int) -> tuple[np.ndarray, tuple[float, float]]:
        """(pixels, intensity_range) of one decoded frame, for `ImageCollector.add`."""
        photometric = str(ds.get("PhotometricInterpretation", "")).strip()
        if photometric == "PALETTE COLOR":
            bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
            return apply_color_lut(frame, ds), (0.0, float(2 ** bits - 1))
        if frame.ndim == 3:  # colour, already RGB
            bits = int(ds.get("BitsStored") or frame.dtype.itemsize * 8)
            return frame.astype(frame.dtype.newbyteorder("="), copy=False), (0.0, float(2 ** bits - 1))
        values = _modality_values(frame, ds, index)
        window = self.window or _file_window(ds, index)
        low, high = window_range(*window) if window is not None else self.series_range()
        if photometric == "MONOCHROME1":
            # Highest value is black: reflect the values within the window, so its ends swap.
            values = (low + high) - values.astype(np.float64)
            values = _narrowed(values.astype(np.int64)) if np.array_equal(values, np.round(values)) \
                else values.astype(np.float32)
        return values, (low, high)

    def read_file(self, header: _Header) -> int:
        """Adds every frame of one file; returns how many were added.

        Raises:
          BadEntry: if the file's first frame cannot be decoded (a later frame that fails
            is skipped itself, and ends the file).
        """
        rel = header.rel
        added = decoded = 0
        try:
            for frame, ds in _frames(self._path(header), header.transfer_syntax):
                index, decoded = decoded, decoded + 1
                entry = f"{rel}#{index}" if header.frames > 1 else rel
                try:
                    pixels, intensity_range = self.scaled(frame, ds, index)
                    self.collector.add(pixels, entry=entry, class_name=header.entry.class_name,
                                       split=header.entry.split, intensity_range=intensity_range,
                                       subject=header.series[2])
                    added += 1
                except BadEntry as exc:
                    self.collector.skip(entry, exc.reason)
                except DataError:
                    raise
                except Exception as exc:  # noqa: BLE001 -- malformed palette or rescale values
                    self.collector.skip(entry, f"cannot scale pixel values ({exception_text(exc)})")
        except (OSError, DataError):
            raise
        except Exception as exc:  # noqa: BLE001 -- any decoder failure means bad pixel data, not a bug here
            reason = f"cannot decode pixel data ({exception_text(exc)})"
            if decoded == 0:
                raise BadEntry(reason) from None
            more = f"; frames {decoded} to {header.frames - 1} not read" if header.frames > decoded + 1 else ""
            self.collector.skip(f"{rel}#{decoded}", reason + more)
        return added


def read(location: str | os.PathLike[str], options: ReadOptions) -> SourceImages:
    """Reads a DICOM file or a folder of DICOM files (see the module docstring).

    Args:
      location: a DICOM file, or a folder (class sub-folders, flat, or split folders).
        ``~`` is expanded.
      options: output size and channels, `skip_bad`, and `window` ("" for each file's
        own window, a name in :data:`jaxmed.data.sources.window.WINDOW_PRESETS`, or "CENTER,WIDTH").

    Returns:
      A `SourceImages`: series in order of their first file's path, slices in position
      order; `files` names each frame (``path`` or ``path#frame``).

    Raises:
      UsageError: for an invalid `window`.
      DataError: one line naming the file or folder and the problem (see the module
        docstring for which problems `skip_bad` skips).
    """
    window = parse_window(options.window)
    with warnings.catch_warnings():
        # pydicom warns about every non-conformant value it tolerates (odd VRs, bad
        # lengths); problems that stop an image are reported here, one line each.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom\.")
        return _read(os.path.expanduser(os.fspath(location)), window, options)


def _read(path: str, window: tuple[float, float] | None, options: ReadOptions) -> SourceImages:
    """`read` after the window option is parsed."""
    if os.path.isdir(path):
        layout = collect_entries(path)
        root, entries, class_names = layout.root, layout.entries, layout.class_names
    elif os.path.lexists(path):
        layout = None
        root = os.path.dirname(path) or "."
        entries = (Entry((os.path.basename(path),), UNLABELLED, None, ()),)
        class_names = (UNLABELLED,)
    else:
        raise DataError(f"{one_line(path)}: no such file or folder")
    collector = ImageCollector(root, options)

    # Pass 1: headers only, to group files into series and order them.
    series: dict[tuple[Any, ...], list[_Header]] = {}
    for entry in entries:
        try:
            if entry.problem is not None:
                raise BadEntry(entry.problem)
            header = _read_header(os.path.join(root, *entry.rel), entry)
        except BadEntry as exc:
            collector.skip("/".join(entry.rel), exc.reason)
            continue
        series.setdefault(header.series, []).append(header)

    # Pass 2: pixels, file by file, series by series in order of their first file.
    good_per_folder: dict[tuple[str, ...], int] = {}
    for files in sorted(series.values(), key=lambda files: min(header.entry.rel for header in files)):
        reader = _SeriesReader(root, files, window, collector)
        for header in _ordered(files):
            try:
                added = reader.read_file(header)
            except OSError as exc:
                collector.skip(header.rel, os_reason(exc))
                continue
            except BadEntry as exc:
                collector.skip(header.rel, exc.reason)
                continue
            folder = header.entry.folder
            good_per_folder[folder] = good_per_folder.get(folder, 0) + added
    result = collector.result(class_names, layout.ignored if layout is not None else ())
    if layout is not None:
        check_folders_readable(layout, good_per_folder, result.skipped)
    return result
