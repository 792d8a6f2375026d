"""The data options: the one definition of what to read and how, shared by the CLI, run configs and `load`.

A run config's `data` field is a `DataOptions`, so `--set data.window=brain` on the
command line, `DataOptions(window="brain")` in Python and `jaxmed.data.load(spec,
window="brain")` name the same field and are validated by the same code.
"""

from __future__ import annotations

import dataclasses
import math

from jaxmed.data.sources.window import parse_window
from jaxmed.errors import UsageError


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UsageError(message)


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """What to read; the options a source does not use are ignored by it.

    Attributes:
      spec: data source, e.g. "phantom:brain" or a folder (see `jaxmed.data.load`).
      n: number of images to generate (phantom sources only).
      class_fraction: share of the positive class (phantom sources only).
      difficulty: lesion difficulty (phantom sources only; higher = smaller, fainter).
      skip_bad: skip unusable files, listing each (in the workdir's skipped.json),
        instead of stopping at the first one.
      window: DICOM/CT intensity window: "" (the file's own window, else its full range),
        a preset name (see `jaxmed.data.sources.window.WINDOW_PRESETS`) or "CENTER,WIDTH".
      slice_axis: volumes: the axis of the canonical (RAS+) volume to cut 2-D slices along
        (0 sagittal, 1 coronal, 2 axial).
      slice_start, slice_stop: volumes: keep the slices in this fraction of the axis, e.g.
        0.2 and 0.8 drop the outer 20 % on each side.
      skip_empty_slices: volumes: leave out slices with no signal (constant value).
    """

    spec: str = "phantom:brain"
    n: int = 2000
    class_fraction: float = 0.5
    difficulty: float = 1.0
    skip_bad: bool = False
    window: str = ""
    slice_axis: int = 2
    slice_start: float = 0.0
    slice_stop: float = 1.0
    skip_empty_slices: bool = True

    def __post_init__(self):
        _require(self.n >= 1, "data.n must be at least 1")
        _require(0.0 <= self.class_fraction <= 1.0, "data.class_fraction must be in [0, 1]")
        _require(self.difficulty > 0, "data.difficulty must be positive")
        _require(self.slice_axis in (0, 1, 2), f"data.slice_axis must be 0, 1 or 2, got {self.slice_axis}")
        _require(0.0 <= self.slice_start < self.slice_stop <= 1.0,
                 "data.slice_start and data.slice_stop must satisfy 0 <= start < stop <= 1, got "
                 f"{self.slice_start} and {self.slice_stop}")
        parse_window(self.window)  # a bad window is an error for every source, not only those that use it

    @property
    def slice_range(self) -> tuple[float, float]:
        """(slice_start, slice_stop)."""
        return self.slice_start, self.slice_stop

    def kept_slices(self, count: int) -> range:
        """Indices of a volume's `count` slices that overlap [slice_start, slice_stop] (never empty)."""
        return range(math.floor(self.slice_start * count), min(count, math.ceil(self.slice_stop * count)))
