"""Reads a MedMNIST-style ``.npz`` archive, with its predefined train/val/test splits.

:func:`read` takes one ``.npz`` file holding, for any non-empty subset of the splits
``train``, ``val`` and ``test``, the arrays ``<split>_images`` and ``<split>_labels``
(the layout of the MedMNIST files, at any of their sizes: 28, 64, 128, 224). Other
keys are ignored, except ``class_names``.

**Images.** ``(N, H, W)`` gray, ``(N, H, W, C)`` with ``C`` 1 (gray), 3 (RGB) or 4 (RGBA,
alpha dropped); any other 4-D shape is a 3-D variant ``(N, D, H, W)`` (as are
``(N, D, H, W, 1)``), read as 2-D slices. MedMNIST's 3-D arrays have the scan (frame)
axis first -- its own montages step through array axis 1 -- so ``options.slice_axis``
2 (the default, axial) cuts along array axis 1, giving the stored ``(H, W)`` planes;
``slice_axis`` 1 cuts along axis 2 (``(D, W)`` planes) and 0 along axis 3 (``(D, H)``
planes). Planes are used as stored, without rotation (the archive has no orientation).
``options.slice_range`` and ``options.skip_empty_slices`` apply to these slices as for
NIfTI volumes. Entries are named ``train[12]`` (image 12 of ``train_images``) and
``train[12]#z5`` (slice 5 of that volume; ``x``/``y``/``z`` for slice axis 0/1/2).

**Intensities.** Integer images are scaled by the full range of their type (uint8,
MedMNIST's type, by 255); float images must already be in ``[0, 1]``
(:func:`jaxmed.data.preprocess.to_model_range`).

**Labels.** ``(N,)`` or ``(N, 1)`` non-negative integers. Multi-label arrays ``(N, K)``
with ``K > 1`` (ChestMNIST) are refused: jaxmed's classifiers are single-label. MedMNIST
archives carry no class names, so classes are ``"0"``, ``"1"``, ... up to the largest
label in any split; an optional ``class_names`` array of strings (at least that long)
names them instead.

**Memory.** Arrays are streamed from the archive (compressed or not) a chunk of rows at
a time and each image is preprocessed at once, so neither the full-size data set nor a
float copy of it is ever in memory -- only the output at ``image_size``.

**Problems.** Errors for the whole file, one line naming the file and the key, even
with ``skip_bad``: a missing file, a file that is not a zip/npz archive or is truncated
or corrupt, a member that is not a plain ``.npy`` array (pickled objects are never
loaded), no split, a split with images but no labels (or the reverse), a label count
that differs from the image count, image or label shapes and types not described
above, multi-label arrays, negative labels, a ``class_names`` array that is too short.
Per image, and skipped (each listed) under ``skip_bad``: NaN or infinite values,
float values outside ``[0, 1]``, images smaller than 8x8, and volumes with no
non-empty slice in the kept range.
"""

from __future__ import annotations

import contextlib
import math
import os
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO

import numpy as np

from jaxmed.data.sources.common import (AXIS_LETTERS, BadEntry, ImageCollector, ReadOptions, SourceImages,
                                        exception_text, one_line)
from jaxmed.errors import DataError

SPLITS: tuple[str, ...] = ("train", "val", "test")
CLASS_NAMES_KEY = "class_names"

# Rows are streamed in chunks of about this many bytes of stored data.
_CHUNK_BYTES = 32 << 20
# Array axis of a (N, D, H, W) volume array that each slice_axis cuts along.
_VOLUME_AXIS_OF_SLICE_AXIS = {2: 1, 1: 2, 0: 3}
_CHANNELS = (1, 3, 4)
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError)


