"""Orbax checkpoints: real on-disk round trips, damaged checkpoints, unfinished saves."""

import os
import re
import shutil

import jax
import numpy as np
import pytest

from jaxmed.errors import CheckpointError
from jaxmed import config as config_lib
from jaxmed.families.base import Task
from jaxmed.families.gan import FAMILY as GAN
from jaxmed.families.gan import GanConfig
from jaxmed.training.checkpoint import Checkpoints, abstract_like, state_checksums

CONFIG = GanConfig.tiny()


def trained_state(steps=2):
    definition = GAN.definition(CONFIG, Task(class_names=(), total_steps=CONFIG.steps))
    state = GAN.init_state(CONFIG, definition, jax.random.key(CONFIG.seed))
    step = GAN.make_train_step(definition)
    for index in range(steps):
        images = jax.random.uniform(jax.random.key(index), (8, 32, 32, 1), minval=-1, maxval=1)
        state, _ = step(state, {"image": images})
    return definition, state


def test_round_trip_restores_every_field(tmp_path):
    definition, state = trained_state()
    expected = jax.tree.map(np.asarray, state)
    with Checkpoints(tmp_path / "ckpt", keep=2) as checkpoints:
        checkpoints.save(2, state, data={"position": 2, "note": "x"}, config=config_lib.to_dict(CONFIG))
        checkpoints.wait()
    with Checkpoints(tmp_path / "ckpt", keep=2) as checkpoints:
        abstract = abstract_like(jax.eval_shape(lambda: GAN.init_state(CONFIG, definition,
                                                                       jax.random.key(CONFIG.seed))),
                                 jax.sharding.SingleDeviceSharding(jax.devices()[0]))
        restored, data, config = checkpoints.restore(abstract)
    assert data == {"position": 2, "note": "x"} and config_lib.from_dict(GanConfig, config) == CONFIG
    assert jax.tree.structure(restored) == jax.tree.structure(expected)
    for path, want in jax.tree_util.tree_leaves_with_path(expected):
        got = dict(jax.tree_util.tree_leaves_with_path(restored))[path]
        assert got.dtype == want.dtype, path
        np.testing.assert_array_equal(got, want, err_msg=str(path))
    # every group of the state is really there (not just a shared structure)
    for field in ("generator_params", "generator_stats", "discriminator_params", "discriminator_stats",
                  "ema_params", "ema_stats", "generator_opt", "discriminator_opt", "step", "key"):
        assert jax.tree.leaves(getattr(restored, field)), field


def test_keeps_only_the_latest(tmp_path):
    _, state = trained_state(steps=1)
    with Checkpoints(tmp_path / "ckpt", keep=2) as checkpoints:
        for step in (1, 2, 3):
            checkpoints.save(step, state, data={"position": step}, config={})
        checkpoints.wait()
        assert checkpoints.all_steps() == [2, 3]


def test_restore_without_checkpoint_is_a_clear_error(tmp_path):
    with Checkpoints(tmp_path / "empty") as checkpoints, pytest.raises(CheckpointError, match="no checkpoint"):
        checkpoints.restore({})


# --- damaged checkpoints: detection, fallback, moving aside --------------------------------------------------------

SMALL = {"weights": np.arange(12, dtype=np.float32).reshape(3, 4), "step": np.int32(7),
         "half": np.linspace(0, 1, 5).astype(jax.numpy.bfloat16)}


def small_state(offset=0.0):
    state = {key: jax.numpy.asarray(value) for key, value in SMALL.items()}
    state["weights"] = state["weights"] + offset
    state["key"] = jax.random.key(3)
    return state


def small_abstract():
    return abstract_like(jax.eval_shape(small_state), jax.sharding.SingleDeviceSharding(jax.devices()[0]))


def save_steps(directory, states):
    with Checkpoints(directory, keep=5) as checkpoints:
        for step, state in states.items():
            checkpoints.save(step, state, data={"position": step}, config={"name": "small"})
        checkpoints.wait()


def swap_state_item(directory, step, other_directory, other_step):
    """Replaces a step's `state` item by a valid one of different values: only the checksums can tell."""
    target = directory / str(step) / "state"
    shutil.rmtree(target)
    shutil.copytree(other_directory / str(other_step) / "state", target)


def test_checksums_cover_every_bit_of_every_leaf():
    base = state_checksums(small_state())
    assert set(base) == {"['half']", "['key']", "['step']", "['weights']"}
    assert state_checksums(small_state()) == base
    changed = small_state()
    changed["weights"] = changed["weights"].at[2, 3].set(np.nextafter(np.float32(11), np.float32(12)))  # one ulp
    assert {leaf for leaf, value in state_checksums(changed).items() if value != base[leaf]} == {"['weights']"}
    other_key = small_state()
    other_key["key"] = jax.random.key(4)
    assert {leaf for leaf, value in state_checksums(other_key).items() if value != base[leaf]} == {"['key']"}


