"""The diffusion family: its step learns, resuming equals not stopping, sampling is a function of z and the settings."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmed import config as config_lib
from jaxmed import families
from jaxmed.bench import layers
from jaxmed.bench import train_step as bench_train_step
from jaxmed.cli import main
from jaxmed.diffusion import cosine_schedule, diffusion_loss
from jaxmed.errors import UsageError
from jaxmed.families.base import Task
from jaxmed.families.diffusion import DiffusionConfig, build_unet
from jaxmed.sampling import sample_from_workdir
from jaxmed.training.workdir import Workdir

# Each test trains or samples a U-Net: tens of seconds of compilation on a CPU.
pytestmark = pytest.mark.slow

IMAGES = np.random.default_rng(0).uniform(-1, 1, (40, 32, 32, 1)).astype(np.float32)
FAMILY = families.get("diffusion")


def tiny(**overrides) -> DiffusionConfig:
    """32 px, U-Net of base width 8, a 50-step schedule, 2 sampling steps, a rate that moves in a few steps."""
    return DiffusionConfig.tiny(**{"unet_width": 8, "timesteps": 50, "sampling.steps": 2,
                                   "optimizer.schedule": "constant", "optimizer.lr": 1e-3, **overrides})


def leaves(state):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(state)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-step run straight through, and one stopped at step 2 and resumed to 4, through the runner."""
    root = tmp_path_factory.mktemp("diffusion")
    straight = FAMILY.train(tiny(steps=4), root / "straight", IMAGES, progress=False)
    FAMILY.train(tiny(steps=2), root / "resumed", IMAGES, progress=False)
    resumed = FAMILY.train(tiny(steps=4), root / "resumed", IMAGES, progress=False)
    return root, straight, resumed


def test_train_step_lowers_the_loss_on_a_fixed_batch():
    config = tiny()
    definition = FAMILY.definition(config, Task(class_names=(), total_steps=20))
    state = jax.jit(lambda key: FAMILY.init_state(config, definition, key))(jax.random.key(0))
    step = FAMILY.make_train_step(definition)
    # One smooth image repeated: learnable in a few steps (uniform noise images are not).
    rows, columns = np.mgrid[0:32, 0:32] / 31.0
    smooth = (0.8 * np.sin(3 * columns + 2 * rows)).astype(np.float32)
    batch = {"image": jnp.broadcast_to(jnp.asarray(smooth)[None, :, :, None], (8, 32, 32, 1))}
    schedule = cosine_schedule(config.timesteps)

    @jax.jit
    def fixed_loss(params):  # the same noise levels and noise every time
        return diffusion_loss(nnx.merge(definition.model, params), schedule, batch["image"], jax.random.key(7))[0]

    before = float(fixed_loss(state.params))
    for _ in range(8):
        state, metrics = step(state, batch)
    assert np.isfinite(float(metrics["loss"])) and float(metrics["mse"]) > 0
    assert float(fixed_loss(state.params)) < 0.9 * before
    assert int(state.step) == 8


def test_resumed_run_equals_an_uninterrupted_one(trained):
    root, straight, resumed = trained
    assert straight.step == resumed.step == 4
    for got, want in zip(leaves(resumed.state), leaves(straight.state)):
        np.testing.assert_array_equal(got, want)
    # The EMA moved off the live parameters (and off the initial ones, through the warm-up).
    assert any(not np.array_equal(ema, live) for ema, live in zip(leaves(straight.state.ema_params),
                                                                  leaves(straight.state.params)))
    assert {"loss", "mse"} <= set(straight.metrics)
    assert (root / "straight" / "plots" / "samples_step_000004.png").is_file()


def test_sampling_is_fixed_by_the_seed_and_the_settings(trained):
    root, _, _ = trained
    workdir = root / "straight"
    first, step = sample_from_workdir(workdir, 3, seed=1)
    again, _ = sample_from_workdir(workdir, 3, seed=1)
    other, _ = sample_from_workdir(workdir, 3, seed=2)
    assert step == 4 and first.shape == (3, 32, 32, 1) and np.abs(first).max() <= 1.0
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    more_steps, _ = sample_from_workdir(workdir, 3, seed=1, settings={"sampling.steps": 5})
    assert not np.allclose(first, more_steps)
    stochastic = {"sampling.sampler": "ddim", "sampling.eta": 1.0}
    ddim_eta, _ = sample_from_workdir(workdir, 3, seed=1, settings=stochastic)
    np.testing.assert_array_equal(ddim_eta, sample_from_workdir(workdir, 3, seed=1, settings=stochastic)[0])
    deterministic, _ = sample_from_workdir(workdir, 3, seed=1, settings={"sampling.sampler": "ddim"})
    assert not np.allclose(ddim_eta, deterministic)
    ddpm, _ = sample_from_workdir(workdir, 3, seed=1, settings={"sampling.sampler": "ddpm"})
    np.testing.assert_array_equal(ddpm, sample_from_workdir(workdir, 3, seed=1,
                                                            settings={"sampling.sampler": "ddpm"})[0])
    with pytest.raises(UsageError, match="sampling.steps=80 exceeds timesteps=50"):
        sample_from_workdir(workdir, 3, settings={"sampling.steps": 80})


