"""A disk cache of preprocessed data sets, so the second read of a source is fast.

`jaxmed.data.load` keeps each data set it reads from disk, and each phantom set it
generates, as one uncompressed ``.npz`` file (float32 images, labels, and the class
names and provenance as JSON), named by a SHA-256 of its key. The key holds everything
the result depends on:

* the source: for files and folders, the real path and a fingerprint of the listing
  (every file's path relative to the root, size and modification time in ns); for
  phantoms, the generator options;
* every read option (image size, channels, skip_bad, window, slices, ...);
* the code: a hash of the source of ``jaxmed/data`` and the versions of the decoding
  libraries (numpy, Pillow, scipy, pydicom, nibabel), so upgrading either rebuilds.

Location: ``$JAXMED_DATA_CACHE``, default ``~/.cache/jaxmed/data``; set it to the empty
string to disable the cache. ``$JAXMED_DATA_CACHE_MAX_GB`` (default 10) bounds its size:
after a write, the least recently used entries are removed until the rest fits.

Safety: an entry is written to a temporary file and renamed into place, so a crash or
a concurrent run never leaves half an entry. An entry that cannot be read (truncated,
corrupt, from another version) is ignored with a one-line note on stderr and rewritten.
Nothing is stored when a file changed while it was read, or when any file is younger
than :data:`SETTLE_SECONDS`: file systems stamp modification times with a coarse clock,
so a file rewritten within the same tick, at the same size, would look unchanged (the
"racily clean" problem git solves the same way). Errors are never cached.
TFDS sources are not cached here (TFDS keeps its own prepared copy).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from jaxmed.data.dataset import Dataset
from jaxmed.files import replacing

CACHE_ENV = "JAXMED_DATA_CACHE"
MAX_SIZE_ENV = "JAXMED_DATA_CACHE_MAX_GB"
DEFAULT_MAX_GB = 10.0
# Bumped when the entry layout changes.
FORMAT = 1
# Files modified less than this long ago make a listing "racy": it is read but not cached.
SETTLE_SECONDS = 2.0
_LIBRARIES = ("numpy", "pillow", "scipy", "pydicom", "nibabel")


def cache_dir() -> Path | None:
    """The cache folder, or None when the cache is disabled ($JAXMED_DATA_CACHE="")."""
    location = os.environ.get(CACHE_ENV, str(Path.home() / ".cache" / "jaxmed" / "data"))
    return Path(location).expanduser() if location else None


@functools.cache
def code_fingerprint() -> str:
    """A hash of the code that reads and preprocesses data: jaxmed/data's source and library versions."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    for name in _LIBRARIES:
        try:
            digest.update(f"{name}={importlib.metadata.version(name)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{name}=absent".encode())
    return digest.hexdigest()


def listing(path: str) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime in ns) of every file under `path` (or of `path` itself), sorted.

    Links to folders are followed, each real folder once, so a symlink loop ends. Entries
    that cannot be inspected appear with size -1 and mtime 0 (a broken link, for one);
    unlistable folders are left out (their contents cannot be read anyway).
    """
    if not os.path.isdir(path):
        try:
            info = os.stat(path)
        except OSError:
            return [(os.path.basename(path), -1, 0)]
        return [(os.path.basename(path), info.st_size, info.st_mtime_ns)]
    files = []
    seen = {os.path.realpath(path)}
    for directory, dirs, names in os.walk(path, followlinks=True):
        real_dirs = [(name, os.path.realpath(os.path.join(directory, name))) for name in dirs]
        dirs[:] = [name for name, real in real_dirs if real not in seen]
        seen.update(real for _, real in real_dirs)
        for name in names:
            full = os.path.join(directory, name)
            try:
                info = os.stat(full)
                entry = (info.st_size, info.st_mtime_ns)
            except OSError:
                entry = (-1, 0)
            files.append((os.path.relpath(full, path).replace(os.sep, "/"), *entry))
    return sorted(files)


def _settled(files: list[tuple[str, int, int]]) -> bool:
    """True if no file changed in the last SETTLE_SECONDS (so its mtime identifies its content)."""
    newest = max((mtime for _, _, mtime in files), default=0)
    return newest < time.time_ns() - SETTLE_SECONDS * 1e9


def _plain(value: Any) -> Any:
    """JSON for numpy values (an image size may arrive as np.int64)."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=_plain)