class _Archive:
    """An open ``.npz`` archive whose ``.npy`` members are read as streams.

    Args:
      path: the archive, for messages too.
      archive: the open zip file.
    """

    def __init__(self, path: str, archive: zipfile.ZipFile) -> None:
        self.path = path
        self._zip = archive
        self.keys = tuple(name[:-4] for name in archive.namelist() if name.endswith(".npy"))

    def error(self, key: str, problem: str) -> DataError:
        return DataError(f"{one_line(self.path)}: {key}: {one_line(problem)}")

    @contextlib.contextmanager
    def member(self, key: str) -> Iterator[tuple[tuple[int, ...], np.dtype, bool, IO[bytes]]]:
        """Opens ``key.npy``; yields ``(shape, dtype, fortran_order, stream after the header)``."""
        try:
            with self._zip.open(key + ".npy") as stream:
                version = np.lib.format.read_magic(stream)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
                else:
                    raise self.error(key, f".npy format version {version[0]}.{version[1]} is not read")
                if dtype.hasobject:
                    raise self.error(key, "holds Python objects (pickled data), which jaxmed never loads")
                yield shape, dtype, fortran, stream
        except DataError:
            raise
        except _ARCHIVE_ERRORS as exc:
            raise self.error(key, f"truncated or corrupt member ({exception_text(exc)})") from None

    def read_all(self, key: str) -> np.ndarray:
        """A whole (small) member, e.g. labels."""
        with self.member(key) as (shape, dtype, fortran, stream):
            return _read_exact(self, key, stream, shape, dtype, fortran)

    def chunks(self, key: str, rows: int) -> Iterator[np.ndarray]:
        """A member's rows (first-axis entries), `rows` at a time, in stored order."""
        with self.member(key) as (shape, dtype, fortran, stream):
            if fortran and len(shape) > 1:
                # Column-major rows are not contiguous: this rare layout is read whole.
                yield _read_exact(self, key, stream, shape, dtype, fortran)
                return
            for start in range(0, shape[0], rows):
                count = min(rows, shape[0] - start)
                yield _read_exact(self, key, stream, (count, *shape[1:]), dtype, False)


def _read_exact(archive: _Archive, key: str, stream: IO[bytes], shape: tuple[int, ...], dtype: np.dtype,
                fortran: bool) -> np.ndarray:
    """Reads exactly one array of `shape` from `stream` (raises DataError if it ends early)."""
    size = math.prod(shape) * dtype.itemsize
    buffer = stream.read(size)
    if len(buffer) < size:
        raise archive.error(key, f"truncated: expected {size} bytes of array data, found {len(buffer)}")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _shape_of(archive: _Archive, key: str) -> tuple[tuple[int, ...], np.dtype]:
    with archive.member(key) as (shape, dtype, _, _):
        return tuple(shape), dtype


def _labels(archive: _Archive, split: str, count: int) -> np.ndarray:
    """A split's labels as (N,) int64, checked."""
    key = f"{split}_labels"
    labels = archive.read_all(key)
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise archive.error(key, f"multi-label array of shape {labels.shape} ({labels.shape[1]} labels per image, "
                                 f"as in ChestMNIST); jaxmed's classifiers take one label per image")
    if labels.ndim not in (1, 2):
        raise archive.error(key, f"shape {labels.shape}; expected (N,) or (N, 1)")
    labels = labels.reshape(-1)
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise archive.error(key, f"dtype {labels.dtype}; expected integer class indices")
    if len(labels) != count:
        raise archive.error(key, f"has {len(labels)} labels for the {count} images of {split}_images")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise archive.error(key, f"negative label {int(labels.min())}; class indices start at 0")
    return labels


def _image_layout(archive: _Archive, key: str, shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """Checks an image array's shape and type; returns whether it holds 3-D volumes."""
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating) or dtype == np.bool_):
        raise archive.error(key, f"dtype {dtype}; expected integer or float pixels")
    if shape and shape[0] == 0:
        raise archive.error(key, "has no images")
    if len(shape) == 3:
        return False
    if len(shape) == 4:
        return shape[3] not in _CHANNELS
    if len(shape) == 5 and shape[4] == 1:
        return True
    raise archive.error(key, f"shape {shape}; expected (N, H, W), (N, H, W, 1|3|4) or volumes (N, D, H, W)")


