"""The layout of a data folder: which files belong to which class and split.

Shared by every source that reads a folder of files (images, DICOM, NIfTI).
:func:`collect_entries` walks the folder once and returns every file with its class and
split, plus entries already known to be bad (broken links, loops, unlistable folders,
files outside any class folder), so each reader only decodes and reports.

Layouts understood (chosen from the folders directly inside the root):

(a) Class sub-folders: ``root/<class>/...``. Class names are the sorted folder names and
    a label is the index of its class. Sub-folders inside a class folder are searched
    recursively, so ``root/yes/patient1/a.jpg`` is class ``yes``.
(b) A flat folder: ``root/*`` with no sub-folders. Every file gets the single class
    ``"unlabelled"``.
(c) Predefined splits: ``root/Training/<class>/...`` and ``root/Testing/<class>/...``.
    Split folder names are matched case-insensitively: ``training`` or ``train`` ->
    ``"train"``, ``testing`` or ``test`` -> ``"test"``, ``validation``, ``valid`` or
    ``val`` -> ``"val"``. Class names are the sorted union over the splits (a class
    missing from one split is fine). If every split folder holds files directly and
    none has class folders, the files are unlabelled, as in (b).

Entries come sorted by their path relative to the root, compared component by
component, so the same folder always gives the same order.

Ignored silently: hidden entries (names starting with ``.``, which also covers macOS
``._*`` resource forks and ``.DS_Store``), ``Thumbs.db``, ``desktop.ini`` and
``__MACOSX`` folders -- the litter that zip tools and file browsers leave in data sets.
Ignored and listed (:attr:`Layout.ignored`): documents that come with the data (README,
licence, ``.txt``, ``.csv``, ``.pdf``... with no image content, see
:mod:`jaxmed.data.sources.documents`), wherever they are, also outside class folders.
Every other file under the root is either read or reported.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

from jaxmed.data.sources.common import one_line, os_reason
from jaxmed.data.sources.documents import document_reason
from jaxmed.errors import DataError

# Names ignored silently, compared lower-case (Windows file names are case-insensitive).
IGNORED_NAMES: frozenset[str] = frozenset({"thumbs.db", "desktop.ini", ".ds_store", "__macosx"})

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
OUTSIDE_CLASS_FOLDER = "file is outside any class folder"
OUTSIDE_SPLIT_FOLDER = "file is outside any split folder"


@dataclasses.dataclass(frozen=True)
class Entry:
    """A file to read (problem is None) or an entry already known to be bad."""

    rel: tuple[str, ...]
    class_name: str
    split: str | None
    folder: tuple[str, ...]  # the class folder it belongs to, relative to the root
    problem: str | None = None


def ignored(name: str) -> bool:
    """Whether a directory entry is system litter to skip silently."""
    return name.startswith(".") or name.lower() in IGNORED_NAMES


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
        return "bad", os_reason(exc)
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
        return sorted(entry.name for entry in it if not ignored(entry.name))


def _walk_class_folder(root: str, folder: tuple[str, ...], ancestors: frozenset[str], class_name: str,
                       split: str | None) -> list[Entry]:
    """All files under a class folder, recursively, with entries for what cannot be used.

    Symbolic links to folders are followed, but a folder is never entered twice on one
    path from the root, so symlink loops end (as bad entries) instead of hanging.
    """
    entries: list[Entry] = []
    stack: list[tuple[tuple[str, ...], frozenset[str]]] = [(folder, ancestors)]
    while stack:  # iterative, so deep trees cannot hit Python's recursion limit
        rel_dir, above = stack.pop()
        try:
            names = _list_dir(os.path.join(root, *rel_dir))
        except OSError as exc:
            entries.append(Entry(rel_dir, class_name, split, folder, f"cannot list folder: {os_reason(exc)}"))
            continue
        for name in names:
            rel = (*rel_dir, name)
            kind, detail = _classify(os.path.join(root, *rel), above)
            if kind == "dir":
                stack.append((rel, above | {detail}))
            elif kind == "file":
                entries.append(Entry(rel, class_name, split, folder))
            else:
                entries.append(Entry(rel, class_name, split, folder, detail))
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
        raise DataError(f"{one_line(path)}: cannot list folder: {os_reason(exc)}") from None
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


@dataclasses.dataclass(frozen=True)
class Layout:
    """A data folder's entries, sorted by relative path, with its classes.

    Attributes:
      root: the folder (``~`` expanded).
      entries: every file to read and every entry already known to be bad.
      class_names: sorted class names, or ``("unlabelled",)``.
      has_splits: whether the folder has predefined split folders.
      ignored: ``(relative_path, reason)`` of the documents set aside (not data), sorted.
    """

    root: str
    entries: tuple[Entry, ...]
    class_names: tuple[str, ...]
    has_splits: bool
    ignored: tuple[tuple[str, str], ...] = ()


def collect_entries(root: str | os.PathLike[str]) -> Layout:
    """Walks a data folder (see the module docstring for layouts).

    Raises:
      DataError: one line naming the folder: missing, a file, a layout problem (mixed
        split and class folders, two folders for one split, empty class or split
        folders), nothing to read.
    """
    root_str = os.fspath(Path(root).expanduser())
    if not os.path.exists(root_str):
        if os.path.islink(root_str):
            raise DataError(f"{one_line(root_str)}: broken symbolic link, no such folder")
        raise DataError(f"{one_line(root_str)}: no such folder")
    if not os.path.isdir(root_str):
        raise DataError(f"{one_line(root_str)}: is a file, not a folder")
    entries, class_names, has_splits, documents = _collect(root_str)
    # Component-wise order: "a/x" before "a b/x", unlike plain string order.
    entries.sort(key=lambda entry: entry.rel)
    documents.sort(key=lambda item: item[0].split("/"))
    return Layout(root_str, tuple(entries), class_names, has_splits, tuple(documents))


def _set_aside_documents(root: str, entries: list[Entry]) -> tuple[list[Entry], list[tuple[str, str]]]:
    """Splits off the files that are documents, not data (see `jaxmed.data.sources.documents`).

    Returns:
      ``(entries to read or report, [(relative_path, reason)] of the documents)``.
    """
    kept, documents = [], []
    for entry in entries:
        if entry.problem in (None, OUTSIDE_CLASS_FOLDER, OUTSIDE_SPLIT_FOLDER):
            reason = document_reason(os.path.join(root, *entry.rel))
            if reason is not None:
                documents.append(("/".join(entry.rel), reason))
                continue
        kept.append(entry)
    return kept, documents


def _collect(root: str) -> tuple[list[Entry], tuple[str, ...], bool, list[tuple[str, str]]]:
    """Finds the layout and every entry to read.

    Returns:
      ``(entries, class_names, has_splits, documents)``, documents as in `Layout.ignored`.

    Raises:
      DataError: on layout problems (mixed split and class folders, two folders for
        one split, empty class or split folders, nothing to read).
    """
    root_real = os.path.realpath(root)
    dirs, files, bad = _top_level(root, (), frozenset({root_real}))
    split_of = {name: SPLIT_NAMES.get(name.lower()) for name, _ in dirs}
    entries: list[Entry] = []

    if not dirs:  # (b) flat folder
        entries += [Entry(rel, UNLABELLED, None, ()) for rel in files]
        entries += [Entry(rel, UNLABELLED, None, (), reason) for rel, reason in bad]
        entries, documents = _set_aside_documents(root, entries)
        if not entries:
            raise DataError(f"{one_line(root)}: no images found" + (f" (only documents, e.g. {documents[0][0]})"
                                                                     if documents else ""))
        return entries, (UNLABELLED,), False, documents

    splits_found = [name for name, split in split_of.items() if split]
    if not splits_found:  # (a) class folders
        for name, real in dirs:
            entries += _walk_class_folder(root, (name,), frozenset({root_real, real}), name, None)
        entries += [Entry(rel, "", None, (), OUTSIDE_CLASS_FOLDER) for rel in files]
        entries += [Entry(rel, "", None, (), reason) for rel, reason in bad]
        class_names = tuple(sorted(name for name, _ in dirs))
        entries, documents = _set_aside_documents(root, entries)
        _check_folders_not_empty(root, entries, [(name,) for name, _ in dirs])
        return entries, class_names, False, documents

    # (c) predefined splits: every top-level folder must be a split folder, or the
    # layout is ambiguous (is "yes" a class beside the splits, or a mistake?).
    others = [name for name, split in split_of.items() if not split]
    if others:
        raise DataError(f"{one_line(root)}: mixes split folders ({', '.join(splits_found)}) with other folders "
                        f"({', '.join(others)}); move the others into the split folders or remove them")
    by_split: dict[str, str] = {}
    for name in splits_found:
        if split_of[name] in by_split:
            raise DataError(f"{one_line(root)}: folders {by_split[split_of[name]]!r} and {name!r} are both the "
                            f"{split_of[name]!r} split; keep one")
        by_split[split_of[name]] = name
    entries += [Entry(rel, "", None, (), OUTSIDE_SPLIT_FOLDER) for rel in files]
    entries += [Entry(rel, "", None, (), reason) for rel, reason in bad]

    listed = {name: _top_level(root, (name,), frozenset({root_real, real})) for name, real in dirs}
    labelled = any(sub_dirs for sub_dirs, _, _ in listed.values())
    class_folders: list[tuple[str, ...]] = []
    class_names: set[str] = set()
    for (name, real), (sub_dirs, sub_files, sub_bad) in zip(dirs, listed.values()):
        split = split_of[name]
        if not (sub_dirs or sub_files or sub_bad):
            raise DataError(f"{one_line(os.path.join(root, name))}: split folder has no images")
        if not labelled:  # every split holds its images directly: unlabelled splits
            entries += [Entry(rel, UNLABELLED, split, (name,)) for rel in sub_files]
            entries += [Entry(rel, UNLABELLED, split, (name,), reason) for rel, reason in sub_bad]
            class_folders.append((name,))
            continue
        for class_name, class_real in sub_dirs:
            folder = (name, class_name)
            entries += _walk_class_folder(root, folder, frozenset({root_real, real, class_real}), class_name, split)
            class_folders.append(folder)
            class_names.add(class_name)
        entries += [Entry(rel, "", split, (), OUTSIDE_CLASS_FOLDER) for rel in sub_files]
        entries += [Entry(rel, "", split, (), reason) for rel, reason in sub_bad]
    entries, documents = _set_aside_documents(root, entries)
    _check_folders_not_empty(root, entries, class_folders)
    return entries, (tuple(sorted(class_names)) if labelled else (UNLABELLED,)), True, documents


def _check_folders_not_empty(root: str, entries: list[Entry], folders: list[tuple[str, ...]]) -> None:
    """Raises DataError for the first class folder with nothing in it (not even bad files)."""
    occupied = {entry.folder for entry in entries}
    for folder in sorted(folders):
        if folder not in occupied:
            raise DataError(f"{one_line(os.path.join(root, *folder))}: class folder has no images; a class with "
                            f"no examples cannot be trained on (add images or remove the folder)")


def check_folders_readable(layout: Layout, good_per_folder: dict[tuple[str, ...], int],
                           skipped: tuple[tuple[str, str], ...]) -> None:
    """Raises DataError for the first class folder whose files were all skipped."""
    root = layout.root
    folders = sorted({entry.folder for entry in layout.entries if entry.folder})
    for folder in folders:
        if good_per_folder.get(folder, 0) == 0:
            prefix = "/".join(folder) + "/"
            in_folder = [(rel, reason) for rel, reason in skipped if rel.startswith(prefix)]
            detail = f"{len(in_folder)} skipped, first {in_folder[0][0]}: {in_folder[0][1]}" if in_folder else ""
            raise DataError(f"{one_line(os.path.join(root, *folder))}: class folder has no readable images "
                            f"({one_line(detail)}); a class with no examples cannot be trained on")