def test_a_damaged_latest_step_is_reported_moved_aside_and_the_previous_one_used(tmp_path, capsys):
    save_steps(tmp_path / "ckpt", {2: small_state(0.0), 4: small_state(4.0)})
    save_steps(tmp_path / "other", {4: small_state(99.0)})
    swap_state_item(tmp_path / "ckpt", 4, tmp_path / "other", 4)
    with Checkpoints(tmp_path / "ckpt", keep=5) as checkpoints:
        assert checkpoints.latest_step() == 4
        restored, data, config = checkpoints.restore(small_abstract())
        assert data == {"position": 2} and config == {"name": "small"}
        np.testing.assert_array_equal(restored["weights"], SMALL["weights"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        moved = [path.name for path in (tmp_path / "ckpt").iterdir() if ".corrupt-" in path.name]
        assert len(moved) == 1 and moved[0].startswith("4.corrupt-")
        assert re.fullmatch(rf"jaxmed: {re.escape(str(tmp_path / 'ckpt' / '4'))}: cannot restore checkpoint "
                            rf"\(state leaf \['weights'\] does not match its saved checksum\); moved it to "
                            rf"{re.escape(moved[0])}; using step 2 instead", lines[0]), lines[0]
        assert checkpoints.all_steps() == [2] and checkpoints.latest_step() == 2
        # The step number is free again: a new save of step 4 works and becomes the latest.
        checkpoints.save(4, small_state(5.0), data={"position": 4}, config={"name": "small"})
        checkpoints.wait()
        restored, data, _ = checkpoints.restore(small_abstract())
    assert data == {"position": 4}
    np.testing.assert_array_equal(restored["weights"], SMALL["weights"] + 5.0)
    assert (tmp_path / "ckpt" / moved[0] / "state").is_dir()  # kept for inspection, not deleted
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("damage", ["truncate", "delete", "garbage"])
def test_damaged_files_are_detected(tmp_path, capsys, damage):
    save_steps(tmp_path / "ckpt", {2: small_state(0.0), 4: small_state(4.0)})
    step = tmp_path / "ckpt" / "4"
    if damage == "truncate":  # the largest array data file, cut to half
        data_file = max((path for path in (step / "state").rglob("*") if path.is_file()),
                        key=lambda path: path.stat().st_size)
        os.truncate(data_file, data_file.stat().st_size // 2)
        expected = "state/"
    elif damage == "delete":
        shutil.rmtree(step / "state")
        expected = 'Item "state" was not found'
    else:
        (step / "data" / "metadata").write_text("{garbage")
        expected = "data/metadata: Expecting property name"
    with Checkpoints(tmp_path / "ckpt") as checkpoints:
        _, data, _ = checkpoints.restore(small_abstract())
    assert data == {"position": 2}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{step}: cannot restore checkpoint (" in err and expected in err, err
    assert "using step 2 instead" in err and "Traceback" not in err


def test_when_no_step_restores_nothing_is_moved_and_the_error_names_each_step(tmp_path, capsys):
    save_steps(tmp_path / "ckpt", {2: small_state(0.0), 4: small_state(4.0)})
    for step in (2, 4):
        (tmp_path / "ckpt" / str(step) / "data" / "metadata").write_text("not json")
    with Checkpoints(tmp_path / "ckpt") as checkpoints:
        with pytest.raises(CheckpointError, match=r"no checkpoint can be restored \(step 4: data/metadata: .*; "
                                                  r"step 2: data/metadata: ") as raised:
            checkpoints.restore(small_abstract())
    assert "\n" not in str(raised.value)
    assert sorted(path.name for path in (tmp_path / "ckpt").iterdir()) == ["2", "4"]
    assert capsys.readouterr().err == ""


def test_an_explicit_step_does_not_fall_back(tmp_path):
    save_steps(tmp_path / "ckpt", {2: small_state(0.0), 4: small_state(4.0)})
    (tmp_path / "ckpt" / "4" / "config" / "metadata").write_text("")
    with Checkpoints(tmp_path / "ckpt") as checkpoints, pytest.raises(CheckpointError, match="4: cannot restore"):
        checkpoints.restore(small_abstract(), step=4)
    assert (tmp_path / "ckpt" / "4").is_dir()


def test_a_wrong_target_is_an_error_not_corruption(tmp_path):
    save_steps(tmp_path / "ckpt", {2: small_state(0.0), 4: small_state(4.0)})
    abstract = small_abstract()
    wrong = dict(abstract, weights=jax.ShapeDtypeStruct((5,), np.float32, sharding=abstract["step"].sharding))
    with Checkpoints(tmp_path / "ckpt") as checkpoints, pytest.raises(CheckpointError, match="no checkpoint can be"):
        checkpoints.restore(wrong)
    assert sorted(path.name for path in (tmp_path / "ckpt").iterdir()) == ["2", "4"]


def test_an_unfinished_save_is_ignored_kept_by_readers_and_removed_by_the_next_save(tmp_path):
    save_steps(tmp_path / "ckpt", {2: small_state(0.0)})
    # What a save killed before its commit leaves: a step directory under Orbax's temporary name.
    unfinished = tmp_path / "ckpt" / "4.orbax-checkpoint-tmp"
    shutil.copytree(tmp_path / "ckpt" / "2", unfinished)
    with Checkpoints(tmp_path / "ckpt") as checkpoints:
        assert checkpoints.all_steps() == [2]
        _, data, _ = checkpoints.restore(small_abstract())
        assert data == {"position": 2}
    assert unfinished.is_dir()  # opening a workdir to read must not touch a save that may be in progress
    with Checkpoints(tmp_path / "ckpt") as checkpoints:
        checkpoints.save(4, small_state(4.0), data={"position": 4}, config={})
        checkpoints.wait()
        assert checkpoints.all_steps() == [2, 4]
        _, data, _ = checkpoints.restore(small_abstract())
    assert data == {"position": 4}
    assert sorted(path.name for path in (tmp_path / "ckpt").iterdir()) == ["2", "4"]
