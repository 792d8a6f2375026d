"""Reads NIfTI volumes -- one file, or a folder of them -- as 2-D slices.

:func:`read` takes a single ``.nii``, ``.nii.gz`` or ``.hdr`` (with its ``.img``) file,
or a folder whose layout (class sub-folders, flat, predefined Training/Testing splits)
is :mod:`jaxmed.data.sources.layout`'s. NIfTI-1, NIfTI-2 and their ``.hdr``/``.img``
pairs are read with nibabel; so are Analyze 7.5 pairs, whose orientation is nibabel's
default for the format (which the file cannot confirm).

**Orientation and slices.** Every volume is read as if reoriented to the canonical RAS+
voxel order of :func:`nibabel.as_closest_canonical` (axis 0 towards the patient's
Right, 1 Anterior, 2 Superior), without building the reoriented copy: each slice is
cut from the stored array and flipped/transposed into place. Slices are cut along
``options.slice_axis`` (0 sagittal, 1 coronal, 2 axial) and shown as a radiologist
views them (the DICOM convention): axial slices seen from the feet, anterior up and the
patient's right on the image's left; coronal slices seen from the front, superior up,
patient's right on the left; sagittal slices seen from the patient's left, superior up,
anterior on the left. In array terms, a canonical plane ``P[i, j]`` (i, j the two
remaining RAS+ axes in order) becomes the image ``P.T[::-1, ::-1]``.

Kept slices: those that overlap ``options.slice_range`` (fractions of the axis), i.e.
indices ``floor(lo * n) .. ceil(hi * n) - 1`` of the ``n`` slices, never none. With
``options.skip_empty_slices``, slices with a single value everywhere (background) are
left out. A volume with a single slice along some axis (a 2-D image stored as NIfTI,
shape ``(X, Y)`` or with one size-1 axis) gives that one slice, whatever the slice
axis and range. 4-D volumes (fMRI, multi-echo, ...) are read as one 3-D volume after
another along the 4th axis; a size-1 4th axis (or trailing size-1 axes beyond it) is
ignored; 5-D data with more than one value per voxel (vector fields, tensors) is not
read. Entries are named ``rel/path.nii.gz#z42`` (slice 42 of the canonical axis: ``x``
sagittal, ``y`` coronal, ``z`` axial), ``rel/path.nii.gz#t3:z42`` for the 4th volume
of a 4-D file, and plain ``rel/path.nii.gz`` (or ``#t3``) for single-slice volumes.

**Intensities.** Voxel values are the stored values times ``scl_slope`` plus
``scl_inter``. MR intensities have arbitrary units, so by default each 3-D volume is
scaled by its own robust range: the 0.5th..99.5th percentiles of its non-zero voxels
(all slices, not only the kept ones; from at most about 4 M evenly taken voxels for
larger volumes) map to ``[-1, 1]`` and values outside are clipped. If those
percentiles are equal (e.g. a binary volume), the volume's min..max is used. With
``options.window`` (a preset from :data:`jaxmed.data.sources.window.WINDOW_PRESETS` or
``"CENTER,WIDTH"``, for CT stored in Hounsfield units), that window is used for every
volume instead.

**Masks and labels.** In a folder whose volumes are not in class folders (flat, or
split folders holding the files), a file named ``<stem>_seg``, ``<stem>_mask``,
``<stem>_label`` or ``<stem>_labels`` (``.nii`` or ``.nii.gz``, suffix compared
case-insensitively) next to ``<stem>.nii`` or ``<stem>.nii.gz`` is that volume's mask,
not an image. If any volume has a mask, every volume needs exactly one, and each slice
is labelled ``"lesion"`` if the mask has a non-zero voxel in that slice, else
``"no_lesion"`` (class names in that order, so ``lesion`` is 1). A mask is reoriented
like its volume and must have the same shape after that; a 3-D mask serves every
volume of a 4-D file, a 4-D one must have as many volumes. In class-folder layouts the
folders give the labels and masks are ignored (not read as images either), with a
note in ``SourceImages.raw["notes"]``. A single file given directly is labelled by its
mask if it has one beside it, else ``"unlabelled"``. BIDS sidecars (``<stem>.json``,
``.bval``, ``.bvec``) next to a volume are metadata, ignored silently.

**Memory.** Uncompressed volumes (``.nii``, ``.img``) are memory-mapped (nibabel's
default), so a slice reads only the pages it touches and the volume is never copied
into memory. nibabel cannot seek in a gzip stream without decompressing from the start
(unless the optional ``indexed_gzip`` package is installed, which jaxmed does not
require), so a ``.nii.gz`` volume is decompressed whole, once, in its stored data type
(an int16 volume needs 2 bytes per voxel). Either way values are converted to floating
point (and scaled) one slice at a time: a pass over the volume for its intensity
statistics, then one slice per kept slice.

**Problems.** Per entry, and skipped (each listed) under ``skip_bad``: an empty,
truncated or corrupt file, a file that is not NIfTI, a ``.hdr`` without its ``.img`` or
the reverse, an unsupported shape or voxel type, a volume with NaN or infinite voxels
(the count is given), a volume with one value everywhere or no non-empty slice in the
kept range, slices smaller than 8x8, a missing, duplicate or unreadable mask, an
image/mask shape mismatch, a mask without its volume, and the entries
:mod:`~jaxmed.data.sources.layout` finds bad. A problem with one volume of a 4-D file
skips that volume only (``rel#t3``). Errors for the source as a whole, even with
``skip_bad``: a missing path, an invalid ``window`` (:class:`~jaxmed.errors.UsageError`),
no readable slice, a class folder with no readable slice.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import zlib
from collections.abc import Iterator

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError

from jaxmed.data.sources import detect
from jaxmed.data.sources.window import parse_window, window_range
from jaxmed.data.sources.common import (
    AXIS_LETTERS,
    MIN_IMAGE_SIDE,
    BadEntry,
    ImageCollector,
    ReadOptions,
    SourceImages,
    exception_text,
    one_line,
    os_reason,
)
from jaxmed.data.sources.layout import UNLABELLED, Entry, Layout, check_folders_readable, collect_entries
from jaxmed.errors import DataError

MASK_SUFFIXES: tuple[str, ...] = ("_seg", "_mask", "_label", "_labels")
MASK_CLASSES: tuple[str, str] = ("no_lesion", "lesion")
ROBUST_PERCENTILES: tuple[float, float] = (0.5, 99.5)

# Above this many voxels, the robust range comes from an evenly strided subset.
_MAX_RANGE_SAMPLES = 1 << 22
_SIDECAR_EXTENSIONS = (".json", ".bval", ".bvec")
_VOLUME_EXTENSIONS = (".nii.gz", ".nii")  # longest first: ".nii.gz" also ends with ".gz"
_PAIR_DATA_EXTENSIONS = (".img.gz", ".img")


def _stem_and_extension(name: str, extensions: tuple[str, ...]) -> tuple[str, str] | None:
    """``("brain", ".nii.gz")`` for ``brain.nii.gz``; None if no extension matches (case-insensitive)."""
    lower = name.lower()
    for extension in extensions:
        if lower.endswith(extension) and len(name) > len(extension):
            return name[: -len(extension)], extension
    return None


def _mask_base(stem: str) -> str | None:
    """The image stem a mask stem names (``brain`` for ``brain_seg``), or None."""
    lower = stem.lower()
    for suffix in MASK_SUFFIXES:
        if lower.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return None


# --- which files are volumes, masks and companions ---------------------------------------


@dataclasses.dataclass(frozen=True)
class _Volume:
    """A volume to read (problem None) or a bad entry, with its mask's path if it has one."""

    entry: Entry
    mask: tuple[str, ...] | None = None
    problem: str | None = None

    @property
    def rel(self) -> str:
        return "/".join(self.entry.rel)


