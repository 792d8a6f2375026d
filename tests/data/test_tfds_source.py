"""Tests for jaxmed.data.sources.tfds: TensorFlow Datasets, offline and without TensorFlow.

Two kinds of data, neither downloaded: TFDS's mock data (``tfds.testing.mock_data``) for
a catalogue data set (MNIST), and tiny data sets defined here and prepared into a
temporary TFDS data directory as ArrayRecord files (real files, decoded by TFDS).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxmed import data as data_lib
from jaxmed.data.preprocess import preprocess
from jaxmed.data.sources import tfds as tfds_source
from jaxmed.data.sources.common import ReadOptions, SourceImages
from jaxmed.errors import DataError

SIZE = 8


def _pixels(index: int) -> np.ndarray:
    """The RGB image of example `index` of the tiny data sets (12 x 10, distinct per example)."""
    pixels = np.zeros((12, 10, 3), np.uint8)
    pixels[..., 0] = 20 * index
    pixels[:6, :, 1] = 255 - 20 * index
    return pixels


class JaxmedTinyScans(tfds.core.GeneratorBasedBuilder):
    """6 train and 3 test RGB images, labels benign / malignant by index parity."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(),
            "image": tfds.features.Image(shape=(12, 10, 3)),
            "label": tfds.features.ClassLabel(names=["benign", "malignant"]),
        }))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 6), "test": self._generate_examples(6, 9),
                "extra": self._generate_examples(9, 10)}

    def _generate_examples(self, start, stop):
        # PIL images are stored as PNG without TensorFlow (numpy arrays would need it).
        for index in range(start, stop):
            yield index, {"id": str(index), "image": Image.fromarray(_pixels(index)), "label": index % 2}


class JaxmedTinyUnlabelled(JaxmedTinyScans):
    """The same images without a ClassLabel."""

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(12, 10, 3))}))

    def _generate_examples(self, start, stop):
        for index in range(start, stop):
            yield index, {"image": Image.fromarray(_pixels(index))}


class JaxmedTinyTable(JaxmedTinyScans):
    """No image at all."""

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "value": tfds.features.Tensor(shape=(2,), dtype=np.float32),
            "label": tfds.features.ClassLabel(names=["a", "b"])}))

    def _generate_examples(self, start, stop):
        for index in range(start, stop):
            yield index, {"value": np.zeros(2, np.float32), "label": 0}


class JaxmedTinyArrays(JaxmedTinyScans):
    """Images given as numpy arrays: TFDS encodes those with TensorFlow."""

    def _generate_examples(self, start, stop):
        for index in range(start, stop):
            yield index, {"id": str(index), "image": _pixels(index), "label": index % 2}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A TFDS data directory with the tiny data sets prepared as ArrayRecord files."""
    root = tmp_path_factory.mktemp("tfds")
    for builder in (JaxmedTinyScans, JaxmedTinyUnlabelled, JaxmedTinyTable):
        builder(data_dir=str(root), file_format="array_record").download_and_prepare()
    return root


def _read(location: str, **kwargs) -> SourceImages:
    return tfds_source.read(location, ReadOptions(image_size=SIZE, **kwargs))


def _error(location: str) -> str:
    with pytest.raises(DataError) as info:
        _read(location)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"tfds:{location}:")
    return message


def test_mocked_mnist_split_reads_images_labels_and_class_names():
    with tfds.testing.mock_data(num_examples=5):
        read = _read("mnist:train")
        source = tfds.data_source("mnist", split="train", builder_kwargs={"file_format": "array_record"})
        examples = [source[index] for index in range(5)]

    assert read.images.shape == (5, SIZE, SIZE, 1)
    assert read.class_names == tuple(str(digit) for digit in range(10))  # from ClassLabel.names
    assert read.labels.tolist() == [int(example["label"]) for example in examples]
    assert read.files == tuple(f"train[{index}]" for index in range(5))
    assert read.splits is None
    expected = preprocess(np.stack([example["image"] for example in examples]), image_size=SIZE)
    np.testing.assert_allclose(read.images, expected, atol=1e-6)
    assert read.raw["sizes"] == {"28x28": 5} and read.raw["bit_depths"] == {"8-bit": 5}


def test_prepared_data_set_reads_its_standard_splits(data_dir, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir))

    dataset = data_lib.load("tfds:jaxmed_tiny_scans", image_size=SIZE, channels=3)

    assert dataset.class_names == ("benign", "malignant")
    assert dataset.provenance["source"] == "tfds"
    assert dataset.provenance["splits"] == ["train"] * 6 + ["test"] * 3  # "extra" is read only when named
    files = dataset.provenance["files"]
    assert sorted(files[:6]) == [f"train[{index}]" for index in range(6)]
    # TFDS shuffles examples when preparing: find each image's index by its red level.
    indices = [int(round((image[0, 0, 0] + 1) / 2 * 255 / 20)) for image in dataset.images]
    assert sorted(indices) == list(range(9))
    assert dataset.labels.tolist() == [index % 2 for index in indices]
    expected = preprocess(np.stack([_pixels(index) for index in indices]), image_size=SIZE, channels=3)
    np.testing.assert_allclose(dataset.images, expected, atol=1e-6)


def test_split_selection(data_dir, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir))

    test = _read("jaxmed_tiny_scans:test")
    assert len(test.files) == 3 and test.splits is None
    assert len(_read("jaxmed_tiny_scans:extra").files) == 1
    assert len(_read("jaxmed_tiny_scans:train[:50%]").files) == 3
    assert "Unknown split 'nope'" in _error("jaxmed_tiny_scans:nope")


def test_data_sets_without_labels_or_images(data_dir, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir))

    unlabelled = _read("jaxmed_tiny_unlabelled:train")
    assert unlabelled.class_names == ("unlabelled",) and set(unlabelled.labels.tolist()) == {0}
    assert "has no Image feature to read (value: Tensor, label: ClassLabel)" in _error("jaxmed_tiny_table:train")


def test_unknown_name_and_preparation_without_tensorflow(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    assert "no TFDS data set named 'jaxmed_no_such_set'" in _error("jaxmed_no_such_set")

    # Whether or not TensorFlow is installed here, make it unimportable for this call.
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    message = _error("jaxmed_tiny_arrays:train")
    assert "preparing jaxmed_tiny_arrays needs TensorFlow" in message and "pip install tensorflow-cpu" in message


def test_missing_extra_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import now raises ImportError

    with pytest.raises(DataError) as info:
        data_lib.load("tfds:mnist:train", image_size=SIZE)
    assert str(info.value) == "tfds:mnist:train: TensorFlow Datasets is not installed; pip install 'jaxmed[tfds]'"
    assert "no data set name" in _error("")
