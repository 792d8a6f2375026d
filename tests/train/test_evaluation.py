"""Evaluating a generator: the report of a tiny GAN, the in-domain feature extractor, and the copy detector."""

import json

import numpy as np
import pytest
from PIL import Image

from jaxmed import data as data_lib
from jaxmed.errors import CheckpointError, DataError
from jaxmed.evaluation.features import load_feature_extractor
from jaxmed.evaluation.generators import evaluate_generator, memorization
from jaxmed.families.classifier import FAMILY as CLASSIFIER
from jaxmed.families.classifier import ClassifierConfig
from jaxmed.families.gan import FAMILY as GAN
from jaxmed.families.gan import GanConfig
from jaxmed.training import runner

BRAIN = {"data.spec": "phantom:brain", "data.n": 64}


@pytest.fixture(scope="module")
def gan(tmp_path_factory):
    """A 4-step GAN on 32 px brain phantoms."""
    workdir = tmp_path_factory.mktemp("evaluation") / "gan"
    runner.run(GAN, GanConfig.tiny(**BRAIN), workdir, progress=False)
    return workdir


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A 1-epoch classifier on the same phantoms: a feature extractor."""
    workdir = tmp_path_factory.mktemp("evaluation") / "classifier"
    runner.run(CLASSIFIER, ClassifierConfig.tiny(**BRAIN, epochs=1), workdir, progress=False)
    return workdir


def test_report_of_an_untrained_gan(gan, tmp_path):
    # No extractor given: a VAE is trained on the generator's data (all classes) in out/feature_extractor.
    report = evaluate_generator(gan, tmp_path, feature_steps=20, n=40, progress=False)
    assert json.loads((tmp_path / "eval.json").read_text()) == report
    # Reference phantoms are drawn with another seed: all 64 are unseen patients.
    assert report["counts"] == {"generated": 40, "training": 64, "reference": 64, "held_out": 64,
                                "reference_available": 64}
    assert report["step"] == 4
    assert report["feature_extractor"] == {"workdir": str(tmp_path / "feature_extractor"), "model": "vae",
                                           "features": 128, "step": 20}
    for key in ("precision", "recall", "coverage"):
        assert 0.0 <= report[key] <= 1.0
    # After 4 steps the generator makes noise: much farther from the real images than a
    # second real sample is from the first, and it copies nothing.
    floor = report["real_floor"]
    assert report["fid"] > 3 * floor["fid"] > 0
    assert report["kid"]["mean"] > floor["kid"]["mean"] + 3 * report["kid"]["std"]
    assert report["memorization"]["copies"] == 0
    assert np.isfinite(report["memorization"]["data_copying"]["z"])
    for plot in ("samples.png", "nearest_training.png", "pixel_distribution.png", "features.png"):
        assert (tmp_path / "plots" / plot).stat().st_size > 1000
    assert "SYNTHETIC" in Image.open(tmp_path / "plots" / "samples.png").text["Description"]


@pytest.mark.slow
def test_a_classifier_embeds_with_its_hidden_layer(gan, classifier, tmp_path):
    extractor = load_feature_extractor(classifier)
    images = data_lib.load("phantom:brain", 32, n=10, seed=3).images
    features = extractor(images, batch_size=4)
    assert features.shape == (10, 128) and features.dtype == np.float32
    np.testing.assert_allclose(extractor(images[:3], batch_size=4), features[:3], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"takes images of shape \(N, 32, 32, 1\)"):
        extractor(np.zeros((2, 64, 64, 1), np.float32))
    report = evaluate_generator(gan, tmp_path, features=classifier, n=8, max_reference=20,
                                progress=False)
    assert report["feature_extractor"]["model"] == "seed_cnn"
    # A large reference set is subsampled.
    assert report["counts"]["reference"] == 20 and report["counts"]["reference_available"] == 64
    assert 0 <= report["feature_extractor"]["test_accuracy"] <= 1
    assert not (tmp_path / "feature_extractor").exists()
    with pytest.raises(CheckpointError,
                       match="a 'dcgan' run; a feature extractor is a jaxmed VAE or finished classifier workdir$"):
        load_feature_extractor(gan)


@pytest.mark.slow
def test_a_feature_extractor_for_other_images_is_refused(gan, tmp_path):
    runner.run(CLASSIFIER, ClassifierConfig.tiny(**BRAIN, epochs=1, image_size=64), tmp_path / "wide", progress=False)
    with pytest.raises(DataError, match="takes 64 px, 1 channel"):
        evaluate_generator(gan, tmp_path / "out", features=tmp_path / "wide", n=8, progress=False)


def test_memorization_finds_copies_and_the_data_copying_test_flags_them():
    phantoms = data_lib.load("phantom:brain", 32, n=120, seed=11).images
    train, held_out, fresh = phantoms[:60], phantoms[60:90], phantoms[90:]
    embed = lambda images: images.reshape(len(images), -1)  # noqa: E731 (any embedding will do here)

    copies = train[:30] + np.float32(0.01) * np.random.default_rng(0).standard_normal(train[:30].shape, np.float32)
    section, (nearest, correlation) = memorization(train, held_out, copies, embed(train), embed(held_out),
                                                   embed(copies))
    assert section["copies"] == 30
    assert sorted((pair["generated"], pair["training"]) for pair in section["copy_pairs"]) == [
        (i, i) for i in range(20)]
    np.testing.assert_array_equal(nearest, np.arange(30))
    assert correlation.min() > 0.99
    assert section["data_copying"]["z"] < -3

    section, _ = memorization(train, held_out, fresh, embed(train), embed(held_out), embed(fresh))
    assert section["copies"] == 0
    assert abs(section["data_copying"]["z"]) < 3
    assert section["nearest_training_correlation"]["generated"]["max"] < 0.99

    section, _ = memorization(train, held_out[:3], fresh, embed(train), embed(held_out[:3]), embed(fresh))
    assert section["data_copying"] is None and "pass --data" in section["data_copying_unavailable"]
