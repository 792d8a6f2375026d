"""Data parallelism: 8 forced CPU devices compute what 1 device computes, batch statistics included.

GAN, VAE and classifier steps are each compared.

The multi-device runs happen in a subprocess, because this process initialised JAX with
one CPU device and the device count cannot change afterwards.

Tolerance: sharding changes the order of float32 additions (per-device partial sums,
then an all-reduce), so losses agree to about 1e-6 relative. Adam's update
lr * m / (sqrt(v) + eps) amplifies such rounding for weights whose gradient is near
eps, so parameters are compared to within a quarter of one Adam step (lr = 2e-4):
5e-5 absolute, after 3 steps (observed: under 1e-5).
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jaxmed.errors import UsageError
from jaxmed.families.base import Task
from jaxmed.families.gan import FAMILY as GAN
from jaxmed.training import sharding
from jaxmed.training.metrics_writer import read_metrics
from jaxmed.training.restore import restore_run

LOSS_RTOL = 1e-5
PARAM_ATOL = 5e-5
DEVICES = 8

GAN_FLAGS = ["train", "gan", "--data", "phantom:brain", "--image-size", "32", "--batch-size", "8", "--steps", "3",
             "--set", "data.n=64", "--set", "latent_dim=16", "--set", "checkpoint.every=3", "--set", "sample.every=100",
             "--set", "eval.every=100", "--set", "eval.n=16", "--set", "sample.n=4", "--set", "log.every=1",
             "--no-progress",
             # One convolution backend for every device count: "auto" picks oneDNN on one CPU device and
             # XLA on several, and Adam's first steps magnify their different rounding of near-zero gradients.
             "--set", "conv_backend=xla"]

# Runs in a fresh interpreter with 8 CPU devices. The GAN and VAE runs go through the command
# line (the same flags, `train vae` instead of `train gan`); the classifier steps (seed_cnn with BatchNorm and dropout, 2 microbatches per
# step) are compared directly, on a mesh of 8 and on one device.
SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_num_cpu_devices", {devices})
    import numpy as np
    from jaxmed.cli import main
    from jaxmed.families.base import Task
    from jaxmed.families.classifier import FAMILY as CLASSIFIER
    from jaxmed.families.classifier import ClassifierConfig
    from jaxmed.training import sharding

    root, flags = sys.argv[1], json.loads(sys.argv[2])
    assert jax.device_count() == {devices}
    for count in ({devices}, 1):
        assert main(flags + ["--workdir", f"{{root}}/mesh{{count}}", "--set", f"mesh.data={{count}}"]) == 0
        vae_flags = ["train", "vae", *flags[2:]]
        vae_flags[vae_flags.index("--steps") + 1] = "2"
        assert main(vae_flags + ["--workdir", f"{{root}}/vae_mesh{{count}}", "--set", f"mesh.data={{count}}"]) == 0

    config = ClassifierConfig.tiny(batch_size=16, accumulate_steps=2)
    definition = CLASSIFIER.definition(config, Task(class_names=("0", "1"), total_steps=10),
                                       np.array([1.0, 2.0], np.float32))
    rng = np.random.default_rng(0)
    batches = [(rng.uniform(-1, 1, (16, 32, 32, 1)).astype(np.float32), rng.integers(0, 2, 16).astype(np.int32))
               for _ in range(2)]
    results = {{}}
    for name, mesh in (("mesh", sharding.make_mesh({devices})), ("single", None)):
        state = CLASSIFIER.init_state(config, definition, jax.random.key(0))
        step = CLASSIFIER.make_train_step(definition, mesh)
        if mesh is not None:
            state = jax.device_put(state, sharding.replicated(mesh))
        losses = []
        for images, labels in batches:
            if mesh is not None:
                images, labels = (sharding.place_global(a, sharding.batch_sharding(mesh)) for a in (images, labels))
            state, metrics = step(state, {{"image": images, "label": labels}})
            losses.append(float(metrics["loss"]))
        assert step._cache_size() == 1  # placed inputs: one compilation
        results[name + "_losses"] = np.array(losses)
        for index, leaf in enumerate(jax.tree.leaves((state.params, state.model_state))):
            results[f"{{name}}_{{index}}"] = np.asarray(jax.random.key_data(leaf) if jax.dtypes.issubdtype(
                leaf.dtype, jax.dtypes.prng_key) else leaf)
    np.savez(f"{{root}}/classifier.npz", **results)
""").format(devices=DEVICES)


@pytest.fixture(scope="module")
def eight_device_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eight_devices")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXMED_XLA_CACHE": ""}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(root), json.dumps(GAN_FLAGS)], env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def gan_losses(workdir):
    rows = read_metrics(workdir / "metrics.jsonl")
    return np.array([[row["step"], row["d_loss"], row["g_loss"], row["d_real"], row["d_fake"]] for row in rows])


def final_state(workdir):
    """(config, state) of a GAN or VAE workdir."""
    run = restore_run(workdir)
    return run.config, run.state


