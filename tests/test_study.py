"""The augmentation study on a tiny configuration."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from jaxmed.data import Dataset
from jaxmed.errors import DataError, UsageError
from jaxmed.studies.augmentation import StudyConfig, arm_names, paired_interval, run_study, with_minority_class


def test_paired_interval():
    interval = paired_interval([0.1, 0.2, 0.3])
    assert interval["mean"] == pytest.approx(0.2)
    assert interval["low"] < 0.2 < interval["high"]
    assert paired_interval([0.1])["low"] is None


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


@pytest.mark.slow
def test_tiny_study_writes_every_arm_and_seed(tmp_path):
    config = StudyConfig.tiny()
    summary = run_study(config, tmp_path, progress=False)
    saved = json.loads((tmp_path / "study.json").read_text())
    assert saved["baseline"] == "augment"
    assert set(saved["arms"]) == set(arm_names(config))
    for arm in arm_names(config):
        assert set(saved["per_seed"][arm]) == {"0", "1"}
        assert len(saved["arms"][arm]["f1"]["values"]) == 2
    for arm, differences in saved["differences"].items():
        assert differences["f1"]["n"] == 2 and differences["f1"]["low"] is not None
    assert (tmp_path / "plots" / "study.png").is_file()
    assert summary["summary"] and all(arm in summary["summary"] for arm in saved["differences"])
    # The synthetic images themselves, measured per seed against the test split's tumours.
    quality = saved["synthetic_quality"]
    assert set(quality["per_seed"]) == {"0", "1"}
    assert set(quality["mean"]) == {"fid", "kid", "precision", "recall", "copies", "data_copying_z"}
    assert quality["mean"]["fid"] == pytest.approx(np.mean([seed["fid"] for seed in quality["per_seed"].values()]))
    assert f"Synthetic images (mean over seeds): FID {quality['mean']['fid']:.1f}" in summary["summary"]
    report = json.loads((tmp_path / "seed_0" / "synthetic" / "eval.json").read_text())
    assert report["counts"]["training"] == config.minority_train_count
    assert (tmp_path / "seed_0" / "synthetic" / "plots" / "nearest_training.png").is_file()


@pytest.mark.slow
def test_gan_and_classifiers_never_see_test_images(tmp_path, monkeypatch):
    """The GAN trains on training-split minority images only; every arm shares one untouched test split."""
    from jaxmed import families
    from jaxmed.studies import augmentation

    seen = {"gan": [], "arms": [], "features": []}
    train_feature_extractor = augmentation.train_feature_extractor

    def recording_train_feature_extractor(config, images, folder, **options):
        seen["features"].append(images)
        return train_feature_extractor(config, images, folder, **options)

    def fake_train_gan(config, workdir, images, progress=True):
        seen["gan"].append(images)
        return SimpleNamespace(state=None, definition=SimpleNamespace(latent_dim=config.latent_dim, class_names=()))

    def fake_sample_images(generate, state, z, batch_size):
        return np.full((len(z), 32, 32, 1), 0.5, np.float32)

    def fake_train_classifier(config, workdir, data, progress=True):
        seen["arms"].append((config, data))
        report = {name: 0.5 for name in augmentation.METRICS}
        report["confidence_intervals"] = {}
        return SimpleNamespace(eval=report)

    # Only the study's runs are faked: the feature extractor (a VAE) trains for real.
    for name, fake in (("gan", fake_train_gan), ("classifier", fake_train_classifier)):
        monkeypatch.setattr(type(families.get(name)), "train",
                            lambda self, config, workdir, data=None, *, progress=True, fake=fake:
                            fake(config, workdir, data, progress=progress))
    monkeypatch.setattr(augmentation, "sample_images", fake_sample_images)
    monkeypatch.setattr(augmentation, "train_feature_extractor", recording_train_feature_extractor)
    config = StudyConfig.tiny(seeds=1, synthetic_ratio_large=2.0)
    run_study(config, tmp_path, progress=False)

    (gan_images,) = seen["gan"]
    assert len(gan_images) == config.minority_train_count
    _, first = seen["arms"][0]
    test_hashes = {image.tobytes() for image in first.test[0]}
    assert not any(image.tobytes() in test_hashes for image in gan_images)
    (feature_images,) = seen["features"]
    assert not any(image.tobytes() in test_hashes for image in feature_images)
    for arm_config, data in seen["arms"]:
        assert np.array_equal(data.test[0], first.test[0]) and np.array_equal(data.test[1], first.test[1])
        assert not any(image.tobytes() in test_hashes for image in data.train[0])
    augmented = [arm_config.augment for arm_config, _ in seen["arms"]]
    assert augmented == [name.startswith("augment") for name in arm_names(config)]
    extra = [len(data.train[1]) - len(first.train[1]) for _, data in seen["arms"]]
    k = config.minority_train_count  # synthetic images per arm: ratio x real minority images
    assert extra == [0, 0, k, 2 * k, k, 2 * k]


@pytest.mark.slow
def test_a_vae_can_be_the_generator(tmp_path):
    config = StudyConfig.tiny(seeds=1, generator="vae")
    summary = run_study(config, tmp_path, progress=False)
    assert (tmp_path / "seed_0" / "vae" / "plots" / "reconstructions.png").is_file()
    assert not (tmp_path / "seed_0" / "gan").exists()
    assert set(summary["per_seed"]) == set(arm_names(config))
    with pytest.raises(UsageError, match="generator must be one of gan, vae, diffusion, got 'wavenet'"):
        StudyConfig.tiny(generator="wavenet")
