"""What every data source shares: its options, its result, and how it reports bad entries.

A source module (``folder``, ``dicom``, ``nifti``, ``medmnist``, ``tfds``) exposes
``read(location, options) -> SourceImages``. :class:`ImageCollector` is the loop body
they share: each decoded 2-D image goes in raw, is preprocessed at once (so full-size
pixels are never all in memory), and its raw size, bit depth and intensity range are
tallied for ``jaxmed data inspect``. Bad entries go through :meth:`ImageCollector.skip`,
which raises a one-line :class:`jaxmed.errors.DataError` unless ``skip_bad`` is set, in
which case the entry and its reason are listed -- never dropped silently.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from collections import Counter
from typing import Any, BinaryIO

import numpy as np

from jaxmed.data.options import DataOptions
from jaxmed.data.preprocess import preprocess
from jaxmed.errors import DataError, UsageError

MIN_IMAGE_SIDE = 8
# Letters naming the canonical (RAS+) volume axes in entry names: sagittal, coronal, axial slices.
AXIS_LETTERS = "xyz"


@dataclasses.dataclass(frozen=True)
class ReadOptions(DataOptions):
    """The data options (`jaxmed.data.options.DataOptions`) with the output images' size, as readers take them.

    Attributes:
      image_size: side of the square output images.
      channels: 1 (grayscale) or 3 (RGB).
    """

    image_size: int = 128
    channels: int = 1

    def __post_init__(self):
        super().__post_init__()
        if self.channels not in (1, 3):
            raise UsageError(f"channels must be 1 or 3, got {self.channels}")
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, (int, np.integer)) \
                or self.image_size < 1:
            raise UsageError(f"image_size must be a positive integer, got {self.image_size!r}")

    def cache_key(self) -> dict:
        """The options that change what a reader returns (not the spec's spelling, not the phantom options)."""
        return {name: getattr(self, name) for name in ("image_size", "channels", "skip_bad", "window", "slice_axis",
                                                        "slice_start", "slice_stop", "skip_empty_slices")}


# eq=False: the generated __eq__ would compare numpy arrays with ==, which is ambiguous.
@dataclasses.dataclass(frozen=True, eq=False)
class SourceImages:
    """Images read from a source, with labels and where each one came from.

    Attributes:
      images: (N, H, W, C) float32 in [-1, 1], preprocessed to image_size x image_size x
        channels.
      labels: (N,) int32 indices into `class_names`.
      class_names: class names (sorted folder names for folders), or ``("unlabelled",)``.
      splits: (N,) array of split names (``"train"``, ``"test"``, ``"val"``) when the
        source has predefined splits, else None.
      files: where each image came from, relative to the source root with ``/``
        separators (slices of a volume or series: ``path#index``).
      skipped: ``(entry, reason)`` of every entry skipped under ``skip_bad=True``.
      raw: what the images looked like before preprocessing (see `RawStats.summary`).
      subjects: for sources whose images are slices or frames of larger units (a NIfTI
        volume, a DICOM series, a 3-D MedMNIST sample), the unit of each image; None
        when every image stands alone. Splits keep a subject on one side.
      ignored: ``(entry, reason)`` of every file set aside as a document, not data (see
        `jaxmed.data.sources.documents`); never an error.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    splits: np.ndarray | None
    files: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]
    raw: dict[str, Any] = dataclasses.field(default_factory=dict)
    subjects: tuple[str, ...] | None = None
    ignored: tuple[tuple[str, str], ...] = ()


class BadEntry(Exception):
    """A single file or folder that cannot be used; `reason` excludes the path."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def one_line(text: str) -> str:
    """`text` made printable on one line (file names may hold newlines or undecodable bytes)."""
    # Undecodable bytes arrive as surrogates (os.fsdecode); printing those would raise.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def exception_text(exc: BaseException) -> str:
    """A short one-line description of a decoder error."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def os_reason(exc: OSError) -> str:
    """A one-line reason for an operating-system error on an entry."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    return " ".join((exc.strerror or str(exc)).split()).lower() or type(exc).__name__


def open_entry(path: str) -> tuple[BinaryIO, int]:
    """Opens a file for binary reading and returns it with its size in bytes.

    Raises:
      BadEntry: if it cannot be opened or sized (permission denied, symlink loop, ...).
    """
    try:
        handle = open(path, "rb")  # noqa: SIM115 -- the caller closes it
    except OSError as exc:
        raise BadEntry(os_reason(exc)) from None
    try:
        return handle, os.fstat(handle.fileno()).st_size
    except OSError as exc:
        handle.close()
        raise BadEntry(os_reason(exc)) from None


def bit_depth(pixels: np.ndarray) -> str:
    """A name for the stored sample type: "8-bit", "16-bit", "16-bit signed", "float32", ..."""
    dtype = pixels.dtype
    if dtype == np.bool_:
        return "1-bit"
    if np.issubdtype(dtype, np.integer):
        return f"{8 * dtype.itemsize}-bit" + (" signed" if np.issubdtype(dtype, np.signedinteger) else "")
    return str(dtype)


class RawStats:
    """Tallies of raw image sizes, sample types and intensities, as read from the source."""

    def __init__(self) -> None:
        self.sizes: Counter[str] = Counter()
        self.bit_depths: Counter[str] = Counter()
        self.low = np.inf
        self.high = -np.inf

    def record(self, pixels: np.ndarray, count: int = 1) -> None:
        """Counts one raw image (H, W) or (H, W, C), or `count` of them stacked on a leading axis."""
        height, width = pixels.shape[:2] if count == 1 else pixels.shape[1:3]
        self.sizes[f"{width}x{height}"] += count
        self.bit_depths[bit_depth(pixels)] += count
        if pixels.size:
            self.low = min(self.low, float(np.min(pixels)))
            self.high = max(self.high, float(np.max(pixels)))

    def summary(self) -> dict[str, Any]:
        """JSON-able: {"sizes": {"WxH": count}, "bit_depths": {name: count}, "intensity": [min, max]}."""
        intensity = [self.low, self.high] if self.low <= self.high else None
        return {"sizes": dict(self.sizes.most_common()), "bit_depths": dict(self.bit_depths.most_common()),
                "intensity": intensity}


class ImageCollector:
    """Accumulates preprocessed images, labels and bookkeeping for one read of a source.

    Args:
      root: the source's root, for error messages (entries are named relative to it).
      options: the read options (size, channels, skip_bad).
    """

    def __init__(self, root: str, options: ReadOptions) -> None:
        self.root = root
        self.options = options
        self.raw = RawStats()
        self._chunks: list[np.ndarray] = []
        self._classes: list[str] = []
        self._splits: list[str | None] = []
        self._files: list[str] = []
        self._subjects: list[str | None] = []
        self._skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self._files)

    @property
    def skipped(self) -> tuple[tuple[str, str], ...]:
        return tuple(self._skipped)

    def add(self, pixels: np.ndarray, *, entry: str, class_name: str, split: str | None = None,
            intensity_range: tuple[float, float] | None = None, subject: str | None = None) -> None:
        """Preprocesses one raw 2-D image (H, W) or (H, W, C) and keeps it.

        `subject` names the volume or series the image is a slice of (None: it stands alone).

        Raises:
          BadEntry: if the image is too small or its values cannot be scaled.
        """
        height, width = pixels.shape[:2]
        if height < MIN_IMAGE_SIDE or width < MIN_IMAGE_SIDE:
            raise BadEntry(f"image is {width}×{height}, smaller than the {MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE} minimum")
        try:
            image = preprocess(pixels[None], image_size=self.options.image_size, channels=self.options.channels,
                               intensity_range=intensity_range)
        except ValueError as exc:  # preprocess rejects values it cannot scale (NaN, out of range)
            raise BadEntry(" ".join(str(exc).split())) from None
        self.raw.record(pixels)
        self._chunks.append(image)
        self._classes.append(class_name)
        self._splits.append(split)
        self._files.append(entry)
        self._subjects.append(subject)

    def add_many(self, pixels: np.ndarray, *, entries: list[str], class_names: list[str],
                 split: str | None = None) -> None:
        """Adds images of one size, stacked (N, H, W) or (N, H, W, C), in one preprocessing call.

        If any of them cannot be used, they are added one by one instead, so each bad one
        is skipped (or raised) under its own name.
        """
        height, width = pixels.shape[1:3]
        try:
            if height < MIN_IMAGE_SIDE or width < MIN_IMAGE_SIDE:
                raise ValueError("too small")
            images = preprocess(pixels, image_size=self.options.image_size, channels=self.options.channels)
        except ValueError:
            for one, entry, class_name in zip(pixels, entries, class_names, strict=True):
                try:
                    self.add(one, entry=entry, class_name=class_name, split=split)
                except BadEntry as exc:
                    self.skip(entry, exc.reason)
            return
        self.raw.record(pixels, count=len(pixels))
        self._chunks.append(images)
        self._classes.extend(class_names)
        self._splits.extend([split] * len(pixels))
        self._files.extend(entries)
        self._subjects.extend([None] * len(pixels))

    def skip(self, entry: str, reason: str) -> None:
        """Records an unusable entry, or raises DataError naming it unless skip_bad is set."""
        if not self.options.skip_bad:
            raise DataError(f"{one_line(os.path.join(self.root, entry))}: {one_line(reason)}")
        self._skipped.append((entry, reason))

    def result(self, class_names: tuple[str, ...] | None = None,
               ignored: tuple[tuple[str, str], ...] = ()) -> SourceImages:
        """The images read so far.

        Args:
          class_names: the label order; default the sorted class names seen.
          ignored: the documents set aside when the source was listed (`layout.Layout.ignored`).

        Raises:
          DataError: if nothing readable was found.
        """
        if not self._files:
            detail = (f" ({len(self._skipped)} skipped, first {one_line(self._skipped[0][0])}: "
                      f"{one_line(self._skipped[0][1])})") if self._skipped else ""
            raise DataError(f"{one_line(self.root)}: no readable images{detail}")
        class_names = tuple(sorted(set(self._classes))) if class_names is None else tuple(class_names)
        label_of = {name: index for index, name in enumerate(class_names)}
        has_splits = any(split is not None for split in self._splits)
        has_subjects = any(subject is not None for subject in self._subjects)
        return SourceImages(
            images=np.concatenate(self._chunks),
            labels=np.asarray([label_of[name] for name in self._classes], dtype=np.int32),
            class_names=class_names,
            splits=np.asarray([split or "" for split in self._splits], dtype=np.str_) if has_splits else None,
            files=tuple(self._files),
            skipped=tuple(self._skipped),
            raw=self.raw.summary(),
            subjects=tuple(subject or entry for subject, entry in zip(self._subjects, self._files))
            if has_subjects else None,
            ignored=tuple(ignored),
        )
