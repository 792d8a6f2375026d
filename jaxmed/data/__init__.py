"""Data: sources, preprocessing and the batch pipeline.

`load(spec, ...)` is the one entry point: it reads a source named by a spec string and
returns images in the model's convention (NHWC float32 in [-1, 1]) with integer labels.

Specs understood:

    phantom:brain   axial brain MRI slices, classes no_tumor / tumor   (generated, no download)
    phantom:lung    64x64 lung CT patches, classes no_nodule / nodule  (generated, no download)
    PATH            a folder of PNG / JPEG / TIFF / BMP images: class sub-folders (labels from
                    the sorted folder names), optionally under Training/ and Testing/ split
                    folders, or a flat folder (unlabelled); see `jaxmed.data.sources.folder`
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pathlib import Path

import numpy as np

from jaxmed.data import phantoms
from jaxmed.data.sources.folder import read_image_folder
from jaxmed.data.preprocess import preprocess
from jaxmed.errors import DataError

SPECS = ("phantom:brain", "phantom:lung", "a folder path")

# Lung patches have a fixed physical field of view (64 px at about 0.7 mm); other
# sizes are resampled from it. Brain slices are drawn at the requested size directly.
LUNG_NATIVE_SIZE = 64


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


def load(spec: str, image_size: int = 128, channels: int = 1, *, n: int = 2000, class_fraction: float = 0.5,
         difficulty: float = 1.0, seed: int = 0, skip_bad: bool = False) -> Dataset:
    """Reads the data source named by `spec`.

    Args:
      spec: a data spec (see module docstring).
      image_size: side of the square output images.
      channels: 1 (grayscale) or 3.
      n, class_fraction, difficulty, seed: phantom options (number of images, share of
        the positive class, lesion difficulty, generator seed).
      skip_bad: skip unreadable files (each listed in provenance["skipped"]) instead of
        stopping at the first one.

    Returns:
      A `Dataset`.

    Raises:
      DataError: if the spec names no known source.
    """
    kind, _, name = spec.partition(":")
    if kind != "phantom" and Path(spec).exists():
        return _load_folder(spec, image_size, channels, skip_bad)
    if kind != "phantom" or name not in ("brain", "lung"):
        raise DataError(f"{spec}: unknown data spec and no such folder; this version reads {', '.join(SPECS)}")
    if name == "brain":
        generated = phantoms.brain(n, size=image_size, tumor_fraction=class_fraction, difficulty=difficulty,
                                   seed=seed)
    else:
        generated = phantoms.lung(n, size=LUNG_NATIVE_SIZE, nodule_fraction=class_fraction, difficulty=difficulty,
                                  seed=seed)
    images = preprocess(generated.images, image_size=image_size, channels=channels)
    provenance = {"spec": spec, "n": n, "class_fraction": class_fraction, "difficulty": difficulty, "seed": seed}
    return Dataset(images, generated.labels.astype(np.int32), tuple(generated.class_names), provenance)


def _load_folder(path: str, image_size: int, channels: int, skip_bad: bool) -> Dataset:
    read = read_image_folder(path, image_size=image_size, channels=channels, skip_bad=skip_bad)
    provenance = {"spec": path, "files": list(read.files), "skipped": [list(item) for item in read.skipped]}
    if read.splits is not None:
        provenance["splits"] = read.splits.tolist()
    return Dataset(read.images, read.labels, read.class_names, provenance)


def class_index(dataset: Dataset, class_name: str) -> int:
    """The label of `class_name`.

    Raises:
      DataError: if the dataset has no such class.
    """
    if class_name not in dataset.class_names:
        raise DataError(f"{dataset.provenance['spec']}: no class {class_name!r}; classes are "
                        f"{', '.join(dataset.class_names)}")
    return dataset.class_names.index(class_name)


def select_class(dataset: Dataset, class_name: str) -> np.ndarray:
    """The images of one class ("" = all images).

    Raises:
      DataError: if the class does not exist or has no images.
    """
    if not class_name:
        return dataset.images
    images = dataset.images[dataset.labels == class_index(dataset, class_name)]
    if len(images) == 0:
        raise DataError(f"{dataset.provenance['spec']}: class {class_name!r} has no images")
    return images
