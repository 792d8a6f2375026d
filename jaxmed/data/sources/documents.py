"""Which files in a data folder are documents that come with the data, not data.

Public data sets ship a README, a licence, label spreadsheets or a paper next to the
scans (a lung-CT folder with a description ``.txt`` at its root is typical). Such a file
is *ignored* -- listed with a reason in the provenance and by ``jaxmed data inspect``,
never fatal -- when both hold:

- by name: its suffix is in :data:`DOCUMENT_SUFFIXES`, or its name (without suffix,
  lower-case) is in :data:`DOCUMENT_NAMES` (``README``, ``LICENSE``, ``LICENSE.Apache``...)
  and its suffix is not one that claims data (``README.png`` is an image, or a corrupt one);
- by content: its first bytes carry no image, DICOM or NIfTI signature
  (:func:`has_data_signature`), so a scan saved under a document's name is still read.

Everything else stays as it was: a file named like an image whose bytes are not one is
a corrupt image (an error), and an unknown binary file is reported as not an image.
"""

from __future__ import annotations

import os

# Suffixes of text, tables, office documents, web pages, notebooks and scripts.
DOCUMENT_SUFFIXES: frozenset[str] = frozenset({
    ".txt", ".md", ".markdown", ".rst", ".log", ".csv", ".tsv", ".json", ".jsonl", ".xml", ".yaml", ".yml",
    ".xlsx", ".xls", ".ods", ".doc", ".docx", ".odt", ".rtf", ".pdf", ".html", ".htm", ".ipynb", ".py", ".r",
    ".m", ".sh", ".bib", ".cff",
})
# Names (lower-case, suffix removed) of the documents projects put at their top level.
DOCUMENT_NAMES: frozenset[str] = frozenset({
    "readme", "license", "licence", "copying", "notice", "authors", "citation", "changelog", "manifest",
    "description", "metadata",
})
# Suffixes that claim data: a file named so is never a document, whatever its stem.
_DATA_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom", ".ima", ".nii", ".gz",
                            ".hdr", ".img", ".npz"})
# Explicit VRs (two upper-case letters after a tag) that open a DICOM data set.
_DICOM_VRS = frozenset(
    b"AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split())
# How much of a file the signatures need (NIfTI-1 puts its magic at byte 344).
HEAD_BYTES = 348


def looks_like_headerless_dicom(head: bytes) -> bool:
    """Whether bytes start like a DICOM data set written without the 128-byte preamble and ``DICM``.

    Such a file opens with a little-endian tag of group 0002 (file meta) or 0008
    (identification), then an explicit VR or a 4-byte implicit-VR length.
    """
    if len(head) < 8 or head[:2] not in (b"\x02\x00", b"\x08\x00"):
        return False
    if head[4:6] in _DICOM_VRS:
        return True
    return int.from_bytes(head[4:8], "little") < 1 << 16  # implicit VR: a plausible element length


def has_data_signature(head: bytes) -> bool:
    """Whether a file's first bytes are those of an image (PNG, JPEG, TIFF, BMP), DICOM, NIfTI or gzip data."""
    return (head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"\x1f\x8b"))
            or head[128:132] == b"DICM" or looks_like_headerless_dicom(head)
            or head[344:347] in (b"n+1", b"ni1") or head[4:7] == b"n+2")


def named_like_document(name: str) -> bool:
    """Whether a file name is that of a document (see the module docstring)."""
    stem, suffix = os.path.splitext(name.lower())
    return suffix in DOCUMENT_SUFFIXES or (suffix not in _DATA_SUFFIXES and stem in DOCUMENT_NAMES)


def document_reason(path: str) -> str | None:
    """Why a file is ignored as a document, or None if it is to be read as data.

    Args:
      path: the file.

    Returns:
      A one-line reason such as "a document (.txt), not image data", or None for a file
      not named like a document, one whose content carries a data signature, and one that
      cannot be opened (the reader reports that).
    """
    name = os.path.basename(path)
    if not named_like_document(name):
        return None
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        return None
    if has_data_signature(head):
        return None
    suffix = os.path.splitext(name)[1].lower()
    return f"a document ({suffix or name}), not image data"