def _note(message: str) -> None:
    print(f"jaxmed: note: {message}", file=sys.stderr)


def _entry_path(directory: Path, key: dict[str, Any]) -> Path:
    return directory / f"{hashlib.sha256(_json(key).encode()).hexdigest()[:40]}.npz"


def _read_entry(path: Path, key: dict[str, Any]):
    """(images, labels, class_names, provenance) from an entry; raises on anything wrong with it."""
    with np.load(path, allow_pickle=False) as stored:
        meta = json.loads(str(stored["meta"]))
        images, labels = stored["images"], stored["labels"]
    if meta.get("key") != json.loads(_json(key)):
        raise ValueError("its key does not match its name")
    if images.dtype != np.float32 or images.ndim != 4 or labels.shape != (len(images),):
        raise ValueError(f"unexpected arrays {images.dtype}{images.shape}, labels {labels.shape}")
    return images, labels.astype(np.int32), tuple(meta["class_names"]), meta["provenance"]


def _write_entry(path: Path, key: dict[str, Any], images: np.ndarray, labels: np.ndarray,
                 class_names: tuple[str, ...], provenance: dict[str, Any]) -> None:
    """Writes an entry atomically (a temporary file in the same folder, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = _json({"key": key, "class_names": list(class_names), "provenance": provenance})
    with replacing(path) as temporary, open(temporary, "wb") as out:
        np.savez(out, images=np.asarray(images, np.float32), labels=np.asarray(labels, np.int32),
                 meta=np.asarray(meta))


def _evict(directory: Path, keep: Path) -> None:
    """Removes the least recently used entries until the cache fits in its size limit."""
    try:
        limit = float(os.environ.get(MAX_SIZE_ENV, DEFAULT_MAX_GB)) * 1e9
    except ValueError:
        limit = DEFAULT_MAX_GB * 1e9
    entries = []
    for path in directory.glob("*.npz"):
        with contextlib.suppress(OSError):
            info = path.stat()
            entries.append((info.st_mtime, info.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries, key=lambda entry: entry[0]):
        if total <= limit:
            break
        if path != keep:
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size


def cached(key: dict[str, Any], compute: Callable[[], Any], *, location: str | None = None):
    """`compute()`'s data set, from the cache when an entry for `key` exists, else computed and stored.

    Args:
      key: JSON-able; everything the result depends on besides the source files and the
        code (both added here).
      compute: returns a `jaxmed.data.Dataset` whose provenance is JSON-able.
      location: the file or folder the data is read from (fingerprinted into the key),
        or None for generated data.

    Returns:
      A `jaxmed.data.Dataset`; its provenance has been through JSON either way, so a
      read from the cache and a fresh one compare equal.
    """
    directory = cache_dir()
    if directory is None:
        return compute()
    files = None
    full_key = {"format": FORMAT, "code": code_fingerprint(), **key}
    if location is not None:
        files = listing(location)
        full_key["location"] = os.path.realpath(location)
        full_key["files"] = hashlib.sha256(json.dumps(files).encode()).hexdigest()
    path = _entry_path(directory, full_key)
    if path.is_file():
        try:
            images, labels, class_names, provenance = _read_entry(path, full_key)
        except Exception as exc:  # noqa: BLE001 -- any damage to an entry means: rebuild it
            reason = " ".join(str(exc).split()) or type(exc).__name__
            _note(f"ignoring unreadable data cache entry {path} ({reason}); rebuilding it")
        else:
            with contextlib.suppress(OSError):
                os.utime(path)  # marks it recently used, for eviction
            return Dataset(images, labels, class_names, provenance)
    result = compute()
    result = result._replace(provenance=json.loads(_json(result.provenance)))
    if files is not None and not (_settled(files) and listing(location) == files):
        return result  # a file is too new, or changed while it was read: its mtime cannot vouch for it
    try:
        _write_entry(path, full_key, result.images, result.labels, result.class_names, result.provenance)
        _evict(directory, path)
    except OSError as exc:  # a full disk or a read-only cache must not stop the run
        _note(f"could not write the data cache entry {path} ({' '.join(str(exc).split())})")
    return result
