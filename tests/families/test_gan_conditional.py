"""The conditional GAN end to end (grids per class, `sample --class`), old checkpoints, small_data resume."""

import json

import jax
import numpy as np
import pytest
from flax import struct

from jaxmed import config as config_lib
from jaxmed.cli import main
from jaxmed.data.dataset import Dataset
from jaxmed.errors import CheckpointError, UsageError
from jaxmed.families.base import Task
from jaxmed.families.gan import FAMILY, GanConfig
from jaxmed.sampling import restore_generator, sample_from_workdir
from jaxmed.training.checkpoint import Checkpoints
from jaxmed.training.metrics_writer import read_metrics

# Each test trains a ResNet GAN: tens of seconds on a CPU.
pytestmark = pytest.mark.slow

CLASSES = ("healthy", "tumor")
RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(-1, 1, (24, 32, 32, 1)).astype(np.float32)
LABELS = (np.arange(24) % 2).astype(np.int32)


def tiny(**overrides) -> GanConfig:
    return GanConfig.tiny(batch_size=4, resnet_features=4, **overrides)


@pytest.fixture(scope="module")
def conditional_workdir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("conditional")
    config = tiny(recipe="small_data", conditional=True, steps=2)
    FAMILY.train(config, workdir, Dataset(IMAGES, LABELS, CLASSES, {}), progress=False)
    return workdir


@struct.dataclass
class SeedGanState:
    """The GAN state as it was before the small-data options (what old checkpoints hold)."""

    step: jax.Array
    key: jax.Array
    generator_params: dict
    generator_stats: dict
    discriminator_params: dict
    discriminator_stats: dict
    ema_params: dict
    ema_stats: dict
    generator_opt: tuple
    discriminator_opt: tuple


@pytest.fixture(scope="module")
def old_workdir(tmp_path_factory):
    """A workdir whose checkpoint was written with the previous state class (no optional fields)."""
    workdir = tmp_path_factory.mktemp("old")
    config = tiny()
    definition = FAMILY.definition(config, Task((), config.steps))
    state = FAMILY.init_state(config, definition, jax.random.key(0)).replace(step=np.int32(2))
    old = SeedGanState(**{name: getattr(state, name) for name in SeedGanState.__dataclass_fields__})
    with Checkpoints(workdir / "checkpoints") as checkpoints:
        checkpoints.save(2, old, data={"position": 2}, config=config_lib.to_dict(config))
    config_lib.save(config, workdir / "config.json")
    return workdir


def test_a_conditional_run_writes_a_grid_per_class_and_its_classes(conditional_workdir):
    plots = {path.name for path in (conditional_workdir / "plots").iterdir()}
    assert {"samples_step_000002_healthy.png", "samples_step_000002_tumor.png"} <= plots
    assert json.loads((conditional_workdir / "classes.json").read_text()) == {"class_names": list(CLASSES)}


def test_the_label_changes_the_image_for_the_same_noise(conditional_workdir):
    run, generator = restore_generator(conditional_workdir)
    assert generator.class_names == CLASSES
    z = jax.random.normal(jax.random.key(0), (3, generator.latent_dim))
    healthy = np.asarray(generator.generate(run.state, z, np.zeros(3, np.int32)))
    tumor = np.asarray(generator.generate(run.state, z, np.ones(3, np.int32)))
    assert np.isfinite(healthy).all() and healthy.shape == (3, 32, 32, 1)
    assert np.abs(healthy - tumor).max() > 1e-6
    images, step = sample_from_workdir(conditional_workdir, 3, class_name="tumor")
    assert step == 2
    np.testing.assert_allclose(images, tumor, atol=1e-6)


def test_sample_class_on_the_command_line(conditional_workdir, tmp_path, capsys):
    assert main(["sample", "--workdir", str(conditional_workdir), "--n", "2", "--out", str(tmp_path / "s"),
                 "--class", "healthy"]) == 0
    assert len(list((tmp_path / "s").glob("*.png"))) == 2
    capsys.readouterr()
    assert main(["sample", "--workdir", str(conditional_workdir), "--n", "2", "--out", str(tmp_path / "t"),
                 "--class", "edema"]) == 1
    err = capsys.readouterr().err
    # The error is one line (after the notice that the run has no best checkpoint).
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].endswith("unknown class 'edema'; the model's classes: healthy, tumor")


def test_an_old_checkpoint_restores_and_has_no_classes(old_workdir, tmp_path, capsys):
    images, step = sample_from_workdir(old_workdir, 2)
    assert step == 2 and images.shape == (2, 32, 32, 1)
    with pytest.raises(CheckpointError, match="unconditional model has no classes"):
        sample_from_workdir(old_workdir, 2, class_name="tumor")
    assert main(["sample", "--workdir", str(old_workdir), "--n", "2", "--out", str(tmp_path / "s"),
                 "--class", "tumor"]) == 1
    assert "unconditional" in capsys.readouterr().err


def test_transitional_conditioning_phases_the_class_in(tmp_path):
    config = tiny(recipe="small_data", conditional=True, steps=4, conditioning_start=1, conditioning_ramp=2)
    FAMILY.train(config, tmp_path, Dataset(IMAGES, LABELS, CLASSES, {}), progress=False)
    rows = [row for row in read_metrics(tmp_path / "metrics.jsonl") if "conditioning" in row]
    # The weight of step t's update: 0 up to the start, then (t - 1) / 2, capped at 1.
    assert [(row["step"], row["conditioning"]) for row in rows] == [(1, 0.0), (2, 0.0), (3, 0.5), (4, 1.0)]
    with pytest.raises(UsageError, match="need conditional=true"):
        tiny(conditioning_ramp=10)


def test_a_conditional_run_needs_labelled_data(tmp_path):
    with pytest.raises(UsageError, match="needs labelled images"):
        FAMILY.train(tiny(recipe="small_data", conditional=True), tmp_path, IMAGES, progress=False)


def test_small_data_resume_equals_an_uninterrupted_run(tmp_path):
    def config(steps):
        return tiny(recipe="small_data", gan_augment="ada", r1_gamma=1.0, r1_every=2, steps=steps)

    FAMILY.train(config(2), tmp_path / "resumed", IMAGES, progress=False)
    resumed = FAMILY.train(config(4), tmp_path / "resumed", IMAGES, progress=False)
    straight = FAMILY.train(config(4), tmp_path / "straight", IMAGES, progress=False)
    assert resumed.step == straight.step == 4
    for got, want in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(straight.state), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
