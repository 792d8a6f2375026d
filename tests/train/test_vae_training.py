"""The VAE's step, its run through the shared loop, exact resume, divergence and sampling from a workdir."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxmed.errors import CheckpointError, TrainingDiverged
from jaxmed.families.base import Task
from jaxmed.families.classifier import FAMILY as CLASSIFIER
from jaxmed.families.classifier import ClassifierConfig
from jaxmed.families.vae import FAMILY as VAE
from jaxmed.families.vae import INTERPOLATION_STEPS, VaeConfig, interpolation_path, kl_weight_at, reconstruct
from jaxmed.sampling import restore_generator, sample_from_workdir
from jaxmed.training import runner
from jaxmed.training.checkpoint import Checkpoints
from jaxmed.training.metrics_writer import read_metrics

# Smooth blobs, so a few dozen steps visibly learn them.
_grid = np.linspace(-1, 1, 32)
_centers = np.random.default_rng(0).uniform(-0.5, 0.5, (40, 2))
IMAGES = (2 * np.exp(-((_grid[None, :, None] - _centers[:, 0, None, None]) ** 2
                       + (_grid[None, None, :] - _centers[:, 1, None, None]) ** 2) / 0.1) - 1)[..., None]
IMAGES = IMAGES.astype(np.float32)


def vae_definition(config):
    return VAE.definition(config, Task(class_names=(), total_steps=config.steps))


def leaves(state):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(state)]


def test_kl_weight_warms_up_linearly_then_stays():
    definition = vae_definition(VaeConfig.tiny(kl_weight=0.5, kl_warmup_steps=4))
    weights = [float(kl_weight_at(definition, jnp.asarray(step))) for step in range(6)]
    np.testing.assert_allclose(weights, [0.125, 0.25, 0.375, 0.5, 0.5, 0.5])
    assert float(kl_weight_at(vae_definition(VaeConfig.tiny(kl_weight=0.5)), jnp.asarray(0))) == 0.5


def test_steps_lower_the_loss_on_a_fixed_batch():
    config = VaeConfig.tiny(**{"optimizer.lr": 2e-3})
    definition = vae_definition(config)
    state = VAE.init_state(config, definition, jax.random.key(0))
    step = VAE.make_train_step(definition)
    batch = jnp.asarray(IMAGES[:8])
    losses = []
    for _ in range(30):
        state, metrics = step(state, {"image": batch})
        losses.append(float(metrics["loss"]))
        assert float(metrics["loss"]) == pytest.approx(float(metrics["reconstruction"] + metrics["kl"]), rel=1e-5)
    assert int(state.step) == 30
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_interpolation_runs_from_one_reconstruction_to_the_other():
    config = VaeConfig.tiny()
    definition = vae_definition(config)
    state = VAE.init_state(config, definition, jax.random.key(0))
    images = jnp.asarray(IMAGES[:4])
    path = interpolation_path(definition, state, images, pairs=2)
    assert path.shape == (2 * INTERPOLATION_STEPS, *IMAGES.shape[1:])
    rows = path.reshape(2, INTERPOLATION_STEPS, *IMAGES.shape[1:])
    ends = np.asarray(reconstruct(definition.model, state.params, state.stats, images))
    # Row i starts at image i's reconstruction and ends at image 2 + i's; between them it moves.
    np.testing.assert_allclose(rows[:, 0], ends[:2], atol=1e-5)
    np.testing.assert_allclose(rows[:, -1], ends[2:], atol=1e-5)
    middle = rows[:, INTERPOLATION_STEPS // 2]
    assert np.all(np.abs(middle - rows[:, 0]).max(axis=(1, 2, 3)) > 1e-4)
    assert np.all(np.abs(middle - rows[:, -1]).max(axis=(1, 2, 3)) > 1e-4)


@pytest.mark.slow
def test_accumulated_microbatches_make_one_update():
    """K=2 microbatches: one update, a loss that differs from the plain step's only by per-microbatch BatchNorm."""
    plain = VaeConfig.tiny()
    accumulated = VaeConfig.tiny(accumulate_steps=2)
    results = []
    for config in (plain, accumulated):
        definition = vae_definition(config)
        state = VAE.init_state(config, definition, jax.random.key(0))
        state, metrics = VAE.make_train_step(definition)(state, {"image": jnp.asarray(IMAGES[:8])})
        results.append((state, metrics))
    (plain_state, plain_metrics), (accumulated_state, accumulated_metrics) = results
    assert int(accumulated_state.step) == 1
    # BatchNorm normalises each microbatch on its own, so the losses differ, but only by that.
    assert float(accumulated_metrics["loss"]) == pytest.approx(float(plain_metrics["loss"]), rel=0.2)
    assert not np.allclose(float(accumulated_metrics["loss"]), float(plain_metrics["loss"]), rtol=1e-7)


