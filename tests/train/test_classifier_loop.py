"""Classifier training: eval.json, plots, resume, class weights, folder data."""

import json

import numpy as np
import pytest
from PIL import Image

from jaxmed.families.classifier import FAMILY as CLASSIFIER
from jaxmed.families.classifier import ClassifierConfig, class_weights
from jaxmed.training import runner
from jaxmed.training.metrics_writer import read_metrics


@pytest.mark.slow
def test_train_evaluate_and_resume(tmp_path):
    report = runner.run(CLASSIFIER, ClassifierConfig.tiny(epochs=1), tmp_path, progress=False).eval
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["split"] == "test" and saved["n"] == saved["split_sizes"]["test"] > 0
    for key in ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "confusion_matrix",
                "per_class", "macro", "confidence_intervals"):
        assert key in saved, key
    assert np.sum(saved["confusion_matrix"]) == saved["n"]
    assert {"training_curves.png", "roc.png", "confusion_matrix.png"} <= {p.name for p in (tmp_path / "plots").iterdir()}
    assert report["epochs_trained"] == 1
    # Rerun with more epochs: resumes at epoch 1 instead of starting over.
    resumed = runner.run(CLASSIFIER, ClassifierConfig.tiny(epochs=2), tmp_path, progress=False).eval
    assert resumed["epochs_trained"] == 2
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [row["epoch"] for row in rows if "epoch" in row] == [1, 2]
    # Besides the per-epoch rows, per-step rows every log.every steps.
    assert {"loss", "accuracy", "images_per_s"} <= set(next(row for row in rows if "epoch" not in row))


def test_balanced_class_weights():
    weights = class_weights(np.array([0, 0, 0, 1]), 2, "balanced")
    np.testing.assert_allclose(weights, [4 / 6, 4 / 2])
    np.testing.assert_allclose(class_weights(np.array([0, 1]), 2, "none"), [1, 1])


@pytest.mark.slow
def test_works_on_a_folder_of_class_subfolders(tmp_path):
    rng = np.random.default_rng(0)
    for name, brightness in (("no", 60), ("yes", 190)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for index in range(30):
            size = (int(rng.integers(40, 90)), int(rng.integers(40, 90)))
            pixels = np.clip(rng.normal(brightness, 30, size), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).convert("RGB").save(tmp_path / "data" / name / f"{index}.jpg")
    config = ClassifierConfig.tiny(**{"data.spec": str(tmp_path / "data"), "epochs": 3})
    report = runner.run(CLASSIFIER, config, tmp_path / "run", progress=False).eval
    assert report["class_names"] == ["no", "yes"]
    assert report["n"] == report["split_sizes"]["test"] > 0
    assert report["accuracy"] > 0.5  # the classes differ in brightness: better than chance


def test_augment_intensity_adds_brightness_and_contrast_jitter_to_the_training_augmentation():
    from jaxmed.data.augment import AugmentConfig
    from jaxmed.errors import UsageError
    from jaxmed.families.base import Task

    task = Task(class_names=("a", "b"), total_steps=10)
    jittered = CLASSIFIER.definition(ClassifierConfig.tiny(augment_intensity=0.2), task).augment
    assert jittered == AugmentConfig(brightness=0.2, contrast=0.2)
    assert CLASSIFIER.definition(ClassifierConfig.tiny(), task).augment == AugmentConfig()
    assert CLASSIFIER.definition(ClassifierConfig.tiny(augment=False, augment_intensity=0.2), task).augment is None
    with pytest.raises((UsageError, ValueError), match="augment_intensity"):
        ClassifierConfig.tiny(augment_intensity=1.0)