@pytest.mark.slow
@pytest.mark.multiprocess
def test_gan_on_8_devices_equals_1_device(eight_device_runs):
    eight_config, eight = final_state(eight_device_runs / f"mesh{DEVICES}")
    one_config, one = final_state(eight_device_runs / "mesh1")
    assert (eight_config.mesh.data, one_config.mesh.data) == (DEVICES, 1)
    assert int(eight.step) == int(one.step) == 3
    eight_losses, one_losses = gan_losses(eight_device_runs / f"mesh{DEVICES}"), gan_losses(eight_device_runs / "mesh1")
    np.testing.assert_array_equal(eight_losses[:, 0], [1, 2, 3])
    np.testing.assert_allclose(eight_losses, one_losses, rtol=LOSS_RTOL)
    # Batch 8 on 8 devices is one image per device: BatchNorm statistics of each device's own
    # image would differ from the batch's, so agreement shows they span the global batch.
    for got, want in zip(jax.tree.leaves(eight), jax.tree.leaves(one), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=PARAM_ATOL)
    definition = GAN.definition(one_config, Task(class_names=(), total_steps=one_config.steps))
    moved = [np.max(np.abs(np.asarray(a) - np.asarray(b))) for a, b in zip(
        jax.tree.leaves(one.discriminator_params),
        jax.tree.leaves(GAN.init_state(one_config, definition, jax.random.key(0)).discriminator_params))]
    # The tolerance is small against what training changed.
    assert min(moved) > PARAM_ATOL and max(moved) > 10 * PARAM_ATOL


@pytest.mark.slow
@pytest.mark.multiprocess
def test_vae_on_8_devices_equals_1_device(eight_device_runs):
    runs = [eight_device_runs / f"vae_mesh{count}" for count in (DEVICES, 1)]
    losses = [np.array([[row["step"], row["loss"], row["reconstruction"], row["kl"]]
                        for row in read_metrics(run / "metrics.jsonl")]) for run in runs]
    np.testing.assert_array_equal(losses[0][:, 0], [1, 2])
    # Step 1 starts from the same weights. Step 2 follows the update, in which a few weights may
    # have moved 2 lr apart (below): its KL term, 25.4, differed by 0.01 on an AVX2 CPU.
    np.testing.assert_allclose(losses[0][0], losses[1][0], rtol=LOSS_RTOL)
    np.testing.assert_allclose(losses[0][1], losses[1][1], rtol=1e-3)
    (config, eight), (_, one) = (final_state(run) for run in runs)
    assert int(eight.step) == int(one.step) == 2
    # Adam moves a weight by about lr per step whatever its gradient's size, so where a
    # gradient is near zero the two roundings can give opposite signs: up to 2 lr per step
    # apart. How many such weights there are depends on the CPU's convolution kernels (3 of
    # 262,144 on an AVX-512 Xeon, 1,014 of 1.84 million, 0.06 %, on an AVX2 EPYC); all others
    # must agree as tightly as the GAN's. (Per-device batch statistics would already have
    # failed the step-1 losses above.)
    steps_bound = 2 * 2 * config.optimizer.lr
    outliers = total = 0
    for got, want in zip(jax.tree.leaves(eight.params), jax.tree.leaves(one.params), strict=True):
        difference = np.abs(np.asarray(got) - np.asarray(want))
        assert difference.max() <= steps_bound * 1.01
        outliers += int(np.sum(difference > PARAM_ATOL + 1e-4 * np.abs(np.asarray(want))))
        total += difference.size
    assert outliers <= 5e-3 * total


@pytest.mark.slow
@pytest.mark.multiprocess
def test_classifier_with_accumulation_on_8_devices_equals_1_device(eight_device_runs):
    results = np.load(eight_device_runs / "classifier.npz")
    np.testing.assert_allclose(results["mesh_losses"], results["single_losses"], rtol=LOSS_RTOL)
    leaves = sorted(key.removeprefix("single_") for key in results if key.startswith("single_") and
                    not key.endswith("losses"))
    assert leaves
    for index in leaves:
        np.testing.assert_allclose(results[f"mesh_{index}"], results[f"single_{index}"], rtol=1e-4, atol=PARAM_ATOL)


def test_mesh_and_batch_checks():
    with pytest.raises(UsageError, match=f"mesh.data=2 but only {jax.device_count()} devices"):
        sharding.make_mesh(2)
    mesh = sharding.make_mesh(0)
    assert mesh.shape == {"data": jax.device_count()} and mesh.axis_names == ("data",)
    sharding.check_batch_size(8, mesh, accumulate_steps=4)
    with pytest.raises(UsageError, match="batch size 8 is not divisible by 1 devices x 3 accumulation steps"):
        sharding.check_batch_size(8, mesh, accumulate_steps=3)


def test_placing_and_fetching_a_global_batch():
    mesh = sharding.make_mesh(0)
    host = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    placed = sharding.place_global(host, sharding.batch_sharding(mesh))
    assert placed.sharding == sharding.batch_sharding(mesh)
    np.testing.assert_array_equal(sharding.to_host(placed), host)
    batches = sharding.placed_batches(iter([{"image": host, "label": host[:, 0]}]), sharding.batch_sharding(mesh))
    batch = next(batches)
    np.testing.assert_array_equal(sharding.to_host(batch["label"]), host[:, 0])
