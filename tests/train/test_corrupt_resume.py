"""A damaged latest checkpoint: training reports it, resumes from the previous one, and ends exactly right."""

import os
import re
import shutil

import jax
import numpy as np
import pytest

from jaxmed.cli import main
from jaxmed.families.gan import FAMILY as GAN
from jaxmed.families.gan import GanConfig
from jaxmed.training import runner
from jaxmed.training.checkpoint import Checkpoints
from jaxmed.training.metrics_writer import read_metrics

IMAGES = np.random.default_rng(0).uniform(-1, 1, (40, 32, 32, 1)).astype(np.float32)


def leaves(state):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(state)]


def losses(workdir):
    return [(row["step"], row["d_loss"], row["g_loss"]) for row in read_metrics(workdir / "metrics.jsonl")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted 6-step run, and a 4-step run with checkpoints at steps 2 and 4."""
    root = tmp_path_factory.mktemp("runs")
    straight = runner.run(GAN, GanConfig.tiny(steps=6), root / "straight", IMAGES, progress=False).state
    runner.run(GAN, GanConfig.tiny(steps=4), root / "interrupted", IMAGES, progress=False)
    return root, leaves(straight)


def largest_state_file(step_dir):
    return max((path for path in (step_dir / "state").rglob("*") if path.is_file()), key=lambda p: p.stat().st_size)


def truncate_data_file(step_dir):
    path = largest_state_file(step_dir)
    os.truncate(path, path.stat().st_size // 2)


def flip_one_byte(step_dir):
    path = largest_state_file(step_dir)
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))


def delete_state_item(step_dir):
    shutil.rmtree(step_dir / "state")


def garbage_in_data_json(step_dir):
    (step_dir / "data" / "metadata").write_text('{"position": 4')


@pytest.mark.parametrize("damage", [truncate_data_file, pytest.param(flip_one_byte, marks=pytest.mark.slow), pytest.param(delete_state_item, marks=pytest.mark.slow),
                                    pytest.param(garbage_in_data_json, marks=pytest.mark.slow)],
                         ids=lambda damage: damage.__name__)
def test_training_resumes_from_the_previous_checkpoint(runs, tmp_path, capsys, damage):
    root, straight = runs
    workdir = tmp_path / "run"
    shutil.copytree(root / "interrupted", workdir)
    damage(workdir / "checkpoints" / "4")
    capsys.readouterr()

    resumed = runner.run(GAN, GanConfig.tiny(steps=6), workdir, IMAGES, progress=False).state

    err = capsys.readouterr().err
    reports = [line for line in err.splitlines() if "cannot restore" in line]
    assert len(reports) == 1 and "Traceback" not in err, err
    moved = [path.name for path in (workdir / "checkpoints").iterdir() if ".corrupt-" in path.name]
    assert len(moved) == 1 and moved[0].startswith("4.corrupt-"), moved
    assert re.fullmatch(rf"jaxmed: {re.escape(str(workdir / 'checkpoints' / '4'))}: cannot restore checkpoint "
                        rf"\(.+\); moved it to {re.escape(moved[0])}; using step 2 instead", reports[0]), reports[0]
    # It continued from step 2, saved a new step 4 and 6, and ended exactly where an uninterrupted run ends.
    assert Checkpoints(workdir / "checkpoints").all_steps() == [4, 6]
    assert int(resumed.step) == 6
    for got, want in zip(leaves(resumed), straight, strict=True):
        np.testing.assert_array_equal(got, want)
    assert losses(workdir) == losses(root / "straight")


def test_when_no_checkpoint_restores_the_cli_exits_1_with_one_line(runs, tmp_path, capsys):
    root, _ = runs
    workdir = tmp_path / "run"
    shutil.copytree(root / "interrupted", workdir)
    for step in (2, 4):
        garbage_in_data_json(workdir / "checkpoints" / str(step))
    capsys.readouterr()

    status = main(["train", "gan", "--workdir", str(workdir), "--steps", "6", "--no-progress"])

    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("jaxmed: error:")]
    assert len(errors) == 1 and re.fullmatch(
        rf"jaxmed: error: {re.escape(str(workdir / 'checkpoints'))}: no checkpoint can be restored "
        r"\(step 4: data/metadata: .+; step 2: data/metadata: .+\)", errors[0]), err
    assert sorted(path.name for path in (workdir / "checkpoints").iterdir()) == ["2", "4"]  # nothing moved