def _plan(layout: Layout, use_masks: bool) -> tuple[list[_Volume], int]:
    """Decides what each entry of a folder is: a volume, a mask, a companion file or bad.

    Args:
      layout: the folder's entries.
      use_masks: whether masks give the labels (the layout has no class folders).

    Returns:
      ``(volumes, masks_ignored)``: volumes and bad entries in entry order, and how
      many masks were ignored because class folders give the labels.
    """
    by_folder: dict[tuple[str, ...], dict[str, Entry]] = {}
    for entry in layout.entries:
        by_folder.setdefault(entry.rel[:-1], {})[entry.rel[-1]] = entry

    # Pass 1: which files are volumes (by name), keyed by (folder, stem).
    volume_stems: dict[tuple[tuple[str, ...], str], Entry] = {}
    for folder, names in by_folder.items():
        for name, entry in names.items():
            split = _stem_and_extension(name, _VOLUME_EXTENSIONS)
            if split and entry.problem is None:
                volume_stems.setdefault((folder, split[0]), entry)

    masks_of: dict[tuple[str, ...], list[tuple[str, ...]]] = {}  # volume rel -> its masks
    planned: list[_Volume] = []
    for entry in layout.entries:
        folder, name = entry.rel[:-1], entry.rel[-1]
        if entry.problem is not None:
            planned.append(_Volume(entry, problem=entry.problem))
            continue
        volume_split = _stem_and_extension(name, _VOLUME_EXTENSIONS)
        if volume_split:
            base = _mask_base(volume_split[0])
            if base is not None:
                owner = volume_stems.get((folder, base))
                if owner is None:
                    planned.append(_Volume(entry, problem=f"named like a mask ({volume_split[0][len(base):]}) but "
                                                         f"there is no {base}.nii or {base}.nii.gz beside it"))
                else:
                    masks_of.setdefault(owner.rel, []).append(entry.rel)
                continue
            planned.append(_Volume(entry))
            continue
        lower = name.lower()
        if lower.endswith(".hdr"):
            stem = name[:-4]
            if not any(stem + ext in by_folder[folder] or stem + ext.upper() in by_folder[folder]
                       for ext in _PAIR_DATA_EXTENSIONS):
                planned.append(_Volume(entry, problem="header without its .img data file"))
            else:
                planned.append(_Volume(entry))
            continue
        data_split = _stem_and_extension(name, _PAIR_DATA_EXTENSIONS)
        if data_split:
            if data_split[0] + ".hdr" in by_folder[folder] or data_split[0] + ".HDR" in by_folder[folder]:
                continue  # read through its .hdr
            planned.append(_Volume(entry, problem=".img data file without its .hdr header"))
            continue
        sidecar = _stem_and_extension(name, _SIDECAR_EXTENSIONS)
        if sidecar and (folder, sidecar[0]) in volume_stems:
            continue  # BIDS metadata of a volume that is read
        if detect.file_kind(os.path.join(layout.root, *entry.rel)) == detect.NIFTI:
            planned.append(_Volume(entry))  # NIfTI content under another name
            continue
        planned.append(_Volume(entry, problem="not a NIfTI file (.nii, .nii.gz or .hdr/.img)"))

    if not use_masks:
        return planned, sum(len(masks) for masks in masks_of.values())
    if not masks_of:
        return planned, 0
    example = next(iter(masks_of.values()))[0][-1]
    labelled: list[_Volume] = []
    for volume in planned:
        if volume.problem is not None:
            labelled.append(volume)
            continue
        masks = masks_of.get(volume.entry.rel, [])
        if len(masks) == 1:
            labelled.append(dataclasses.replace(volume, mask=masks[0]))
        elif masks:
            names = ", ".join(mask[-1] for mask in masks)
            labelled.append(dataclasses.replace(volume, problem=f"has {len(masks)} masks ({names}); keep one"))
        else:
            labelled.append(dataclasses.replace(
                volume, problem=f"has no mask beside it, but other volumes do (e.g. {example}) and masks give "
                                f"the labels, so every volume needs one"))
    return labelled, 0


