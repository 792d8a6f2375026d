"""Training metrics to `metrics.jsonl` (one JSON object per logged step) and TensorBoard.

A resumed run first drops the rows written after the checkpoint it resumes from, so
`metrics.jsonl` holds each step once, exactly as an uninterrupted run would.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from tensorboardX import SummaryWriter

from jaxmed import files


def read_metrics(path: Path) -> list[dict]:
    """All rows of a metrics.jsonl file ([] if it does not exist)."""
    if not Path(path).is_file():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


class MetricsWriter:
    """Appends scalars to metrics.jsonl and TensorBoard events.

    Args:
      metrics_path: the metrics.jsonl file.
      events_dir: TensorBoard log directory.
      resume_step: rows with a larger step are dropped (they came after the checkpoint).
    """

    def __init__(self, metrics_path: Path, events_dir: Path, resume_step: int = 0):
        self.metrics_path = Path(metrics_path)
        kept = [row for row in read_metrics(self.metrics_path) if row["step"] <= resume_step]
        # Atomic: a kill while trimming must not lose the rows already logged.
        files.write_text(self.metrics_path, "".join(json.dumps(row) + "\n" for row in kept))
        self._file = self.metrics_path.open("a")
        self._events = SummaryWriter(str(events_dir), purge_step=resume_step + 1 if resume_step else None)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Writes one row; non-finite values are written as JSON null."""
        row = {"step": int(step)}
        row.update({key: (float(value) if math.isfinite(value) else None) for key, value in scalars.items()})
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        for key, value in scalars.items():
            self._events.add_scalar(key, float(value), int(step))

    def write_image(self, tag: str, image: np.ndarray, step: int) -> None:
        """Logs a uint8 image (H, W) or (H, W, 3) to TensorBoard."""
        self._events.add_image(tag, image, int(step), dataformats="HW" if image.ndim == 2 else "HWC")

    def close(self) -> None:
        self._file.close()
        self._events.close()