@pytest.mark.slow
def test_outputs_of_a_run(tmp_path):
    runner.run(VAE, VaeConfig.tiny(), tmp_path, IMAGES, progress=False)
    assert json.loads((tmp_path / "config.json").read_text())["model"] == "vae"
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    assert {"loss", "reconstruction", "kl", "kl_weight", "images_per_s"} <= set(rows[0])
    plots = {path.name for path in (tmp_path / "plots").iterdir()}
    assert {"samples_step_000002.png", "samples_step_000004.png", "losses.png", "pixel_distribution.png",
            "reconstructions.png", "interpolation.png"} <= plots
    description = Image.open(tmp_path / "plots" / "reconstructions.png").text["Description"]
    assert description.startswith("top row: real images; bottom row: SYNTHETIC")
    assert Checkpoints(tmp_path / "checkpoints").all_steps() == [2, 4]


@pytest.mark.slow
def test_resume_equals_an_uninterrupted_run(tmp_path):
    runner.run(VAE, VaeConfig.tiny(steps=3), tmp_path / "resumed", IMAGES, progress=False)
    resumed = runner.run(VAE, VaeConfig.tiny(steps=6), tmp_path / "resumed", IMAGES, progress=False).state
    straight = runner.run(VAE, VaeConfig.tiny(steps=6), tmp_path / "straight", IMAGES, progress=False).state
    assert int(resumed.step) == 6
    for got, want in zip(leaves(resumed), leaves(straight)):
        np.testing.assert_array_equal(got, want)


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    runner.run(VAE, VaeConfig.tiny(steps=4), tmp_path, IMAGES, progress=False)
    with pytest.raises(TrainingDiverged, match="non-finite loss at step 5.*last good checkpoint is step 4"):
        runner.run(VAE, VaeConfig.tiny(steps=8), tmp_path, np.full_like(IMAGES, np.nan), progress=False)
    assert Checkpoints(tmp_path / "checkpoints").latest_step() == 4


@pytest.mark.slow
def test_sampling_a_workdir_decodes_the_prior(tmp_path):
    state = runner.run(VAE, VaeConfig.tiny(), tmp_path, IMAGES, progress=False).state
    images, step = sample_from_workdir(tmp_path, 5, seed=3)
    again, _ = sample_from_workdir(tmp_path, 5, seed=3)
    other, _ = sample_from_workdir(tmp_path, 5, seed=4)
    assert step == 4 and images.shape == (5, 32, 32, 1) and np.abs(images).max() <= 1.0
    np.testing.assert_array_equal(images, again)
    assert not np.allclose(images, other)
    run, generator = restore_generator(tmp_path)
    assert isinstance(run.config, VaeConfig) and run.family.name == "vae"
    for got, want in zip(leaves(run.state), leaves(state)):
        np.testing.assert_array_equal(got, want)
    z = jax.random.normal(jax.random.key(3), (5, generator.latent_dim))
    np.testing.assert_allclose(images, np.asarray(generator.generate(run.state, z)), atol=1e-6)


def test_sampling_a_classifier_workdir_is_a_clear_error(tmp_path):
    # A classifier is restorable once trained (its classes come from eval.json), so train one epoch.
    runner.run(CLASSIFIER, ClassifierConfig.tiny(epochs=1), tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="config.json: a 'seed_cnn' run does not generate images; this needs "
                                              "a generative"):
        sample_from_workdir(tmp_path, 2)
