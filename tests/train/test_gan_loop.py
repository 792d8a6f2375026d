"""The training loop: outputs, exact resume, and stopping on a non-finite loss."""

import json

import jax
import numpy as np
import pytest
from PIL import Image

from jaxmed.errors import TrainingDiverged
from jaxmed.families.gan import FAMILY as GAN
from jaxmed.families.gan import GanConfig
from jaxmed.training import runner
from jaxmed.training.checkpoint import Checkpoints
from jaxmed.training.metrics_writer import read_metrics

IMAGES = np.random.default_rng(0).uniform(-1, 1, (40, 32, 32, 1)).astype(np.float32)


def leaves(state):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(state)]


def test_outputs_of_a_run(tmp_path):
    runner.run(GAN, GanConfig.tiny(), tmp_path, IMAGES, progress=False)
    assert json.loads((tmp_path / "config.json").read_text())["image_size"] == 32
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    assert {"d_loss", "g_loss", "d_real", "d_fake", "images_per_s"} <= set(rows[0])
    plots = {path.name for path in (tmp_path / "plots").iterdir()}
    assert {"samples_step_000002.png", "samples_step_000004.png", "losses.png", "pixel_distribution.png"} <= plots
    # Grids of generated images say so, like exported samples.
    assert "SYNTHETIC" in Image.open(tmp_path / "plots" / "samples_step_000004.png").text["Description"]
    assert any((tmp_path / "events").iterdir())
    assert Checkpoints(tmp_path / "checkpoints").all_steps() == [2, 4]


def test_resume_equals_an_uninterrupted_run(tmp_path):
    runner.run(GAN, GanConfig.tiny(steps=3), tmp_path / "resumed", IMAGES, progress=False)  # checkpoints at 2 and 3
    # Simulate a crash after step 3's metrics were logged but before a later checkpoint:
    # the resumed run must drop them and redo the steps from checkpoint 3.
    resumed = runner.run(GAN, GanConfig.tiny(steps=6), tmp_path / "resumed", IMAGES, progress=False).state
    straight = runner.run(GAN, GanConfig.tiny(steps=6), tmp_path / "straight", IMAGES, progress=False).state
    assert int(resumed.step) == 6
    for got, want in zip(leaves(resumed), leaves(straight)):
        np.testing.assert_array_equal(got, want)

    def losses(name):
        return [(row["step"], row["d_loss"], row["g_loss"]) for row in read_metrics(tmp_path / name / "metrics.jsonl")]

    assert losses("resumed") == losses("straight")
    assert [step for step, *_ in losses("resumed")] == [1, 2, 3, 4, 5, 6]


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    good = runner.run(GAN, GanConfig.tiny(steps=4), tmp_path, IMAGES, progress=False).state
    good_leaves = leaves(good)
    poisoned = np.full_like(IMAGES, np.nan)
    with pytest.raises(TrainingDiverged, match="non-finite loss at step 5.*last good checkpoint is step 4"):
        runner.run(GAN, GanConfig.tiny(steps=8), tmp_path, poisoned, progress=False)
    assert Checkpoints(tmp_path / "checkpoints").latest_step() == 4
    # The checkpoint still holds the good state: resuming on clean data continues from it.
    again = runner.run(GAN, GanConfig.tiny(steps=4), tmp_path, IMAGES, progress=False).state
    for got, want in zip(leaves(again), good_leaves):
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_a_checkpoint_saved_mid_run_is_not_changed_by_later_steps(tmp_path):
    """Steps after an asynchronous save donate the state's buffers; the saved step must stay intact."""
    runner.run(GAN, GanConfig.tiny(steps=4), tmp_path / "long", IMAGES, progress=False)  # saves 2, then steps 3-4
    short = runner.run(GAN, GanConfig.tiny(steps=2), tmp_path / "short", IMAGES, progress=False).state
    with Checkpoints(tmp_path / "long" / "checkpoints") as checkpoints:
        restored, data, _ = checkpoints.restore(jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding), short), step=2)
    assert data["position"] == 2
    for got, want in zip(leaves(restored), leaves(short)):
        np.testing.assert_array_equal(got, want)
