"""Intensity windows: which raw values map to black and white.

A window is (center, width); values in ``[center - width/2, center + width/2]`` are
scaled to the model's range and values outside are clipped. The ``window`` read option
(`--set data.window=...`) is "" (the source's own, see each source), a preset name below
or "CENTER,WIDTH"; it is checked when the options are made, whatever the source.
"""

from __future__ import annotations

import math

from jaxmed.errors import UsageError

# CT windows as (center, width) in Hounsfield units. Values from Radiopaedia's
# "Windowing (CT)" article, which notes they vary between institutions; subdural is the
# middle of its ranges (L 50-100, W 130-300); abdomen is the common viewer default.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (40.0, 400.0),
    "liver": (30.0, 150.0),
    "bone": (400.0, 1800.0),
    "soft_tissue": (50.0, 400.0),
}


def parse_window(text: str) -> tuple[float, float] | None:
    """The (center, width) the ``window`` option names, or None for the files' own.

    Args:
      text: "", a name in :data:`WINDOW_PRESETS` (case-insensitive) or "CENTER,WIDTH".

    Raises:
      UsageError: for anything else, or a width that is not positive.
    """
    text = text.strip()
    if not text:
        return None
    if text.lower() in WINDOW_PRESETS:
        return WINDOW_PRESETS[text.lower()]
    parts = text.split(",")
    if len(parts) == 2:
        try:
            center, width = float(parts[0]), float(parts[1])
        except ValueError:
            pass
        else:
            if math.isfinite(center) and math.isfinite(width) and width > 0:
                return center, width
    raise UsageError(f"window {text!r}: expected a preset ({', '.join(WINDOW_PRESETS)}) or CENTER,WIDTH "
                     f"with WIDTH > 0, e.g. 40,80")


def window_range(center: float, width: float) -> tuple[float, float]:
    """The values mapped to black and white by a window: ``(center - width/2, center + width/2)``."""
    return center - width / 2.0, center + width / 2.0
