"""Reads a Kaggle-style folder of image files into the model's convention.

:func:`read` turns a folder of scans into NHWC ``float32`` images in ``[-1, 1]`` with
integer labels, one file at a time (each image is preprocessed as soon as it is decoded,
so raw full-size images are never all in memory at once).

The folder's layout (class sub-folders, a flat folder, predefined Training/Testing
split folders; ignored system litter) is :mod:`jaxmed.data.sources.layout`'s.

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

Problems are reported as :class:`jaxmed.errors.DataError` with one line naming the file
or folder and the problem. With ``skip_bad=True``, problems with single entries
(unreadable, corrupt or truncated files, non-image files, images smaller than 8x8,
broken symbolic links, symlink loops, permission errors, files outside any class
folder) are recorded in :attr:`SourceImages.skipped` instead and reading continues.
Documents beside the images (a README, ``.txt``, ``.csv``, ``.pdf``... whose bytes are
not an image) are not problems: they are listed in :attr:`SourceImages.ignored`.
Problems with the folder as a whole stay errors even then: a missing root, a root that
is a file, no images at all, no readable images, and a class folder with no (readable)
images -- a class with no examples cannot be trained on.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from jaxmed.data.sources.common import BadEntry, ImageCollector, ReadOptions, SourceImages, exception_text, open_entry
from jaxmed.data.sources.layout import check_folders_readable, collect_entries

# Extensions that claim to be images. Content decides the format; the extension only
# decides how a file Pillow cannot identify is described (corrupt image vs. not an image).
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})

# Pillow plugins tried when opening. Restricting them matters: some plugins (TGA) accept
# almost any bytes, which would turn a stray binary file into a garbage "image".
_PIL_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "TIFF", "BMP")
# MPO is how Pillow reports JPEGs written by cameras with extra (preview) frames.
_ACCEPTED_FORMATS: frozenset[str] = frozenset({"PNG", "JPEG", "MPO", "TIFF", "BMP"})
_FORMAT_NAMES = "PNG, JPEG, TIFF or BMP"


def _pixels(image: Image.Image) -> np.ndarray:
    """The pixel array of a loaded image, in a dtype whose full range is its intensity scale.

    Returns:
      ``(H, W)`` uint8/uint16/float32 or ``(H, W, 3|4)`` uint8.

    Raises:
      BadEntry: for pixel modes or values with no defined intensity scale.
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
            raise BadEntry(f"32-bit integer pixel values span [{lo}, {hi}], outside the 16-bit range 0..65535 "
                            f"this reader maps to intensities")
        return values.astype(np.uint16)
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        if not np.all(np.isfinite(values)):
            raise BadEntry("32-bit float pixels contain NaN or infinite values")
        lo, hi = float(values.min()), float(values.max())
        if lo < 0.0 or hi > 1.0:
            raise BadEntry(f"32-bit float pixel values span [{lo:g}, {hi:g}], outside [0, 1]; "
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
    raise BadEntry(f"unsupported pixel mode {mode!r}")


def _load(path: str) -> np.ndarray:
    """Decodes one image file, checking it fully.

    Args:
      path: the file.

    Returns:
      Its pixels, see :func:`_pixels`.

    Raises:
      BadEntry: with the reason the file cannot be used.
    """
    claims_image = os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS
    corrupt = "truncated or corrupt image"
    handle, size = open_entry(path)
    with handle:
        if size == 0:
            raise BadEntry(f"{corrupt} (empty file, 0 bytes)" if claims_image else "not an image file (empty file)")
        # Pass 1: verify() checks the structure (chunk CRCs for PNG) without decoding; a
        # verified image object cannot be loaded, hence the second open.
        try:
            with Image.open(handle, formats=_PIL_FORMATS) as probe:
                probe.verify()
        except UnidentifiedImageError:
            if claims_image:
                raise BadEntry(f"{corrupt} (content is not {_FORMAT_NAMES} data)") from None
            raise BadEntry(f"not an image file (readable formats: {_FORMAT_NAMES})") from None
        except Image.DecompressionBombError as exc:
            raise BadEntry(f"image too large to decode safely ({exception_text(exc)})") from None
        except Exception as exc:  # noqa: BLE001 -- any decoder failure means a bad file, not a bug here
            raise BadEntry(f"{corrupt} ({exception_text(exc)})") from None
        # Pass 2: decode every pixel; truncated JPEGs only fail here.
        try:
            handle.seek(0)
            with Image.open(handle, formats=_PIL_FORMATS) as image:
                if image.format not in _ACCEPTED_FORMATS:
                    raise BadEntry(f"unsupported image format {image.format}")
                frames = getattr(image, "n_frames", 1)
                if frames > 1 and image.format != "MPO":
                    raise BadEntry(f"{image.format} has {frames} frames (a stack or animation); this reader takes "
                                    f"one 2-D image per file")
                image.load()
                return _pixels(ImageOps.exif_transpose(image))
        except BadEntry:
            raise
        except Image.DecompressionBombError as exc:
            raise BadEntry(f"image too large to decode safely ({exception_text(exc)})") from None
        except Exception as exc:  # noqa: BLE001 -- any decoder failure means a bad file, not a bug here
            raise BadEntry(f"{corrupt} ({exception_text(exc)})") from None


def read(root: str | os.PathLike[str], options: ReadOptions) -> SourceImages:
    """Reads every image under a folder of scans (see the module docstring for layouts).

    Args:
      root: the folder. ``~`` is expanded.
      options: output size and channels (1: BT.601 luma for colour images; 3: gray
        images replicated; each image is resized, stretched if not square, by
        :func:`jaxmed.data.preprocess.preprocess`) and `skip_bad`.

    Returns:
      A `SourceImages` with the images in order of relative path.

    Raises:
      DataError: one line naming the file or folder and the problem (see the module
        docstring for which problems `skip_bad` skips).
    """
    layout = collect_entries(root)
    collector = ImageCollector(layout.root, options)
    good_per_folder: dict[tuple[str, ...], int] = {}
    for entry in layout.entries:
        rel = "/".join(entry.rel)
        try:
            if entry.problem is not None:
                raise BadEntry(entry.problem)
            # One image at a time, so peak memory is one raw image plus the output.
            collector.add(_load(os.path.join(layout.root, *entry.rel)), entry=rel, class_name=entry.class_name,
                          split=entry.split)
        except BadEntry as exc:
            collector.skip(rel, exc.reason)
            continue
        good_per_folder[entry.folder] = good_per_folder.get(entry.folder, 0) + 1
    result = collector.result(layout.class_names, layout.ignored)
    check_folders_readable(layout, good_per_folder, result.skipped)
    return result
