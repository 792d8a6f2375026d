"""Reads a Kaggle-style folder of image files into the model's convention.

:func:`read_image_folder` turns a folder of scans into NHWC ``float32`` images in
``[-1, 1]`` with integer labels, one file at a time (each image is preprocessed into a
preallocated array as soon as it is decoded, so raw full-size images are never all in
memory at once).

Layouts understood (chosen from the folders directly inside the root):

(a) Class sub-folders: ``root/<class>/...``. Class names are the sorted folder names
    and a label is the index of its class. Sub-folders inside a class folder are
    searched recursively, so ``root/yes/patient1/a.jpg`` is class ``yes``.
(b) A flat folder: ``root/*.png`` with no sub-folders. Every image gets label 0 of the
    single class ``"unlabelled"``.
(c) Predefined splits: ``root/Training/<class>/...`` and ``root/Testing/<class>/...``.
    Split folder names are matched case-insensitively: ``training`` or ``train`` ->
    ``"train"``, ``testing`` or ``test`` -> ``"test"``, ``validation``, ``valid`` or
    ``val`` -> ``"val"``. Class names are the sorted union over the splits (a class
    missing from one split is fine). If every split folder holds images directly and
    none has class folders, the images are unlabelled, as in (b).

Files are read in order of their path relative to the root (compared component by
component), so the same folder always gives the same arrays.

Formats are detected from the file content, not the extension: PNG, JPEG, TIFF and BMP
are decoded (a PNG named ``.jpg`` reads fine; a text file named ``.png`` is reported as
corrupt). Pixel modes: 1-bit, 8-bit gray (``L``), 16-bit gray (``I;16`` and variants,
and ``I`` when its values fit in 0..65535), 32-bit float (``F``) with values in
``[0, 1]``, gray + alpha (``LA``), palette (``P``, read through its palette: gray
palettes as gray, others as RGB), RGB, RGBA and other colour modes Pillow converts to
RGB (CMYK, YCbCr). Integer images are scaled by the full range of their dtype (8-bit by
255, 16-bit by 65535), as in :func:`jaxmed.data.preprocess.to_model_range`. Alpha is
dropped, not composited. An EXIF orientation tag is applied, so an image is read the
way viewers show it. Multi-page TIFFs and animated PNGs are refused rather than cut to
their first frame, since a volume stored as a stack is not one 2-D image.

Ignored silently: hidden entries (names starting with ``.``, which also covers macOS
``._*`` resource forks and ``.DS_Store``), ``Thumbs.db``, ``desktop.ini`` and
``__MACOSX`` folders -- the litter that zip tools and file browsers leave in data sets.
Every other file under the root is either read or reported.

Problems are reported as :class:`jaxmed.errors.DataError` with one line naming the file
or folder and the problem. With ``skip_bad=True``, problems with single entries
(unreadable, corrupt or truncated files, non-image files, images smaller than 8x8,
broken symbolic links, symlink loops, permission errors, files outside any class
folder) are recorded in :attr:`SourceImages.skipped` instead and reading continues.
Problems with the folder as a whole stay errors even then: a missing root, a root that
is a file, no images at all, no readable images, and a class folder with no (readable)
images -- a class with no examples cannot be trained on.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from jaxmed.data.preprocess import preprocess
from jaxmed.errors import DataError, UsageError

# Extensions that claim to be images. Content decides the format; the extension only
# decides how a file Pillow cannot identify is described (corrupt image vs. not an image).
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})

# Pillow plugins tried when opening. Restricting them matters: some plugins (TGA) accept
# almost any bytes, which would turn a stray binary file into a garbage "image".
_PIL_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "TIFF", "BMP")
# MPO is how Pillow reports JPEGs written by cameras with extra (preview) frames.
_ACCEPTED_FORMATS: frozenset[str] = frozenset({"PNG", "JPEG", "MPO", "TIFF", "BMP"})
_FORMAT_NAMES = "PNG, JPEG, TIFF or BMP"

# Names ignored silently, compared lower-case (Windows file names are case-insensitive).
IGNORED_NAMES: frozenset[str] = frozenset({"thumbs.db", "desktop.ini", ".ds_store", "__macosx"})

MIN_IMAGE_SIDE = 8

# Folder name (lower-case) -> split name reported in `SourceImages.splits`.
SPLIT_NAMES: dict[str, str] = {
    "training": "train",
    "train": "train",
    "testing": "test",
    "test": "test",
    "validation": "val",
    "valid": "val",
    "val": "val",
}

UNLABELLED = "unlabelled"


# eq=False: the generated __eq__ would compare numpy arrays with ==, which is ambiguous.
@dataclasses.dataclass(frozen=True, eq=False)
class SourceImages:
    """Images read from a folder, with labels and where each one came from.

    Attributes:
      images: (N, H, W, C) float32 in [-1, 1], preprocessed to image_size x image_size x
        channels.
      labels: (N,) int32 indices into `class_names` (all 0 for a flat folder).
      class_names: sorted class folder names, or ``("unlabelled",)`` for a flat folder.
      splits: (N,) array of split names (``"train"``, ``"test"``, ``"val"``) when the
        folder has predefined split folders, else None.
      files: path of each image relative to the root, with ``/`` separators.
      skipped: ``(path, reason)`` of every entry skipped under ``skip_bad=True``; paths
        are relative to the root like `files`.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    splits: np.ndarray | None
    files: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]


