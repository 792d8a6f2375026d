"""The `Dataset` every source returns: a leaf module, so the loader and the cache can both build one."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class Dataset(NamedTuple):
    """Images with their labels and where they came from.

    Attributes:
      images: (N, H, W, C) float32 in [-1, 1].
      labels: (N,) int32 indices into `class_names`.
      class_names: class names, sorted as the source defines them.
      provenance: JSON-able description of the source and the options used to read it; for
        sources with predefined splits, "splits" holds each image's split name.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    provenance: dict[str, Any]
