"""Data: sources, preprocessing and the batch pipeline.

`load(spec, ...)` is the one entry point: it reads a source named by a spec string and
returns images in the model's convention (NHWC float32 in [-1, 1]) with integer labels.

Specs understood:

    phantom:brain    axial brain MRI slices, classes no_tumor / tumor   (generated, no download)
    phantom:lung     64x64 lung CT patches, classes no_nodule / nodule  (generated, no download)
    FOLDER           image files (PNG / JPEG / TIFF / BMP), DICOM files or NIfTI volumes, in
                     class sub-folders (labels from the sorted folder names), optionally
                     under Training/ and Testing/ split folders, or flat (unlabelled); the
                     format is detected from the files (`jaxmed.data.sources.detect`)
    FILE.dcm         one DICOM file (any file with the DICM marker)
    FILE.nii[.gz]    one NIfTI volume, cut into 2-D slices
    FILE.npz         a MedMNIST-style archive (train_/val_/test_ images and labels)
    tfds:NAME[:SPLIT]  a TensorFlow Datasets data set (optional extra `jaxmed[tfds]`)
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from jaxmed.data import cache, phantoms
from jaxmed.data.dataset import Dataset
from jaxmed.data.options import DataOptions
from jaxmed.data.preprocess import preprocess
from jaxmed.data.sources import detect
from jaxmed.data.sources.common import ReadOptions, SourceImages
from jaxmed.errors import DataError, UsageError

SPECS = ("phantom:brain", "phantom:lung", "a folder", "a .dcm, .nii[.gz] or .npz file", "tfds:NAME[:SPLIT]")

# Lung patches have a fixed physical field of view (64 px at about 0.7 mm); other
# sizes are resampled from it. Brain slices are drawn at the requested size directly.
LUNG_NATIVE_SIZE = 64


def load(spec: str | DataOptions, image_size: int = 128, channels: int = 1, *, seed: int = 0,
         **options: Any) -> Dataset:
    """Reads the data source named by `spec`.

    Args:
      spec: a data spec (see module docstring), or a whole `DataOptions`.
      image_size: side of the square output images.
      channels: 1 (grayscale) or 3.
      seed: phantom sources' generator seed.
      **options: `DataOptions` fields, e.g. n=500, window="brain", skip_bad=True (with a
        `DataOptions` spec they replace its fields).

    Results are cached on disk (see `jaxmed.data.cache`; $JAXMED_DATA_CACHE="" disables
    it), except for TFDS sources, so a second read of the same source and options is fast.

    Returns:
      A `Dataset`. For sources on disk, provenance holds "files" (where each image came
      from), "skipped" ([entry, reason] pairs), "ignored" ([entry, reason] pairs of
      documents such as a README.txt, set aside as not data), "raw" (sizes, bit depths and intensity
      range before preprocessing), for predefined splits "splits", and for slices of
      volumes or series "subjects" (the volume or series of each image).

    Raises:
      UsageError: an unknown or invalid option.
      DataError: if the spec names no known source, or the source cannot be read.
    """
    base = spec if isinstance(spec, DataOptions) else DataOptions(spec=spec)
    unknown = set(options) - {field.name for field in dataclasses.fields(DataOptions)}
    if unknown:
        raise UsageError(f"unknown data option(s) {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(field.name for field in dataclasses.fields(DataOptions))}")
    read_options = ReadOptions(image_size=image_size, channels=channels, **{**dataclasses.asdict(base), **options})
    spec = read_options.spec
    kind, _, name = spec.partition(":")
    if kind == "phantom":
        key = {"phantom": name, "image_size": image_size, "channels": channels, "n": read_options.n,
               "class_fraction": read_options.class_fraction, "difficulty": read_options.difficulty, "seed": seed}
        return _named(spec, cache.cached(key, lambda: _load_phantom(spec, name, image_size, channels, read_options.n,
                                                                    read_options.class_fraction,
                                                                    read_options.difficulty, seed)))
    if kind == "tfds":
        from jaxmed.data.sources import tfds  # noqa: PLC0415 -- optional dependency, imported on use

        return _dataset(spec, "tfds", tfds.read(name, read_options))
    path = os.path.expanduser(spec)
    if not os.path.lexists(path):
        raise DataError(f"{spec}: no such file or folder, and not a data spec; this version reads "
                        f"{', '.join(SPECS)}")
    source = detect.folder_kind(path) if os.path.isdir(path) else detect.file_kind(path)
    if source is None:
        raise DataError(f"{spec}: not a data file jaxmed reads (DICOM, NIfTI or .npz; image files go in a folder)")
    key = {"source": source, "options": read_options.cache_key()}
    return _named(spec, cache.cached(key, lambda: _dataset(spec, source, _reader(source)(path, read_options)),
                                     location=path))


def _named(spec: str, dataset: Dataset) -> Dataset:
    """`dataset` with the spec as the caller wrote it (the cache may hold another spelling of the path)."""
    return dataset._replace(provenance={**dataset.provenance, "spec": spec})


def _reader(source: str):
    """The `read(location, options)` of a source module, imported on use (pydicom, nibabel are slow to import)."""
    import importlib  # noqa: PLC0415

    module = {detect.IMAGES: "folder", detect.DICOM: "dicom", detect.NIFTI: "nifti", detect.NPZ: "medmnist"}[source]
    return importlib.import_module(f"jaxmed.data.sources.{module}").read


def _dataset(spec: str, source: str, read: SourceImages) -> Dataset:
    provenance = {"spec": spec, "source": source, "files": list(read.files),
                  "skipped": [list(item) for item in read.skipped],
                  "ignored": [list(item) for item in read.ignored], "raw": read.raw}
    if read.splits is not None:
        provenance["splits"] = read.splits.tolist()
    if read.subjects is not None:
        provenance["subjects"] = list(read.subjects)
    return Dataset(read.images, read.labels, read.class_names, provenance)


def _load_phantom(spec: str, name: str, image_size: int, channels: int, n: int, class_fraction: float,
                  difficulty: float, seed: int) -> Dataset:
    if name == "brain":
        generated = phantoms.brain(n, size=image_size, tumor_fraction=class_fraction, difficulty=difficulty,
                                   seed=seed)
    elif name == "lung":
        generated = phantoms.lung(n, size=LUNG_NATIVE_SIZE, nodule_fraction=class_fraction, difficulty=difficulty,
                                  seed=seed)
    else:
        raise DataError(f"{spec}: unknown phantom; choose phantom:brain or phantom:lung")
    images = preprocess(generated.images, image_size=image_size, channels=channels)
    provenance = {"spec": spec, "source": "phantom", "n": n, "class_fraction": class_fraction,
                  "difficulty": difficulty, "seed": seed}
    return Dataset(images, generated.labels.astype(np.int32), tuple(generated.class_names), provenance)


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


def rarest_class(labels: np.ndarray, class_names: tuple[str, ...] | list[str]) -> str:
    """The name of the class with the fewest examples, e.g. the default class to augment or synthesise.

    Classes with no examples are passed over (there is nothing to augment). On a tie, the
    name that comes first in sorted order wins, so the answer does not depend on the label
    order.

    Args:
      labels: (N,) indices into `class_names`.
      class_names: the class names.

    Returns:
      A name from `class_names`.

    Raises:
      DataError: if there are no labels, or a label is outside [0, len(class_names)).
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        raise DataError("no labels: a data set without images has no rarest class")
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise DataError(f"labels span [{labels.min()}, {labels.max()}], outside the {len(class_names)} classes "
                        f"{', '.join(class_names)}")
    counts = np.bincount(labels, minlength=len(class_names))
    present = [(int(count), name) for name, count in zip(class_names, counts, strict=True) if count > 0]
    return min(present)[1]