class _BadEntry(Exception):
    """A single file or folder that cannot be used; `reason` excludes the path."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class _Entry:
    """A file to read (problem is None) or an entry already known to be bad."""

    rel: tuple[str, ...]
    class_name: str
    split: str | None
    folder: tuple[str, ...]  # the class folder it belongs to, relative to the root
    problem: str | None = None


def _ignored(name: str) -> bool:
    """Whether a directory entry is system litter to skip silently."""
    return name.startswith(".") or name.lower() in IGNORED_NAMES


def _one_line(text: str) -> str:
    """`text` made printable on one line (file names may hold newlines or undecodable bytes)."""
    # Undecodable bytes arrive as surrogates (os.fsdecode); printing those would raise.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _exception_text(exc: BaseException) -> str:
    """A short one-line description of a decoder error."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _os_reason(exc: OSError) -> str:
    """A one-line reason for an operating-system error on an entry."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    return " ".join((exc.strerror or str(exc)).split()).lower() or type(exc).__name__


def _classify(path: str, ancestors: frozenset[str]) -> tuple[str, str]:
    """Says what a directory entry is, following symbolic links safely.

    Args:
      path: the entry's path.
      ancestors: real paths of the folders that contain it, up to the root.

    Returns:
      ``("dir", real_path)``, ``("file", "")`` or ``("bad", reason)``.
    """
    try:
        is_link = os.path.islink(path)
        info = os.stat(path)  # follows links: a loop raises ELOOP, a dangling link ENOENT
    except FileNotFoundError:
        return ("bad", "broken symbolic link") if os.path.islink(path) else ("bad", "vanished while reading")
    except OSError as exc:
        return "bad", _os_reason(exc)
    if stat.S_ISDIR(info.st_mode):
        real = os.path.realpath(path)
        # A folder that is its own ancestor would make the walk endless.
        if real in ancestors:
            return "bad", "symlink loop (links back to a folder that contains it)" if is_link else "folder loop"
        return "dir", real
    if stat.S_ISREG(info.st_mode):
        return "file", ""
    # Opening a FIFO would block forever; devices and sockets are not data either.
    return "bad", "not a regular file (a pipe, socket or device)"


def _list_dir(directory: str) -> list[str]:
    """Sorted names in `directory` that are not ignored. Raises OSError."""
    with os.scandir(directory) as it:
        return sorted(entry.name for entry in it if not _ignored(entry.name))


def _walk_class_folder(root: str, folder: tuple[str, ...], ancestors: frozenset[str], class_name: str,
                       split: str | None) -> list[_Entry]:
    """All files under a class folder, recursively, with entries for what cannot be used.

    Symbolic links to folders are followed, but a folder is never entered twice on one
    path from the root, so symlink loops end (as bad entries) instead of hanging.
    """
    entries: list[_Entry] = []
    stack: list[tuple[tuple[str, ...], frozenset[str]]] = [(folder, ancestors)]
    while stack:  # iterative, so deep trees cannot hit Python's recursion limit
        rel_dir, above = stack.pop()
        try:
            names = _list_dir(os.path.join(root, *rel_dir))
        except OSError as exc:
            entries.append(_Entry(rel_dir, class_name, split, folder, f"cannot list folder: {_os_reason(exc)}"))
            continue
        for name in names:
            rel = (*rel_dir, name)
            kind, detail = _classify(os.path.join(root, *rel), above)
            if kind == "dir":
                stack.append((rel, above | {detail}))
            elif kind == "file":
                entries.append(_Entry(rel, class_name, split, folder))
            else:
                entries.append(_Entry(rel, class_name, split, folder, detail))
    return entries


def _top_level(root: str, rel_dir: tuple[str, ...], ancestors: frozenset[str]
               ) -> tuple[list[tuple[str, str]], list[tuple[str, ...]], list[tuple[tuple[str, ...], str]]]:
    """Splits a folder's entries into sub-folders, files and bad entries.

    Returns:
      ``(dirs, files, bad)``: dirs as ``(name, real_path)``, files as relative paths,
      bad entries as ``(relative_path, reason)``.

    Raises:
      DataError: if the folder cannot be listed (its layout would be unknown).
    """
    path = os.path.join(root, *rel_dir)
    try:
        names = _list_dir(path)
    except OSError as exc:
        raise DataError(f"{_one_line(path)}: cannot list folder: {_os_reason(exc)}") from None
    dirs, files, bad = [], [], []
    for name in names:
        kind, detail = _classify(os.path.join(path, name), ancestors)
        if kind == "dir":
            dirs.append((name, detail))
        elif kind == "file":
            files.append((*rel_dir, name))
        else:
            bad.append(((*rel_dir, name), detail))
    return dirs, files, bad


def _collect(root: str) -> tuple[list[_Entry], tuple[str, ...], bool]:
    """Finds the layout and every entry to read.

    Returns:
      ``(entries, class_names, has_splits)``.

    Raises:
      DataError: on layout problems (mixed split and class folders, two folders for
        one split, empty class or split folders, nothing to read).
    """
    root_real = os.path.realpath(root)
    dirs, files, bad = _top_level(root, (), frozenset({root_real}))
    split_of = {name: SPLIT_NAMES.get(name.lower()) for name, _ in dirs}
    entries: list[_Entry] = []

    if not dirs:  # (b) flat folder
        entries += [_Entry(rel, UNLABELLED, None, ()) for rel in files]
        entries += [_Entry(rel, UNLABELLED, None, (), reason) for rel, reason in bad]
        if not entries:
            raise DataError(f"{_one_line(root)}: no images found")
        return entries, (UNLABELLED,), False

    splits_found = [name for name, split in split_of.items() if split]
    if not splits_found:  # (a) class folders
        for name, real in dirs:
            entries += _walk_class_folder(root, (name,), frozenset({root_real, real}), name, None)
        outside = "file is outside any class folder"
        entries += [_Entry(rel, "", None, (), outside) for rel in files]
        entries += [_Entry(rel, "", None, (), reason) for rel, reason in bad]
        class_names = tuple(sorted(name for name, _ in dirs))
        _check_folders_not_empty(root, entries, [(name,) for name, _ in dirs])
        return entries, class_names, False

    # (c) predefined splits: every top-level folder must be a split folder, or the
    # layout is ambiguous (is "yes" a class beside the splits, or a mistake?).
    others = [name for name, split in split_of.items() if not split]
    if others:
        raise DataError(f"{_one_line(root)}: mixes split folders ({', '.join(splits_found)}) with other folders "
                        f"({', '.join(others)}); move the others into the split folders or remove them")
    by_split: dict[str, str] = {}
    for name in splits_found:
        if split_of[name] in by_split:
            raise DataError(f"{_one_line(root)}: folders {by_split[split_of[name]]!r} and {name!r} are both the "
                            f"{split_of[name]!r} split; keep one")
        by_split[split_of[name]] = name
    outside = "file is outside any split folder"
    entries += [_Entry(rel, "", None, (), outside) for rel in files]
    entries += [_Entry(rel, "", None, (), reason) for rel, reason in bad]

    listed = {name: _top_level(root, (name,), frozenset({root_real, real})) for name, real in dirs}
    labelled = any(sub_dirs for sub_dirs, _, _ in listed.values())
    class_folders: list[tuple[str, ...]] = []
    class_names: set[str] = set()
    for (name, real), (sub_dirs, sub_files, sub_bad) in zip(dirs, listed.values()):
        split = split_of[name]
        if not (sub_dirs or sub_files or sub_bad):
            raise DataError(f"{_one_line(os.path.join(root, name))}: split folder has no images")
        if not labelled:  # every split holds its images directly: unlabelled splits
            entries += [_Entry(rel, UNLABELLED, split, (name,)) for rel in sub_files]
            entries += [_Entry(rel, UNLABELLED, split, (name,), reason) for rel, reason in sub_bad]
            class_folders.append((name,))
            continue
        for class_name, class_real in sub_dirs:
            folder = (name, class_name)
            entries += _walk_class_folder(root, folder, frozenset({root_real, real, class_real}), class_name, split)
            class_folders.append(folder)
            class_names.add(class_name)
        entries += [_Entry(rel, "", split, (), "file is outside any class folder") for rel in sub_files]
        entries += [_Entry(rel, "", split, (), reason) for rel, reason in sub_bad]
    _check_folders_not_empty(root, entries, class_folders)
    return entries, (tuple(sorted(class_names)) if labelled else (UNLABELLED,)), True


def _check_folders_not_empty(root: str, entries: list[_Entry], folders: list[tuple[str, ...]]) -> None:
    """Raises DataError for the first class folder with nothing in it (not even bad files)."""
    occupied = {entry.folder for entry in entries}
    for folder in sorted(folders):
        if folder not in occupied:
            raise DataError(f"{_one_line(os.path.join(root, *folder))}: class folder has no images; a class with "
                            f"no examples cannot be trained on (add images or remove the folder)")


def _pixels(image: Image.Image) -> np.ndarray:
    """The pixel array of a loaded image, in a dtype whose full range is its intensity scale.

    Returns:
      ``(H, W)`` uint8/uint16/float32 or ``(H, W, 3|4)`` uint8.

    Raises:
      _BadEntry: for pixel modes or values with no defined intensity scale.
    """
    mode = image.mode
    if mode in ("L", "RGB", "RGBA"):
        return np.asarray(image)
    if mode.startswith("I;16"):
        # I;16B is big-endian; astype gives the native byte order preprocess expects.
        return np.asarray(image).astype(np.uint16)
    if mode == "I":
        # 32-bit integer pixels: in practice 16-bit data (older 16-bit PNG decoding, some
        # TIFF writers). Mapping int32's full range would squash them to one grey.
        values = np.asarray(image)
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi > 65535:
            raise _BadEntry(f"32-bit integer pixel values span [{lo}, {hi}], outside the 16-bit range 0..65535 "
                            f"this reader maps to intensities")
        return values.astype(np.uint16)
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        if not np.all(np.isfinite(values)):
            raise _BadEntry("32-bit float pixels contain NaN or infinite values")
        lo, hi = float(values.min()), float(values.max())
        if lo < 0.0 or hi > 1.0:
            raise _BadEntry(f"32-bit float pixel values span [{lo:g}, {hi:g}], outside [0, 1]; "
                            f"this reader has no intensity scale for them")
        return values
    if mode == "1":
        return np.asarray(image.convert("L"))
    if mode in ("LA", "La"):
        return np.asarray(image.getchannel(0))  # alpha dropped, as preprocess does for RGBA
    if mode in ("P", "PA"):
        # Through RGBA when there is transparency: converting such a palette straight to
        # RGB makes Pillow warn. Alpha is dropped afterwards.
        transparent = mode == "PA" or "transparency" in image.info
        rgb = np.asarray(image.convert("RGBA" if transparent else "RGB"))[..., :3]
        # A gray palette (common for exported scans) is gray data: keep its exact values
        # instead of a luma sum that float rounding may move by one step.
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return np.ascontiguousarray(rgb[..., 0])
        return rgb
    if mode in ("RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(image.convert("RGB"))
    raise _BadEntry(f"unsupported pixel mode {mode!r}")


def _load(path: str) -> np.ndarray:
    """Decodes one image file, checking it fully.

    Args:
      path: the file.

    Returns:
      Its pixels, see :func:`_pixels`.

    Raises:
      _BadEntry: with the reason the file cannot be used.
    """
    claims_image = os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS
    corrupt = "truncated or corrupt image"
    try:
        handle = open(path, "rb")  # noqa: SIM115 -- closed below; open errors are reported
    except OSError as exc:
        raise _BadEntry(_os_reason(exc)) from None
    with handle:
        try:
            size = os.fstat(handle.fileno()).st_size
        except OSError as exc:
            raise _BadEntry(_os_reason(exc)) from None
        if size == 0:
            raise _BadEntry(f"{corrupt} (empty file, 0 bytes)" if claims_image else "not an image file (empty file)")
        # Pass 1: verify() checks the structure (chunk CRCs for PNG) without decoding; a
        # verified image object cannot be loaded, hence the second open.
        try:
            with Image.open(handle, formats=_PIL_FORMATS) as probe:
                probe.verify()
        except UnidentifiedImageError:
            if claims_image:
                raise _BadEntry(f"{corrupt} (content is not {_FORMAT_NAMES} data)") from None
            raise _BadEntry(f"not an image file (readable formats: {_FORMAT_NAMES})") from None
        except Image.DecompressionBombError as exc:
            raise _BadEntry(f"image too large to decode safely ({_exception_text(exc)})") from None
        except Exception as exc:  # noqa: BLE001 -- any decoder failure means a bad file, not a bug here
            raise _BadEntry(f"{corrupt} ({_exception_text(exc)})") from None
        # Pass 2: decode every pixel; truncated JPEGs only fail here.
        try:
            handle.seek(0)
            with Image.open(handle, formats=_PIL_FORMATS) as image:
                if image.format not in _ACCEPTED_FORMATS:
                    raise _BadEntry(f"unsupported image format {image.format}")
                frames = getattr(image, "n_frames", 1)
                if frames > 1 and image.format != "MPO":
                    raise _BadEntry(f"{image.format} has {frames} frames (a stack or animation); this reader takes "
                                    f"one 2-D image per file")
                image.load()
                upright = ImageOps.exif_transpose(image)
                width, height = upright.size
                if width < MIN_IMAGE_SIDE or height < MIN_IMAGE_SIDE:
                    raise _BadEntry(f"image is {width}×{height}, smaller than the "
                                    f"{MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE} minimum")
                return _pixels(upright)
        except _BadEntry:
            raise
        except Image.DecompressionBombError as exc:
            raise _BadEntry(f"image too large to decode safely ({_exception_text(exc)})") from None
        except Exception as exc:  # noqa: BLE001 -- any decoder failure means a bad file, not a bug here
            raise _BadEntry(f"{corrupt} ({_exception_text(exc)})") from None


def read_image_folder(root: str | os.PathLike[str], *, image_size: int, channels: int = 1,
                      skip_bad: bool = False) -> SourceImages:
    """Reads every image under a folder of scans (see the module docstring for layouts).

    Args:
      root: the folder. ``~`` is expanded.
      image_size: side of the square output images; each image is resized (stretched
        if not square) with :func:`jaxmed.data.preprocess.preprocess`.
      channels: 1 (grayscale, BT.601 luma for colour images) or 3 (RGB; gray images
        are replicated).
      skip_bad: record unusable files in `SourceImages.skipped` and carry on, instead
        of raising on the first one.

    Returns:
      A `SourceImages` with the images in order of relative path.

    Raises:
      UsageError: if `image_size` or `channels` is invalid.
      DataError: one line naming the file or folder and the problem (see the module
        docstring for which problems `skip_bad` skips).
    """
    if channels not in (1, 3):
        raise UsageError(f"read_image_folder: channels must be 1 or 3, got {channels}")
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise UsageError(f"read_image_folder: image_size must be a positive integer, got {image_size!r}")
    root_str = os.fspath(Path(root).expanduser())
    if not os.path.exists(root_str):
        if os.path.islink(root_str):
            raise DataError(f"{_one_line(root_str)}: broken symbolic link, no such folder")
        raise DataError(f"{_one_line(root_str)}: no such folder")
    if not os.path.isdir(root_str):
        raise DataError(f"{_one_line(root_str)}: is a file, not a folder of images")

    entries, class_names, has_splits = _collect(root_str)
    # Component-wise order: "a/x" before "a b/x", unlike plain string order.
    entries.sort(key=lambda entry: entry.rel)
    label_of = {name: index for index, name in enumerate(class_names)}

    readable = [entry for entry in entries if entry.problem is None]
    # Preallocated for the files that may be readable; trimmed once if some are skipped.
    images = np.empty((len(readable), image_size, image_size, channels), dtype=np.float32)
    labels: list[int] = []
    splits: list[str] = []
    files: list[str] = []
    skipped: list[tuple[str, str]] = []
    good_per_folder: dict[tuple[str, ...], int] = {}

    for entry in entries:
        rel = "/".join(entry.rel)
        reason = entry.problem
        if reason is None:
            try:
                pixels = _load(os.path.join(root_str, *entry.rel))
                # One image at a time, so peak memory is one raw image plus the output.
                images[len(files)] = preprocess(pixels[None], image_size=image_size, channels=channels)[0]
            except _BadEntry as exc:
                reason = exc.reason
            except ValueError as exc:  # preprocess rejects values it cannot scale
                reason = " ".join(str(exc).split())
        if reason is not None:
            if not skip_bad:
                raise DataError(f"{_one_line(os.path.join(root_str, *entry.rel))}: {_one_line(reason)}")
            skipped.append((rel, reason))
            continue
        files.append(rel)
        labels.append(label_of[entry.class_name])
        if has_splits:
            splits.append(entry.split or "")
        good_per_folder[entry.folder] = good_per_folder.get(entry.folder, 0) + 1

    if not files:
        first_rel, first_reason = skipped[0]
        raise DataError(f"{_one_line(root_str)}: no readable images ({len(skipped)} skipped, first "
                        f"{_one_line(first_rel)}: {_one_line(first_reason)})")
    _check_folders_readable(root_str, entries, good_per_folder, skipped)

    if len(files) < len(images):
        images = images[: len(files)].copy()  # copy, so the unused tail is freed
    return SourceImages(
        images=images,
        labels=np.asarray(labels, dtype=np.int32),
        class_names=class_names,
        splits=np.asarray(splits, dtype=np.str_) if has_splits else None,
        files=tuple(files),
        skipped=tuple(skipped),
    )


def _check_folders_readable(root: str, entries: list[_Entry], good_per_folder: dict[tuple[str, ...], int],
                            skipped: list[tuple[str, str]]) -> None:
    """Raises DataError for the first class folder whose files were all skipped."""
    folders = sorted({entry.folder for entry in entries if entry.folder})
    for folder in folders:
        if good_per_folder.get(folder, 0) == 0:
            prefix = "/".join(folder) + "/"
            in_folder = [(rel, reason) for rel, reason in skipped if rel.startswith(prefix)]
            detail = f"{len(in_folder)} skipped, first {in_folder[0][0]}: {in_folder[0][1]}" if in_folder else ""
            raise DataError(f"{_one_line(os.path.join(root, *folder))}: class folder has no readable images "
                            f"({_one_line(detail)}); a class with no examples cannot be trained on")
