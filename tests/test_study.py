"""The augmentation study end to end: every arm's training data, resuming, the command line."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from jaxmed import families
from jaxmed.cli import main
from jaxmed.data import Dataset
from jaxmed.errors import DataError
from jaxmed.evaluation import generators as generator_evaluation
from jaxmed.families import classifier as classifier_family
from jaxmed.studies import quality, run
from jaxmed.studies.augmentation import StudyConfig, run_study, study_arms, with_minority_class


def test_the_minority_class_is_the_rarest_unless_named(capsys):
    dataset = Dataset(np.zeros((7, 4, 4, 1), np.float32), np.array([0, 0, 1, 2, 2, 2, 1], np.int32),
                      ("effusion", "nodule", "normal"), {"spec": "chest"})
    chosen = with_minority_class(StudyConfig(), dataset)
    # Two classes tie at 2 images: the first name in sorted order wins.
    assert chosen.minority_class == "effusion"
    assert "minority class: 'effusion', the rarest (2 of 7 images" in capsys.readouterr().err
    assert with_minority_class(StudyConfig(minority_class="normal"), dataset).minority_class == "normal"
    with pytest.raises(DataError, match="mass"):
        with_minority_class(StudyConfig(minority_class="mass"), dataset)
    # The default phantom data: tumours are the rarer class.
    assert StudyConfig().minority_class == "" and StudyConfig().data.class_fraction < 0.5


def _fake_runs(monkeypatch):
    """Fakes every training (generators, classifiers, feature extractor) and records what each one saw."""
    seen = {"generator": [], "classifier": [], "features": [], "quality": []}

    def train_generator(self, config, workdir, data=None, *, progress=True):
        seen["generator"].append(data)
        return SimpleNamespace(state=None, definition=SimpleNamespace(latent_dim=config.latent_dim, class_names=()))

    def sample_images(generate, state, z, batch_size):
        # Image i is filled with a value fixed by its index, so every synthetic image is distinct and traceable.
        values = np.asarray(z)[:, 0]
        return np.tile(values[:, None, None, None], (1, 32, 32, 1)).astype(np.float32) * 0.01

    def train_classifier(self, config, workdir, data=None, *, progress=True):
        seen["classifier"].append((config, workdir, data))
        metrics = {"roc_auc": 0.8, "recall": 0.5, "specificity": 0.5, "f1": 0.5}
        report = {"accuracy": 0.5, "per_class": {name: metrics for name in data.class_names}}
        return SimpleNamespace(eval=report, definition=None, state=SimpleNamespace(best_params=None,
                                                                                   best_model_state=None))

    def predict(definition, params, model_state, images, batch_size):
        # The baseline classifier calls every other candidate minority.
        minority = np.where(np.arange(len(images)) % 2 == 0, 0.9, 0.1)
        return np.stack([1 - minority, minority], axis=1) if seen["minority"] == 1 else \
            np.stack([minority, 1 - minority], axis=1)

    def measure_synthetic(synthetic, real_minority, test_minority, extractor_dir, out_dir, seed):
        seen["quality"].append(test_minority)
        return {"fid": 1.0, "kid": 0.0, "precision": 1.0, "recall": 1.0, "copies": 0, "data_copying_z": None}

    for name in ("gan", "vae"):
        monkeypatch.setattr(type(families.get(name)), "train", train_generator)
    monkeypatch.setattr(type(families.get("classifier")), "train", train_classifier)
    monkeypatch.setattr(run, "sample_images", sample_images)
    monkeypatch.setattr(classifier_family, "predict", predict)
    monkeypatch.setattr(generator_evaluation, "train_feature_extractor",
                        lambda config, images, folder, **options: seen["features"].append(images))
    monkeypatch.setattr(quality, "measure_synthetic", measure_synthetic)
    return seen


def test_no_test_image_enters_training_in_any_arm(tmp_path, monkeypatch):
    """Generators, the feature extractor and every arm's classifier train on the training split only."""
    seen = _fake_runs(monkeypatch)
    config = StudyConfig.tiny(seeds=1, synthetic_ratios="0.5,2", generators="gan,vae", minority_train_counts="6,12",
                              minority_class="tumor")
    seen["minority"] = 1  # phantom:brain's classes are (no_tumor, tumor)
    run_study(config, tmp_path, progress=False)

    arms = study_arms(config.generators, config.synthetic_ratios, config.filter_ratio)
    # all_real once, then every other arm per count.
    assert len(seen["classifier"]) == 1 + 2 * (len(arms) - 1)
    first = seen["classifier"][0][2]
    test_images, test_labels = first.test
    test_hashes = {image.tobytes() for image in test_images}
    minority = first.class_names.index("tumor")
    full_train = first.train  # the all-real arm trains on the whole training split
    full_hashes = {image.tobytes() for image in full_train[0]}
    for generator_images in seen["generator"]:
        assert len(generator_images) in (6, 12)
        assert not any(image.tobytes() in test_hashes for image in generator_images)
    (feature_images,) = seen["features"]
    assert np.array_equal(feature_images, full_train[0])
    assert all(np.array_equal(reference, test_images[test_labels == minority]) for reference in seen["quality"])
    names = {arm.folder: arm for arm in arms}
    checked = set()
    for config_seen, workdir, data in seen["classifier"]:
        arm = names[workdir.name]
        checked.add(arm.kind)
        assert np.array_equal(data.test[0], test_images) and np.array_equal(data.val[0], first.val[0])
        assert not any(image.tobytes() in test_hashes for image in data.train[0]), arm.name
        assert config_seen.augment == (arm.name != "real")
        real = [image for image in data.train[0] if image.tobytes() in full_hashes]
        minority_count = int(np.sum(data.train[1] == minority))
        count = 0 if arm.kind == "all_real" else int(workdir.parent.parent.name.removeprefix("count_"))
        if arm.kind == "all_real":
            assert np.array_equal(data.train[0], full_train[0])
        elif arm.kind in ("real", "augment"):
            assert len(real) == len(data.train[0]) and minority_count == count
        elif arm.kind == "synthetic":
            assert minority_count == count + round(arm.ratio * count)
        elif arm.kind == "filtered":
            # Every other candidate passes the filter: exactly the wanted number, all from even stream indices.
            assert minority_count == 2 * count
        elif arm.kind == "tstr":
            # No real minority image: the minority class is synthetic only, as many as the real ones it replaces.
            assert minority_count == count
            real_labels = data.train[1][:len(data.train[1]) - count]
            assert not np.any(real_labels == minority)
    assert checked == {"real", "augment", "synthetic", "filtered", "tstr", "all_real"}
    saved = json.loads((tmp_path / "study.json").read_text())
    assert saved["filtering"]["gan"]["6"]["seed_cnn"]["0"] == {"candidates": 12, "accepted": 6, "used": 6,
                                                                "wanted": 6}
    assert set(saved["per_seed"]["seed_cnn"]["12"]) == {arm.name for arm in arms}
    assert (tmp_path / "report.md").is_file() and (tmp_path / "plots" / "samples" / "vae_seed0_count_12.png").is_file()


