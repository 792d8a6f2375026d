"""A checkpoint saved on 4 devices restores on 1 and on 8 (forced CPU devices), identically, and training goes on.

Each device count needs its own process (XLA fixes it at start-up), so the runs are
subprocesses with `XLA_FLAGS=--xla_force_host_platform_device_count=N`, sharing the
test session's XLA cache.
"""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxmed import config as config_lib
from jaxmed.families.base import Task
from jaxmed.families.gan import FAMILY as GAN
from jaxmed.families.gan import GanConfig
from jaxmed.training.checkpoint import Checkpoints, abstract_like

SETTINGS = ("data.n=64", "latent_dim=16", "checkpoint.every=2", "checkpoint.keep=3", "log.every=1",
            "sample.every=1000", "sample.n=4", "eval.every=1000", "eval.n=16")
TRAIN = ["train", "gan", "--data", "phantom:brain", "--image-size", "32", "--batch-size", "8", "--no-progress",
         *[arg for setting in SETTINGS for arg in ("--set", setting)]]

# Restores step 4 onto a mesh of all this process's devices, saves the leaves, then
# resumes training through the CLI with the same device count.
RESTORE_THEN_TRAIN = textwrap.dedent("""
    import sys
    from pathlib import Path

    import jax
    import numpy as np

    from jaxmed.cli import main
    from jaxmed import config as config_lib
    from jaxmed.families.base import Task
    from jaxmed.families.gan import FAMILY as GAN
    from jaxmed.families.gan import GanConfig
    from jaxmed.training import sharding
    from jaxmed.training.checkpoint import Checkpoints, abstract_like

    workdir, leaves_path, steps = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    devices = jax.device_count()
    config = config_lib.load(GanConfig, workdir / "config.json")
    definition = GAN.definition(config, Task(class_names=(), total_steps=config.steps))
    placement = sharding.replicated(sharding.make_mesh(devices))
    abstract = abstract_like(jax.eval_shape(lambda: GAN.init_state(config, definition, jax.random.key(config.seed))),
                             placement)
    with Checkpoints(workdir / "checkpoints") as checkpoints:
        state, _, _ = checkpoints.restore(abstract, step=4)
    leaves = jax.tree.leaves(state)
    assert all(len(leaf.sharding.device_set) == devices for leaf in leaves), "not placed on every device"
    np.savez(leaves_path, *[np.asarray(jax.random.key_data(leaf) if jax.dtypes.issubdtype(
        leaf.dtype, jax.dtypes.prng_key) else leaf) for leaf in leaves])
    sys.exit(main(["train", "gan", "--workdir", str(workdir), "--steps", steps, "--set", f"mesh.data={devices}",
                   "--no-progress"]))
""")


def environment(devices: int) -> dict[str, str]:
    flags = [flag for flag in os.environ.get("XLA_FLAGS", "").split()
             if not flag.startswith("--xla_force_host_platform_device_count")]
    return dict(os.environ, JAX_PLATFORMS="cpu", JAXMED_XLA_CACHE=jax.config.jax_compilation_cache_dir or "",
                XLA_FLAGS=" ".join([*flags, f"--xla_force_host_platform_device_count={devices}"]))


def host_leaves(state) -> list[np.ndarray]:
    return [np.asarray(jax.random.key_data(leaf) if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) else leaf)
            for leaf in jax.tree.leaves(state)]


def restore_here(workdir: Path, step: int):
    """The state of `step`, restored in this (test) process onto its first device."""
    config = config_lib.load(GanConfig, workdir / "config.json")
    definition = GAN.definition(config, Task(class_names=(), total_steps=config.steps))
    abstract = abstract_like(jax.eval_shape(lambda: GAN.init_state(config, definition, jax.random.key(config.seed))),
                             jax.sharding.SingleDeviceSharding(jax.devices()[0]))
    with Checkpoints(workdir / "checkpoints") as checkpoints:
        state, data, _ = checkpoints.restore(abstract, step=step)
    assert data["position"] == step
    return host_leaves(state)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_checkpoint_saved_on_4_devices_restores_on_1_and_8(tmp_path):
    saved = tmp_path / "four"
    done = subprocess.run([sys.executable, "-m", "jaxmed", *TRAIN, "--steps", "4", "--set", "mesh.data=4",
                           "--workdir", str(saved)], env=environment(4), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert config_lib.load(GanConfig, saved / "config.json").mesh.data == 4

    runs = {}
    for devices in (1, 8):
        workdir = tmp_path / f"on{devices}"
        shutil.copytree(saved, workdir)
        log = open(tmp_path / f"on{devices}.log", "w")
        runs[devices] = (workdir, log, subprocess.Popen(
            [sys.executable, "-c", RESTORE_THEN_TRAIN, str(workdir), str(tmp_path / f"leaves{devices}.npz"), "6"],
            env=environment(devices), stdout=log, stderr=subprocess.STDOUT))
    for devices, (workdir, log, process) in runs.items():
        assert process.wait(timeout=600) == 0, (tmp_path / f"on{devices}.log").read_text()
        log.close()
        text = (tmp_path / f"on{devices}.log").read_text()
        assert "cannot restore" not in text and "trained to step 6" in text, text

    # The restores on 1 and 8 devices (each verified against the saved checksums) hold the 4-device bits.
    saved_leaves = restore_here(saved, 4)
    for devices in (1, 8):
        with np.load(tmp_path / f"leaves{devices}.npz") as restored:
            assert len(restored.files) == len(saved_leaves)
            for index, want in enumerate(saved_leaves):
                got = restored[f"arr_{index}"]
                assert got.dtype == want.dtype and np.array_equal(got, want), (devices, index)

    # Training went on from step 4 on both meshes, to the same place up to float reduction order.
    on1, on8 = restore_here(runs[1][0], 6), restore_here(runs[8][0], 6)
    moved = [not np.array_equal(after, before) for after, before in zip(on1, saved_leaves, strict=True)]
    assert sum(moved) > len(moved) // 2
    for got, want in zip(on8, on1, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