def _single_file(path: str) -> tuple[str, list[_Volume]]:
    """The root and the one volume of a single-file read, with its mask if one is beside it."""
    root, name = os.path.split(path)
    root = root or "."
    entry = Entry((name,), UNLABELLED, None, ())
    try:
        siblings = os.listdir(root)
    except OSError:
        siblings = []
    if name.lower().endswith(".hdr") and not any(name[:-4] + ext in siblings or name[:-4] + ext.upper() in siblings
                                                 for ext in _PAIR_DATA_EXTENSIONS):
        return root, [_Volume(entry, problem="header without its .img data file")]
    split = _stem_and_extension(name, _VOLUME_EXTENSIONS)
    if split is None:
        return root, [_Volume(entry)]
    masks = sorted(other for other in siblings
                   if (other_split := _stem_and_extension(other, _VOLUME_EXTENSIONS))
                   and _mask_base(other_split[0]) == split[0])
    if len(masks) > 1:
        return root, [_Volume(entry, problem=f"has {len(masks)} masks ({', '.join(masks)}); keep one")]
    return root, [_Volume(entry, mask=(masks[0],) if masks else None)]


# --- voxel access -------------------------------------------------------------------------


def _unrecognised(path: str) -> str:
    """Why nibabel could not recognise a file: a broken gzip stream, or no NIfTI header."""
    if path.lower().endswith(".gz"):
        try:  # nibabel's sniffing also fails on a stream that ends early, well after the header
            with gzip.open(path) as stream:
                while stream.read(1 << 20):
                    pass
        except (OSError, EOFError, zlib.error) as exc:
            return f"truncated or corrupt gzip stream ({exception_text(exc)})"
    return "not a NIfTI file (no NIfTI-1, NIfTI-2 or Analyze header)"


