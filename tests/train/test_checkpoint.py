"""Orbax checkpoints: a real on-disk round trip that restores every field."""

import jax
import numpy as np
import pytest

from jaxmed.errors import CheckpointError
from jaxmed.train import config as config_lib
from jaxmed.train.checkpoint import Checkpoints, abstract_like
from jaxmed.train.config import GanConfig
from jaxmed.train.gan_steps import make_gan_train_step
from jaxmed.train.gan_state import gan_definition, init_gan_state

CONFIG = GanConfig.tiny()


def trained_state(steps=2):
    definition = gan_definition(CONFIG)
    state = init_gan_state(CONFIG, definition, jax.random.key(CONFIG.seed))
    step = make_gan_train_step(definition)
    for index in range(steps):
        state, _ = step(state, jax.random.uniform(jax.random.key(index), (8, 32, 32, 1), minval=-1, maxval=1))
    return definition, state


def test_round_trip_restores_every_field(tmp_path):
    definition, state = trained_state()
    expected = jax.tree.map(np.asarray, state)
    with Checkpoints(tmp_path / "ckpt", keep=2) as checkpoints:
        checkpoints.save(2, state, data={"position": 2, "note": "x"}, config=config_lib.to_dict(CONFIG))
        checkpoints.wait()
    with Checkpoints(tmp_path / "ckpt", keep=2) as checkpoints:
        abstract = abstract_like(jax.eval_shape(lambda: init_gan_state(CONFIG, definition, jax.random.key(CONFIG.seed))),
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