def _add_volume(collector: ImageCollector, volume: np.ndarray, name: str, class_name: str, split: str,
                options: ReadOptions) -> None:
    """Adds the kept slices of one (D, H, W) volume. Raises BadEntry if none is non-empty."""
    axis = _VOLUME_AXIS_OF_SLICE_AXIS[options.slice_axis] - 1
    kept = options.kept_slices(volume.shape[axis])
    nonempty = 0
    for index in kept:
        plane = np.take(volume, index, axis=axis)
        if options.skip_empty_slices and plane.min() == plane.max():
            continue
        nonempty += 1
        entry = f"{name}#{AXIS_LETTERS[options.slice_axis]}{index}"
        try:
            collector.add(plane, entry=entry, class_name=class_name, split=split, subject=name)
        except BadEntry as exc:
            collector.skip(entry, exc.reason)
    if not nonempty:
        raise BadEntry(f"no non-empty slice among slices {kept.start}..{kept.stop - 1} along "
                       f"{AXIS_LETTERS[options.slice_axis]} (all have a single value)")


def _class_names(archive: _Archive, labels: list[np.ndarray]) -> tuple[str, ...]:
    count = int(max(int(split_labels.max()) for split_labels in labels)) + 1
    if CLASS_NAMES_KEY not in archive.keys:
        return tuple(str(index) for index in range(count))
    names = archive.read_all(CLASS_NAMES_KEY)
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise archive.error(CLASS_NAMES_KEY, f"expected a 1-D array of strings, got {names.dtype} {names.shape}")
    names = tuple(name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name) for name in names)
    if len(names) < count:
        raise archive.error(CLASS_NAMES_KEY, f"names {len(names)} classes but the labels go up to {count - 1}")
    if len(set(names)) != len(names) or not all(names):
        raise archive.error(CLASS_NAMES_KEY, "class names must be unique and non-empty")
    return names


def read(location: str | os.PathLike[str], options: ReadOptions) -> SourceImages:
    """Reads a MedMNIST-style archive (see the module docstring).

    Args:
      location: the ``.npz`` file. ``~`` is expanded.
      options: output size and channels, ``skip_bad``, and for 3-D variants
        ``slice_axis``, ``slice_range`` and ``skip_empty_slices``.

    Returns:
      A `SourceImages` with the splits in the order train, val, test and `splits` set.

    Raises:
      DataError: one line naming the file (and key) and the problem.
    """
    path = os.path.expanduser(os.fspath(location))
    if not os.path.exists(path):
        raise DataError(f"{one_line(path)}: no such file")
    try:
        archive_file = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{one_line(path)}: not a zip/.npz archive, or truncated ({exception_text(exc)})") from None
    except OSError as exc:
        raise DataError(f"{one_line(path)}: cannot open ({exception_text(exc)})") from None
    with archive_file:
        archive = _Archive(path, archive_file)
        present = [split for split in SPLITS if f"{split}_images" in archive.keys or f"{split}_labels" in archive.keys]
        if not present:
            found = ", ".join(archive.keys[:8]) or "no arrays"
            raise DataError(f"{one_line(path)}: no MedMNIST arrays (train_images/train_labels, val_*, test_*); "
                            f"found {one_line(found)}")
        layouts, labels = {}, {}
        for split in present:  # check every split before the slow part
            for kind, other in (("images", "labels"), ("labels", "images")):
                if f"{split}_{kind}" not in archive.keys:
                    raise archive.error(f"{split}_{other}", f"has no matching {split}_{kind}")
            shape, dtype = _shape_of(archive, f"{split}_images")
            layouts[split] = (shape, _image_layout(archive, f"{split}_images", shape, dtype), dtype)
            labels[split] = _labels(archive, split, shape[0])
        class_names = _class_names(archive, list(labels.values()))

        collector = ImageCollector(path, options)
        for split in present:
            shape, volumes, dtype = layouts[split]
            rows = max(1, _CHUNK_BYTES // max(1, math.prod(shape[1:]) * dtype.itemsize))
            index = 0
            for chunk in archive.chunks(f"{split}_images", rows):
                names = [f"{split}[{row}]" for row in range(index, index + len(chunk))]
                chunk_classes = [class_names[label] for label in labels[split][index:index + len(chunk)]]
                index += len(chunk)
                if not volumes:  # 2-D images: one preprocessing call per chunk
                    collector.add_many(chunk, entries=names, class_names=chunk_classes, split=split)
                    continue
                for pixels, name, class_name in zip(chunk, names, chunk_classes, strict=True):
                    try:
                        _add_volume(collector, pixels.reshape(pixels.shape[:3]), name, class_name, split, options)
                    except BadEntry as exc:
                        collector.skip(name, exc.reason)
        return collector.result(class_names)