class _Voxels:
    """One NIfTI image's scaled voxel values, read a slab at a time, in canonical (RAS+) order.

    Args:
      path: the file (for a pair, the ``.hdr``).

    Raises:
      BadEntry: the file cannot be opened as a NIfTI/Analyze volume of a supported shape
        and voxel type, or is truncated.
    """

    def __init__(self, path: str) -> None:
        try:
            if os.path.getsize(path) == 0:
                raise BadEntry("empty file (0 bytes)")
            image = nib.load(path)
        except BadEntry:
            raise
        except ImageFileError:
            raise BadEntry(_unrecognised(path)) from None
        except OSError as exc:
            raise BadEntry(os_reason(exc)) from None
        except Exception as exc:  # noqa: BLE001 -- any header parsing failure means a bad file
            raise BadEntry(f"corrupt NIfTI header ({exception_text(exc)})") from None
        if not isinstance(image, nib.analyze.AnalyzeImage):
            raise BadEntry(f"{type(image).__name__} file, not a NIfTI volume")
        dtype = np.dtype(image.get_data_dtype())
        if dtype.kind not in "biuf":
            raise BadEntry(f"voxel type {dtype} has no scalar intensity (complex or RGB data is not read)")
        self.shape = self._shape4(tuple(int(side) for side in image.shape))
        orientation = nib.orientations.io_orientation(image.affine)
        if np.isnan(orientation).any():
            raise BadEntry("its affine has no orientation (degenerate voxel axes)")
        # stored axis of each canonical axis, and whether it runs the other way
        self._stored = {int(orientation[s, 0]): s for s in range(3)}
        self._flipped = {int(orientation[s, 0]): bool(orientation[s, 1] < 0) for s in range(3)}
        self.canonical_shape = tuple(self.shape[self._stored[axis]] for axis in range(3))

        proxy = image.dataobj
        self._slope, self._inter = float(getattr(proxy, "slope", 1.0)), float(getattr(proxy, "inter", 0.0))
        self._scaled = not (self._slope == 1.0 and self._inter == 0.0)
        if nib.is_proxy(proxy):
            self._check_size(proxy, dtype)
        try:
            # Stored values: a memory map for uncompressed files, one decompression for gzip
            # (see the module docstring, Memory); scaled a slice at a time in `stored`.
            raw = np.asanyarray(proxy.get_unscaled() if nib.is_proxy(proxy) else proxy)
        except Exception as exc:  # noqa: BLE001 -- any decoder failure means a bad file
            raise BadEntry(f"truncated or corrupt voxel data ({exception_text(exc)})") from None
        # Views, never copies: add missing axes up to 4, drop trailing size-1 axes beyond.
        self._array = raw[(...,) + (None,) * (4 - raw.ndim)] if raw.ndim < 4 else raw[(...,) + (0,) * (raw.ndim - 4)]

    @staticmethod
    def _shape4(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """``(X, Y, Z, T)``; raises BadEntry for shapes that are not 2-D, 3-D or 4-D images."""
        if len(shape) < 2 or len(shape) > 7:
            raise BadEntry(f"has {len(shape)} dimensions {shape}; expected 2 to 4")
        if any(side < 1 for side in shape):
            raise BadEntry(f"has an empty dimension (shape {shape})")
        if len(shape) > 4 and any(side != 1 for side in shape[4:]):
            raise BadEntry(f"is {len(shape)}-D with shape {shape} (several values per voxel, e.g. a vector "
                           f"field); only 2-D, 3-D and 4-D volumes are read")
        padded = (*shape, 1, 1)[:4]
        return padded[0], padded[1], padded[2], padded[3]

    @staticmethod
    def _check_size(proxy, dtype: np.dtype) -> None:
        """Raises BadEntry if an uncompressed data file is shorter than its header says."""
        data_file = proxy.file_like if isinstance(proxy.file_like, str) else None
        if data_file is None or data_file.lower().endswith(".gz"):
            return  # a gzip stream's length says nothing; decompression finds the end
        expected = int(proxy.offset) + math.prod(proxy.shape) * dtype.itemsize
        try:
            actual = os.path.getsize(data_file)
        except OSError as exc:
            raise BadEntry(f"{os.path.basename(data_file)}: {os_reason(exc)}") from None
        if actual < expected:
            raise BadEntry(f"truncated: the header promises {expected} bytes, the file has {actual}")

    def stored(self, index: tuple[int | slice, ...], volume: int) -> np.ndarray:
        """Scaled values at a (3-D spatial) stored index of one 3-D volume."""
        values = np.asarray(self._array[(*index, volume)])  # reads the pages of a memory map
        if self._scaled:
            values = values * self._slope + self._inter
        # Big-endian files (common from older tools) give big-endian arrays.
        return values.astype(values.dtype.newbyteorder("="), copy=False)

    def stored_slabs(self, volume: int) -> Iterator[np.ndarray]:
        """The 3-D volume's stored slices along its last spatial axis (contiguous on disk)."""
        for index in range(self.shape[2]):
            yield self.stored((slice(None), slice(None), index), volume)

    def plane(self, axis: int, index: int, volume: int) -> np.ndarray:
        """Canonical slice `index` along canonical `axis`, oriented for display (module docstring)."""
        stored_axis = self._stored[axis]
        stored_index: list[int | slice] = [slice(None)] * 3
        stored_index[stored_axis] = self.shape[stored_axis] - 1 - index if self._flipped[axis] else index
        plane = self.stored(tuple(stored_index), volume)
        first, second = (other for other in range(3) if other != axis)
        if self._stored[first] > self._stored[second]:
            plane = plane.T  # stored order of the remaining axes is the reverse of canonical
        if self._flipped[first]:
            plane = plane[::-1, :]
        if self._flipped[second]:
            plane = plane[:, ::-1]
        # Canonical P[i, j] -> rows: j from high to low, columns: i from high to low.
        return np.ascontiguousarray(plane.T[::-1, ::-1])


# --- reading ------------------------------------------------------------------------------


@dataclasses.dataclass
class _VolumeStats:
    """What one pass over a 3-D volume learns: bad voxels, range and a sample for percentiles."""

    nonfinite: int
    low: float
    high: float
    samples: np.ndarray


def _volume_stats(voxels: _Voxels, volume: int) -> _VolumeStats:
    """One pass over a 3-D volume, slab by slab."""
    total = voxels.shape[0] * voxels.shape[1] * voxels.shape[2]
    stride = max(1, math.ceil(total / _MAX_RANGE_SAMPLES))
    nonfinite, low, high, samples = 0, math.inf, -math.inf, []
    for slab in voxels.stored_slabs(volume):
        if slab.dtype.kind == "f":
            finite = np.isfinite(slab)
            if not finite.all():
                nonfinite += int(slab.size - np.count_nonzero(finite))
                slab = slab[finite]
        if slab.size:
            low, high = min(low, float(slab.min())), max(high, float(slab.max()))
            samples.append(slab[slab != 0].ravel()[::stride].astype(np.float64))
    return _VolumeStats(nonfinite, low, high, np.concatenate(samples) if samples else np.zeros(0))


def _robust_range(stats: _VolumeStats) -> tuple[float, float]:
    """The percentile range of the non-zero voxels, or the min..max if that is a single value."""
    if stats.samples.size:
        lo, hi = (float(value) for value in np.percentile(stats.samples, ROBUST_PERCENTILES))
        if hi > lo:
            return lo, hi
    return stats.low, stats.high


def _window(options: ReadOptions) -> tuple[float, float] | None:
    """The intensity range the window option names, or None for per-volume ranges."""
    if not options.window.strip():
        return None
    center, width = parse_window(options.window)
    return window_range(center, width)


class _Reader:
    """Reads volumes into one collector."""

    def __init__(self, root: str, options: ReadOptions) -> None:
        self.root = root
        self.options = options
        self.window = _window(options)
        self.collector = ImageCollector(root, options)

    def read_volume(self, volume: _Volume) -> int:
        """Adds the kept slices of every 3-D volume in a file; returns how many were added."""
        rel = volume.rel
        try:
            if volume.problem is not None:
                raise BadEntry(volume.problem)
            voxels = _Voxels(os.path.join(self.root, *volume.entry.rel))
            mask = self._open_mask(volume, voxels)
        except BadEntry as exc:
            self.collector.skip(rel, exc.reason)
            return 0
        added = 0
        count = voxels.shape[3]
        for index in range(count):
            name = f"{rel}#t{index}" if count > 1 else rel
            try:
                added += self._read_3d(voxels, mask, index, name, volume.entry)
            except BadEntry as exc:
                self.collector.skip(name, exc.reason)
        return added

    def _open_mask(self, volume: _Volume, voxels: _Voxels) -> _Voxels | None:
        if volume.mask is None:
            return None
        mask_name = volume.mask[-1]
        try:
            mask = _Voxels(os.path.join(self.root, *volume.mask))
        except BadEntry as exc:
            raise BadEntry(f"mask {mask_name}: {exc.reason}") from None
        if mask.canonical_shape != voxels.canonical_shape or mask.shape[3] not in (1, voxels.shape[3]):
            raise BadEntry(f"mask {mask_name} has shape {_shape_text(mask)} (in RAS+ order), the volume "
                           f"{_shape_text(voxels)}")
        return mask

    def _read_3d(self, voxels: _Voxels, mask: _Voxels | None, volume: int, name: str, entry: Entry) -> int:
        """Adds the kept slices of one 3-D volume. Raises BadEntry for the volume as a whole."""
        stats = _volume_stats(voxels, volume)
        if stats.nonfinite:
            total = voxels.shape[0] * voxels.shape[1] * voxels.shape[2]
            raise BadEntry(f"{stats.nonfinite} of {total} voxels are NaN or infinite")
        if not stats.high > stats.low:
            raise BadEntry(f"every voxel is {stats.low:g} (an empty volume)")
        mask_volume = 0
        if mask is not None:
            mask_volume = volume if mask.shape[3] > 1 else 0
            if _volume_stats(mask, mask_volume).nonfinite:
                raise BadEntry("its mask has NaN or infinite voxels")
        intensity_range = self.window or _robust_range(stats)

        singles = [axis for axis, side in enumerate(voxels.canonical_shape) if side == 1]
        if len(singles) > 1:
            raise BadEntry(f"is {_shape_text(voxels)}, not an image (more than one axis of size 1)")
        axis = singles[0] if singles else self.options.slice_axis
        kept = range(1) if singles else self.options.kept_slices(voxels.canonical_shape[axis])
        height, width = (voxels.canonical_shape[other] for other in reversed(range(3)) if other != axis)
        if height < MIN_IMAGE_SIDE or width < MIN_IMAGE_SIDE:
            raise BadEntry(f"slices along {AXIS_LETTERS[axis]} are {width}×{height}, smaller than the "
                           f"{MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE} minimum; try another data.slice_axis")
        prefix = (name + ":") if "#" in name else (name + "#")
        added = nonempty = 0
        for index in kept:
            plane = voxels.plane(axis, index, volume)
            if self.options.skip_empty_slices and not singles and plane.min() == plane.max():
                continue
            nonempty += 1
            class_name = entry.class_name
            if mask is not None:
                lesion = bool(np.any(mask.plane(axis, index, mask_volume) != 0))
                class_name = MASK_CLASSES[int(lesion)]
            slice_name = name if singles else f"{prefix}{AXIS_LETTERS[axis]}{index}"
            try:
                self.collector.add(plane, entry=slice_name, class_name=class_name, split=entry.split,
                                   intensity_range=intensity_range, subject=name.partition("#")[0])
            except BadEntry as exc:
                self.collector.skip(slice_name, exc.reason)
                continue
            added += 1
        if not nonempty:
            raise BadEntry(f"no non-empty slice among slices {kept.start}..{kept.stop - 1} along "
                           f"{AXIS_LETTERS[axis]} (all have a single value)")
        return added


def _shape_text(voxels: _Voxels) -> str:
    spatial = "×".join(str(side) for side in voxels.canonical_shape)
    return spatial + (f"×{voxels.shape[3]}" if voxels.shape[3] > 1 else "")


def read(location: str | os.PathLike[str], options: ReadOptions) -> SourceImages:
    """Reads the slices of one NIfTI volume or of a folder of them (see the module docstring).

    Args:
      location: a ``.nii``, ``.nii.gz`` or ``.hdr`` file, or a folder. ``~`` is expanded.
      options: output size and channels, ``skip_bad``, ``window``, ``slice_axis``,
        ``slice_range`` and ``skip_empty_slices``.

    Returns:
      A `SourceImages` with slices in order of volume path, then 4th-axis volume, then
      slice index.

    Raises:
      DataError: one line naming the file and the problem (see the module docstring
        for which problems ``skip_bad`` skips).
      UsageError: an invalid ``window``.
    """
    path = os.path.expanduser(os.fspath(location))
    notes: list[str] = []
    layout = None
    if os.path.isdir(path):
        layout = collect_entries(path)
        use_masks = layout.class_names == (UNLABELLED,)
        volumes, ignored_masks = _plan(layout, use_masks)
        root = layout.root
        masked = any(volume.mask is not None for volume in volumes)
        class_names = MASK_CLASSES if masked else layout.class_names
        if ignored_masks:
            notes.append(f"{ignored_masks} mask file(s) ignored: class folders give the labels")
    else:
        if not os.path.lexists(path):
            raise DataError(f"{one_line(path)}: no such file or folder")
        root, volumes = _single_file(path)
        class_names = MASK_CLASSES if volumes[0].mask is not None else (UNLABELLED,)

    reader = _Reader(root, options)
    good_per_folder: dict[tuple[str, ...], int] = {}
    for volume in volumes:
        added = reader.read_volume(volume)
        if added:
            good_per_folder[volume.entry.folder] = good_per_folder.get(volume.entry.folder, 0) + added
    result = reader.collector.result(class_names, layout.ignored if layout is not None else ())
    if layout is not None:
        check_folders_readable(layout, good_per_folder, result.skipped)
    if notes:
        result = dataclasses.replace(result, raw={**result.raw, "notes": notes})
    return result