def test_the_synthetic_stream_is_fixed_by_seed_and_index():
    from jaxmed.studies.run import synthetic_noise

    long, short = synthetic_noise(3, 10, 4), synthetic_noise(3, 4, 4)
    assert np.array_equal(np.asarray(long[:4]), np.asarray(short))
    assert not np.array_equal(np.asarray(synthetic_noise(4, 4, 4)), np.asarray(short))


@pytest.mark.slow
def test_a_resumed_study_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    """Interrupted at its 6th classifier run (the filtered arm, the last: its filter then needs the restored
    baseline classifier), the rerun writes the same study.json."""
    tiny = StudyConfig.tiny(seeds=1, feature_steps=0)
    uninterrupted = run_study(tiny, tmp_path / "whole", progress=False)

    real_train = type(families.get("classifier")).train
    calls = []

    def failing_train(self, config, workdir, data=None, *, progress=True):
        calls.append(workdir)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real_train(self, config, workdir, data, progress=progress)

    with monkeypatch.context() as patch:
        patch.setattr(type(families.get("classifier")), "train", failing_train)
        with pytest.raises(KeyboardInterrupt):
            run_study(tiny, tmp_path / "resumed", progress=False)
    assert not (tmp_path / "resumed" / "study.json").exists()
    assert calls[-1].name == "gan_plus_filtered_x1"
    resumed = run_study(tiny, tmp_path / "resumed", progress=False)
    assert json.loads((tmp_path / "resumed" / "study.json").read_text()) == \
        json.loads((tmp_path / "whole" / "study.json").read_text())
    assert resumed["per_seed"] == uninterrupted["per_seed"]



@pytest.mark.slow
def test_the_command_needs_only_data_and_workdir(tmp_path, capsys):
    """On a labelled folder the study picks the rarest class itself and writes study.json and report.md."""
    rng = np.random.default_rng(0)
    for name, count, brightness in (("common", 50, 60), ("rare", 40, 180)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(count):
            pixels = np.clip(rng.normal(brightness, 20, (32, 32)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / name / f"{i}.png")
    tiny = ["image_size=32", "seeds=2", "minority_train_counts=6", "synthetic_ratios=1", "generator_steps=2",
            "generator_batch_size=4", "feature_steps=2", "classifier.width=8", "classifier.epochs=1",
            "classifier.batch_size=8", "classifier.eval.bootstrap_resamples=20"]
    status = main(["study", "augmentation", "--data", str(tmp_path / "data"), "--workdir", str(tmp_path / "w"),
                   "--no-progress", *[f"--set={item}" for item in tiny]])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "minority class: 'rare', the rarest (40 of 90 images" in err
    saved = json.loads((tmp_path / "w" / "study.json").read_text())
    assert saved["minority_class"] == "rare" and saved["config"]["minority_class"] == "rare"
    assert set(saved["per_seed"]["seed_cnn"]["6"]["gan+tstr"]) == {"0", "1"}
    assert saved["power_statement"]["seed_cnn"]["6"]["roc_auc"]["n"] == 2
    assert "## Can the study answer?" in (tmp_path / "w" / "report.md").read_text()
    assert (tmp_path / "w" / "seed_0" / "count_6" / "gan_synthetic" / "eval.json").is_file()
