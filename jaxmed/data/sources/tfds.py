"""Reads a TensorFlow Datasets (TFDS) data set: the spec ``tfds:NAME[:SPLIT]``.

:func:`read` takes ``NAME[:SPLIT]``: a TFDS name (``mnist``, ``patch_camelyon``,
``NAME/CONFIG``, ``NAME:VERSION`` is not accepted -- use ``NAME/CONFIG:SPLIT``) and
optionally a split in TFDS's split syntax (``train``, ``test[:10%]``, ``train+test``).
It needs the optional extra: ``pip install 'jaxmed[tfds]'`` (tensorflow-datasets).

**Reading.** Data sets are read through ``tfds.data_source`` (random access over
ArrayRecord files), which needs no TensorFlow: TFDS decodes the images with Pillow.
The first time a name is used, TFDS downloads and prepares it into its data directory
(``TFDS_DATA_DIR``, default ``~/tensorflow_datasets``) in the ArrayRecord format; for
most data sets that preparation step encodes images with TensorFlow, so it needs
``pip install tensorflow-cpu`` once (reading afterwards does not). A data set already
prepared in the older TFRecord format cannot be read at random and is reported, with
what to do. Nothing is downloaded except when a ``tfds:`` spec asks for it.

**Features.** The image is the first ``Image`` feature of the data set's features and
the label the first ``ClassLabel`` (class names from ``ClassLabel.names``). Without a
``ClassLabel`` the images are unlabelled (class ``"unlabelled"``). Images are scaled
by the full range of their type (uint8 by 255); float images must be in ``[0, 1]``.

**Splits.** ``NAME:SPLIT`` reads that split alone (``SourceImages.splits`` is None).
``NAME`` alone reads the data set's predefined ``train``, ``validation`` (reported as
``"val"``) and ``test`` splits, and records each image's split; other splits (such
as SVHN's ``extra``) are read only when named. Entries are named ``train[12]``: the
split as given and the index within it.

**Problems.** Errors for the whole source, even with ``skip_bad``: the extra not
installed, an unknown name or split, a data set without an ``Image`` feature, a failed
download or preparation, TensorFlow missing for the preparation, a data set prepared
only as TFRecord. Per example, and skipped (each listed) under ``skip_bad``: an
example that cannot be decoded, a negative label (TFDS's mark of an unlabelled
example), NaN or infinite values, float values outside ``[0, 1]``, images smaller than
8x8.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from jaxmed.data.sources.common import BadEntry, ImageCollector, ReadOptions, SourceImages, exception_text, one_line
from jaxmed.data.sources.layout import UNLABELLED
from jaxmed.errors import DataError

INSTALL_HINT = "pip install 'jaxmed[tfds]'"
# TFDS split name -> the split name jaxmed reports; the splits read when none is named.
STANDARD_SPLITS: dict[str, str] = {"train": "train", "validation": "val", "valid": "val", "val": "val",
                                   "test": "test"}


def _import_tfds(spec: str):
    """The tensorflow_datasets module, or a DataError saying how to install it."""
    try:
        import tensorflow_datasets  # noqa: PLC0415 -- optional dependency, imported on use
    except ImportError:
        raise DataError(f"{spec}: TensorFlow Datasets is not installed; {INSTALL_HINT}") from None
    return tensorflow_datasets


def _failure(spec: str, name: str, exc: Exception, tfds) -> DataError:
    """A one-line DataError for a failure to find, prepare or open a TFDS data set."""
    if isinstance(exc, tfds.core.registered.DatasetNotFoundError):
        return DataError(f"{spec}: no TFDS data set named {name!r} (see `tfds.list_builders()`)")
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    cause = exc.__cause__
    while missing is None and cause is not None:  # TFDS wraps the import error of its encoders
        missing = getattr(cause, "name", None) if isinstance(cause, ModuleNotFoundError) else None
        cause = cause.__cause__
    if missing and missing.split(".")[0] == "tensorflow":
        return DataError(f"{spec}: preparing {name} needs TensorFlow (TFDS encodes its images with it): "
                         f"pip install tensorflow-cpu, then run again (reading it later needs only {INSTALL_HINT})")
    if isinstance(exc, ValueError) and "Unknown split" in str(exc):
        return DataError(f"{spec}: {one_line(' '.join(str(exc).split()))}")
    if isinstance(exc, NotImplementedError):  # no random-access file format
        return DataError(f"{spec}: {name} is prepared in the TFRecord format, which cannot be read at random; "
                         f"delete it from the TFDS data directory so it is prepared again as ArrayRecord, or set "
                         f"TFDS_DATA_DIR to another folder")
    return DataError(f"{spec}: cannot load {name} ({one_line(exception_text(exc))})")


def _features(spec: str, info, tfds) -> tuple[str, str | None, tuple[str, ...]]:
    """``(image_key, label_key or None, class_names)`` from a data set's top-level features."""
    image_key = label_key = None
    class_names: tuple[str, ...] = (UNLABELLED,)
    for key, feature in info.features.items():
        if image_key is None and isinstance(feature, tfds.features.Image):
            image_key = key
        if label_key is None and isinstance(feature, tfds.features.ClassLabel):
            label_key, class_names = key, tuple(feature.names)
    if image_key is None:
        kinds = ", ".join(f"{key}: {type(feature).__name__}" for key, feature in info.features.items())
        raise DataError(f"{spec}: has no Image feature to read ({one_line(kinds)})")
    return image_key, label_key, class_names


