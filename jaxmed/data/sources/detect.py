"""Which source reads a path: decided by file content, with the name as a fallback.

DICOM files carry ``DICM`` at byte 128 (Part 10), or start with a group 0002/0008
tag when written without the preamble; NIfTI-1 carries ``n+1``/``ni1`` at
byte 344 and NIfTI-2 ``n+2`` at byte 4 (``.nii.gz`` is recognised by name, since its
header is compressed); MedMNIST files are ``.npz`` zip archives. A folder is read by
the source of the first recognisable file in it (in sorted walk order), so a folder of
DICOM series is read as DICOM and one of PNGs as images.
"""

from __future__ import annotations

import os

from jaxmed.data.sources.documents import looks_like_headerless_dicom
from jaxmed.data.sources.folder import IMAGE_EXTENSIONS
from jaxmed.data.sources.layout import ignored

IMAGES, DICOM, NIFTI, NPZ = "images", "dicom", "nifti", "npz"

_NIFTI_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img")
# A folder whose first this-many files are all unrecognised is read as images (and its
# files reported as such), so detection never walks a huge folder to the end.
_MAX_FILES_SNIFFED = 1000


def file_kind(path: str) -> str | None:
    """DICOM, NIFTI, NPZ, IMAGES (for files the image reader recognises by name) or None."""
    name = os.path.basename(path).lower()
    try:
        with open(path, "rb") as handle:
            head = handle.read(348)
    except OSError:
        head = b""
    if head[128:132] == b"DICM" or looks_like_headerless_dicom(head) or name.endswith(".dcm"):
        return DICOM
    if head[344:347] in (b"n+1", b"ni1") or head[4:7] == b"n+2" or name.endswith(_NIFTI_SUFFIXES):
        return NIFTI
    if name.endswith(".npz"):
        return NPZ
    if os.path.splitext(name)[1] in IMAGE_EXTENSIONS:
        return IMAGES
    return None


def folder_kind(root: str) -> str:
    """The source for a folder: that of its first recognisable file; IMAGES if none is."""
    sniffed = 0
    for directory, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(name for name in dirs if not ignored(name))
        for name in sorted(files):
            if ignored(name):
                continue
            kind = file_kind(os.path.join(directory, name))
            if kind in (DICOM, NIFTI):
                return kind
            if kind == IMAGES:
                return IMAGES
            sniffed += 1
            if sniffed >= _MAX_FILES_SNIFFED:
                return IMAGES
    return IMAGES

