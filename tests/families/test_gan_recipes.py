"""The GAN family's small-data options and recipes: config, one jitted step per option set, old state."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmed import config as config_lib
from jaxmed.errors import UsageError
from jaxmed.families.base import Task
from jaxmed.families.gan import FAMILY, SEED_RECIPE, GanConfig, GanState

# Most tests compile a regularised ResNet GAN step.
pytestmark = pytest.mark.slow

BATCH = 4


def tiny(**overrides) -> GanConfig:
    return GanConfig.tiny(batch_size=BATCH, resnet_features=4, **overrides)


def two_steps(config: GanConfig, num_classes: int = 0, **state_changes):
    """(state before, state after, metrics of both steps) of two jitted steps on random images."""
    definition = FAMILY.definition(config, Task(tuple(f"class{i}" for i in range(num_classes)), config.steps))
    state = FAMILY.init_state(config, definition, jax.random.key(0)).replace(**state_changes)
    before = jax.tree.map(np.asarray, state)
    step = FAMILY.make_train_step(definition)
    rng = np.random.default_rng(0)
    batch = {"image": rng.uniform(-1, 1, (BATCH, 32, 32, 1)).astype(np.float32)}
    if num_classes:
        batch["label"] = np.arange(BATCH, dtype=np.int32) % num_classes
    metrics = []
    for _ in range(2):
        state, step_metrics = step(state, batch)
        metrics.append({key: float(value) for key, value in step_metrics.items()})
    return before, state, metrics


def test_the_seed_recipe_is_the_previous_default_config():
    defaults = GanConfig()
    # The seed paper's DCGAN: the values before recipes existed.
    assert (defaults.model, defaults.loss, defaults.ema_decay, defaults.optimizer.lr, defaults.optimizer.b1) == (
        "dcgan", "non_saturating", 0.999, 2e-4, 0.5)
    assert (defaults.gan_augment, defaults.r1_gamma, defaults.lecam_weight, defaults.discriminator_lr_scale,
            defaults.conditional) == ("none", 0.0, 0.0, 1.0, False)
    assert config_lib.apply_overrides(defaults, {"recipe": "seed"}) == defaults
    assert {key: getattr(defaults, key) for key in SEED_RECIPE} == SEED_RECIPE
    # Switching to small_data and back restores every default.
    small = config_lib.apply_overrides(defaults, {"recipe": "small_data"})
    assert config_lib.apply_overrides(small, {"recipe": "seed"}) == defaults


def test_keys_set_explicitly_win_over_the_recipe_and_survive_save_and_resume(tmp_path):
    config = config_lib.apply_overrides(GanConfig(), {"recipe": "small_data", "loss": "non_saturating"})
    assert (config.model, config.gan_augment, config.loss, config.discriminator_lr_scale) == (
        "resnet", "diffaugment", "non_saturating", 2.0)
    config_lib.save(config, tmp_path / "config.json")
    saved = config_lib.load(GanConfig, tmp_path / "config.json")
    assert saved == config
    # Resuming with the same recipe on the command line does not re-apply it over the saved keys.
    assert config_lib.apply_overrides(saved, {"recipe": "small_data"}) == config
    with pytest.raises(UsageError, match="recipe must be one of seed, small_data, got 'large'"):
        config_lib.apply_overrides(GanConfig(), {"recipe": "large"})


@pytest.mark.parametrize(("overrides", "message"), [
    ({"conditional": True, "class_name": "tumor", "model": "resnet"}, "conditional=true .* class_name='tumor'"),
    ({"conditional": True}, "conditional=true needs model=resnet"),
    ({"gan_augment": "mixup"}, "gan_augment must be one of none, diffaugment, ada"),
    ({"r1_every": 0}, "r1_every must be at least 1"),
    ({"ada_target": 1.5}, "ada_target must be in"),
    ({"discriminator_lr_scale": 0}, "discriminator_lr_scale must be positive"),
])
def test_invalid_options_are_one_line_errors(overrides, message):
    with pytest.raises(UsageError, match=message):
        config_lib.apply_overrides(GanConfig(), overrides)


def test_the_seed_state_keeps_the_previous_structure():
    """Old workdirs resume: without the options the state has exactly the seed DCGAN's leaves."""
    config = tiny()
    definition = FAMILY.definition(config, Task((), 4))
    state = jax.eval_shape(lambda key: FAMILY.init_state(config, definition, key), jax.random.key(0))
    fields = [path[0].name for path, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
    assert set(fields) == {"step", "key", "generator_params", "generator_stats", "discriminator_params",
                           "discriminator_stats", "ema_params", "ema_stats", "generator_opt", "discriminator_opt"}
    # DiffAugment and R1 keep nothing in the state either.
    config = tiny(gan_augment="diffaugment", r1_gamma=1.0)
    definition = FAMILY.definition(config, Task((), 4))
    state = jax.eval_shape(lambda key: FAMILY.init_state(config, definition, key), jax.random.key(0))
    assert type(state) is GanState


def test_diffaugment_and_lecam_train_and_move_the_anchors():
    before, after, metrics = two_steps(tiny(gan_augment="diffaugment", lecam_weight=0.3, discriminator_lr_scale=2.0))
    assert all(np.isfinite(list(row.values())).all() for row in metrics)
    assert all(row["lecam"] >= 0 for row in metrics)
    assert float(after.lecam_ema_real) != 0.0 and float(after.lecam_ema_fake) != 0.0
    assert float(after.augment_p) == 0.0  # no ADA: p is kept but never moves


def test_ada_moves_p_and_lazy_r1_runs_when_due():
    before, after, metrics = two_steps(tiny(gan_augment="ada", ada_images_to_full=100, r1_gamma=1.0, r1_every=2),
                                       augment_p=jnp.float32(0.5))
    assert all(np.isfinite(list(row.values())).all() for row in metrics)
    # Each step moves p by batch / images_to_full = 0.04, up or down.
    assert abs(float(after.augment_p) - 0.5) in (pytest.approx(0.0), pytest.approx(0.08))
    assert abs(metrics[0]["augment_p"] - 0.5) == pytest.approx(0.04)
    assert metrics[0]["r1"] > 0  # step 0 is due
    assert metrics[1]["r1"] == 0.0  # step 1 is not


def test_the_conditional_resnet_gan_with_every_option_trains():
    config = tiny(recipe="small_data", conditional=True, gan_augment="ada", r1_gamma=1.0, r1_every=1)
    before, after, metrics = two_steps(config, num_classes=3, augment_p=jnp.float32(0.5))
    assert all(np.isfinite(list(row.values())).all() for row in metrics)
    assert {"d_loss", "g_loss", "r1", "lecam", "augment_p"} <= set(metrics[0])
    assert all(row["r1"] > 0 for row in metrics)
    changed = [not np.array_equal(old, new) for old, new in zip(jax.tree.leaves(before.generator_params),
                                                                jax.tree.leaves(after.generator_params))]
    assert any(changed)


def test_the_recipe_is_applied_by_tiny_like_any_override():
    config = tiny(recipe="small_data")
    assert dataclasses.asdict(config)["loss"] == "hinge" and config.model == "resnet"