def test_sample_command_overrides_and_refuses_settings_a_run_lacks(trained, tmp_path, capsys):
    root, _, _ = trained
    base = ["sample", "--workdir", str(root / "straight"), "--n", "2", "--format", "npz", "--seed", "3"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--out", str(tmp_path / "b"), "--sampling-steps", "4", "--sampler", "ddim"]) == 0
    with np.load(tmp_path / "a" / "samples.npz") as a, np.load(tmp_path / "b" / "samples.npz") as b:
        assert "SYNTHETIC" in str(a["synthetic"])
        assert not np.allclose(a["images"], b["images"])
    capsys.readouterr()

    gan = tmp_path / "gan"
    gan.mkdir()
    config_lib.save(families.get("gan").config_type.tiny(), gan / "config.json")
    status = main(["sample", "--workdir", str(gan), "--n", "2", "--out", str(tmp_path / "c"),
                   "--sampling-steps", "5"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert "a 'dcgan' run has no 'sampling.steps' setting" in err


def test_guidance_zero_is_the_unconditional_model():
    config = tiny(conditional=True)
    definition = FAMILY.definition(config, Task(class_names=("a", "b"), total_steps=4))
    state = jax.jit(lambda key: FAMILY.init_state(config, definition, key))(jax.random.key(0))
    # Random weights everywhere (the zero-initialised output layers would make every label look alike).
    leaves_, treedef = jax.tree.flatten(state.ema_params)
    keys = jax.random.split(jax.random.key(1), len(leaves_))
    noisy = [leaf + 0.2 * jax.random.normal(key, leaf.shape) for leaf, key in zip(leaves_, keys)]
    state = state.replace(ema_params=jax.tree.unflatten(treedef, noisy))

    def generator(guidance):
        settings = dataclasses.replace(config.sampling, guidance=guidance)
        return FAMILY.generator(dataclasses.replace(config, sampling=settings), definition)

    unguided = generator(0.0)
    assert unguided.class_names == ("a", "b") and unguided.latent_dim == 32 * 32
    z = jax.random.normal(jax.random.key(2), (2, unguided.latent_dim))
    labels = np.array([0, 1])
    unconditional = unguided.generate(state, z)
    np.testing.assert_allclose(unguided.generate(state, z, labels), unconditional, atol=1e-5)
    assert not np.allclose(generator(1.0).generate(state, z, labels), unconditional, atol=1e-3)


def test_config_errors_name_the_key():
    with pytest.raises(UsageError, match="sampling.sampler must be one of ddpm, ddim, dpm_solver_2m"):
        tiny(**{"sampling.sampler": "euler"})
    with pytest.raises(UsageError, match=r"sampling.eta must be in \[0, 1\], got 1.5"):
        tiny(**{"sampling.eta": 1.5})
    with pytest.raises(UsageError, match="unet_width must be 0"):
        tiny(unet_width=12)
    with pytest.raises(UsageError, match="conditional=true trains on every class"):
        tiny(conditional=True, class_name="tumor")
    with pytest.raises(UsageError, match="prediction must be one of"):
        tiny(prediction="x0")


def test_bench_train_step_runs_the_unet():
    result = bench_train_step.benchmark_train_step("unet-tiny", 8, steps=1, warmup=0, config=tiny())
    assert result["parameters"]["unet"] == result["parameters"]["total"] > 0
    assert set(result["final_metrics"]) == {"loss", "mse"}
    assert np.isfinite(result["images_per_s"])
    assert bench_train_step.benchmark_config("unet64", 4).image_size == 64


def test_conv_pool_lists_every_unet_convolution_once():
    found = layers.model_layers("unet", 32)
    unet = nnx.eval_shape(lambda: build_unet(DiffusionConfig(image_size=32, conv_backend="xla"), None,
                                             jax.random.key(0)))
    convolutions = [module for _, module in nnx.iter_modules(unet) if isinstance(module, nnx.Conv)]
    names = [name for layer in found for name in layer.names]
    assert len(names) == len(set(names)) == len(convolutions)
    assert all(name.startswith("unet/") for name in names)


def test_classes_of_a_conditional_run_are_read_back(tmp_path):
    (tmp_path / "classes.json").write_text(json.dumps({"class_names": ["no_tumor", "tumor"]}))
    task = FAMILY.restore_task(tiny(conditional=True), Workdir(tmp_path))
    assert task.class_names == ("no_tumor", "tumor")
    assert FAMILY.restore_task(tiny(), Workdir(tmp_path)).class_names == ()
