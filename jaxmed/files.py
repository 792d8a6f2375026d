"""Writing files so that a process killed mid-write never leaves half of one.

Everything jaxmed writes for later runs to read (config.json, metrics.jsonl, the data
cache, skipped-file reports) goes through `replacing`: the content is written to a
temporary file in the same folder, which then replaces the target in one rename.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(path: Path | str) -> Iterator[Path]:
    """Yields a temporary path beside `path`; it replaces `path` if the block succeeds, else is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_text(path: Path | str, text: str) -> None:
    """Writes `text` to `path` atomically."""
    with replacing(path) as temporary:
        temporary.write_text(text)