def _sources(spec: str, name: str, split: str, tfds) -> dict[str, tuple[Any, str | None]]:
    """``{split as named: (data source, jaxmed split name or None)}``."""
    # data_dir is passed from the environment at call time (TFDS reads it once, at import);
    # with an explicit data_dir TFDS no longer picks ArrayRecord by itself, hence file_format.
    data_dir = os.environ.get("TFDS_DATA_DIR") or None
    try:
        found = tfds.data_source(name, split=split or None, data_dir=data_dir,
                                 builder_kwargs={"file_format": "array_record"})
    except Exception as exc:  # noqa: BLE001 -- TFDS raises many types; each becomes one line
        raise _failure(spec, name, exc, tfds) from None
    if split:
        return {split: (found, None)}
    chosen = {key: (source, STANDARD_SPLITS[key]) for key, source in found.items() if key in STANDARD_SPLITS}
    if not chosen:
        raise DataError(f"{spec}: none of the splits {', '.join(found) or '(none)'} is train, validation or test; "
                        f"name one: tfds:{name}:SPLIT")
    return dict(sorted(chosen.items(), key=lambda item: ("train", "val", "test").index(item[1][1])))


def read(location: str, options: ReadOptions) -> SourceImages:
    """Reads a TFDS data set (see the module docstring).

    Args:
      location: ``NAME`` or ``NAME:SPLIT`` (the spec without its ``tfds:`` prefix).
      options: output size and channels, and ``skip_bad``.

    Returns:
      A `SourceImages`, examples in split order (train, val, test) and index order.

    Raises:
      DataError: one line naming the spec and the problem.
    """
    spec = f"tfds:{location}"
    name, _, split = location.partition(":")
    if not name:
        raise DataError(f"{spec}: no data set name; use tfds:NAME or tfds:NAME:SPLIT, e.g. tfds:mnist:train")
    tfds = _import_tfds(spec)
    sources = _sources(spec, name, split, tfds)
    first = next(iter(sources.values()))[0]
    image_key, label_key, class_names = _features(spec, first.dataset_info, tfds)

    collector = ImageCollector(spec, options)
    for split_name, (source, reported) in sources.items():
        for index in range(len(source)):
            entry = f"{split_name}[{index}]"
            try:
                try:
                    example = source[index]
                except Exception as exc:  # noqa: BLE001 -- any decoder failure is a bad example
                    raise BadEntry(f"cannot decode ({exception_text(exc)})") from None
                class_name = UNLABELLED
                if label_key is not None:
                    label = int(example[label_key])
                    if not 0 <= label < len(class_names):
                        raise BadEntry(f"label {label} is not a class index (an unlabelled example)")
                    class_name = class_names[label]
                collector.add(np.asarray(example[image_key]), entry=entry, class_name=class_name, split=reported)
            except BadEntry as exc:
                collector.skip(entry, exc.reason)
    return collector.result(class_names)
