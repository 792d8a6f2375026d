"""Cross-validation, the tuned operating point and test-time flips of the classifier family."""

import json

import numpy as np
import pytest

import jaxmed
from jaxmed.metrics.classification import METRIC_NAMES

TINY = {"image_size": 28, "width": 8, "batch_size": 8, "epochs": 1, "progress": False,
        "eval.bootstrap_resamples": 10}


def _npz(path, rng, counts=(("train", 48), ("val", 8), ("test", 16))):
    """A MedMNIST-style archive with its own splits; the classes differ in brightness (learnable)."""
    arrays = {}
    for split, count in counts:
        labels = np.arange(count) % 2
        images = rng.integers(0, 120, (count, 28, 28)) + 100 * labels[:, None, None]
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images.astype(np.uint8), labels.astype(np.uint8)
    np.savez(path, **arrays)
    return path


@pytest.mark.slow
def test_cross_validation_reports_means_intervals_folds_and_a_fold_ensemble(tmp_path):
    data = _npz(tmp_path / "toy.npz", np.random.default_rng(0))
    result = jaxmed.train("classifier", tmp_path / "cv", data=str(data), **TINY,
                          **{"cv.folds": 3, "cv.repeats": 2, "eval.tta": True})
    report = json.loads((tmp_path / "cv" / "eval.json").read_text())
    assert result.eval == report and result.eval_path == tmp_path / "cv" / "eval.json"
    assert report["cv"]["runs"] == len(report["folds"]) == 6
    for name in METRIC_NAMES:
        values = [fold[name] for fold in report["folds"] if fold[name] is not None]
        assert report[name] == pytest.approx(np.mean(values))
        assert report["cv"][name]["low"] <= report[name] <= report["cv"][name]["high"]
    # Every pool image (train + val of the archive, 56) is tested exactly once per repeat.
    sizes = [json.loads((tmp_path / "cv" / f"fold_{r}_{k}" / "eval.json").read_text())["split_sizes"]
             for r in range(2) for k in range(3)]
    assert [sum(size["test"] for size in sizes[r * 3:r * 3 + 3]) for r in range(2)] == [56, 56]
    assert all(size["train"] + size["val"] + size["test"] == 56 for size in sizes)
    ensemble = report["ensemble_test"]
    assert ensemble["members"] == 6 and ensemble["n"] == 16 and ensemble["tta"] is True
    again = jaxmed.train("classifier", tmp_path / "cv", progress=False)  # resumes: every fold is done
    assert again.eval == report


@pytest.mark.slow
def test_the_tuned_operating_point_is_reported_beside_argmax(tmp_path):
    data = _npz(tmp_path / "toy.npz", np.random.default_rng(1))
    report = jaxmed.train("classifier", tmp_path / "c", data=str(data), **TINY).eval
    points = report["operating_points"]
    assert points["criterion"] == "youden" and points["argmax"]["threshold"] == 0.5
    assert 0.0 <= points["tuned"]["threshold"] <= 1.0
    assert "argmax" in report["operating_point"] and "tuned" in report["operating_point"]
    assert points["argmax"]["accuracy"] == pytest.approx(report["accuracy"])
    assert (tmp_path / "c" / "plots" / "roc.png").is_file()


def test_cross_validation_needs_enough_images_per_class(tmp_path):
    data = _npz(tmp_path / "toy.npz", np.random.default_rng(2), counts=(("train", 4), ("val", 2), ("test", 4)))
    with pytest.raises(jaxmed.errors.DataError, match="too few"):
        jaxmed.train("classifier", tmp_path / "cv", data=str(data), **TINY, **{"cv.folds": 5})
