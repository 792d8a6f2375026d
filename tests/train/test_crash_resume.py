"""SIGKILL at random moments, including in the middle of a checkpoint save: resuming ends bit-identical.

`jaxmed train gan` runs as a subprocess and is killed (seeded random points) while
it trains and while Orbax is writing a checkpoint; each time it is started again on
the same workdir. The final state and the logged losses must equal those of an
uninterrupted run of the same config, bit for bit. The subprocesses share the test
session's XLA cache, so only the first one compiles.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxmed import config as config_lib
from jaxmed.families.base import Task
from jaxmed.families.gan import FAMILY as GAN
from jaxmed.families.gan import GanConfig
from jaxmed.training.checkpoint import Checkpoints, abstract_like
from jaxmed.training.metrics_writer import read_metrics

STEPS = 14
EVERY = 2
COMMAND = [sys.executable, "-m", "jaxmed", "train", "gan", "--data", "phantom:brain", "--image-size", "32",
           "--batch-size", "8", "--steps", str(STEPS), "--no-progress",
           *[arg for setting in ("data.n=64", "latent_dim=16", f"checkpoint.every={EVERY}", "checkpoint.keep=2",
                                 "log.every=1", "sample.every=1000", "sample.n=4", "eval.every=1000", "eval.n=16",
                                 "mesh.data=1")
             for arg in ("--set", setting)]]
UNFINISHED_MARKER = ".orbax-checkpoint-tmp"
KILL_PLAN = ("save", "step", "save")


def start(workdir: Path, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAXMED_XLA_CACHE=jax.config.jax_compilation_cache_dir or "")
    with open(log_path, "w") as log:
        return subprocess.Popen([*COMMAND, "--workdir", str(workdir)], env=env, stdout=log, stderr=subprocess.STDOUT)


def committed_steps(workdir: Path) -> list[int]:
    directory = workdir / "checkpoints"
    return sorted(int(name) for name in os.listdir(directory) if name.isdigit()) if directory.is_dir() else []


def unfinished_saves(workdir: Path) -> list[str]:
    directory = workdir / "checkpoints"
    return [name for name in os.listdir(directory) if UNFINISHED_MARKER in name] if directory.is_dir() else []


def wait_for_logged_step(process: subprocess.Popen, workdir: Path, step: int, started_ns: int) -> bool:
    """Waits until this process has logged `step` (False if it exited first)."""
    metrics = workdir / "metrics.jsonl"
    while process.poll() is None:
        # Rows from before this process are ignored: it rewrites the file when it starts.
        if metrics.is_file() and metrics.stat().st_mtime_ns > started_ns:
            try:
                if json.loads(metrics.read_text().splitlines()[-1])["step"] >= step:
                    return True
            except (IndexError, ValueError):  # empty, or a row being written
                pass
        time.sleep(0.005)
    return False


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def kill_during_save(process, workdir, resume_step, started_ns) -> bool | None:
    """Kills while a checkpoint is being written; True if the kill left that save unfinished.

    Waits past this process's first save (which removed unfinished saves of earlier
    runs), so any unfinished save seen afterwards is this process's own.
    """
    if not wait_for_logged_step(process, workdir, resume_step + EVERY + 1, started_ns):
        return None
    while process.poll() is None:
        in_progress = unfinished_saves(workdir)
        if in_progress:
            kill(process)
            return bool(set(in_progress) & set(unfinished_saves(workdir)))
        time.sleep(0.001)
    return None


def abstract_state(workdir: Path):
    config = config_lib.load(GanConfig, workdir / "config.json")
    definition = GAN.definition(config, Task(class_names=(), total_steps=config.steps))
    return abstract_like(jax.eval_shape(lambda: GAN.init_state(config, definition, jax.random.key(config.seed))),
                         jax.sharding.SingleDeviceSharding(jax.devices()[0]))


def final_state(workdir: Path):
    with Checkpoints(workdir / "checkpoints") as checkpoints:
        assert checkpoints.latest_step() == STEPS
        state, data, _ = checkpoints.restore(abstract_state(workdir))
    assert data["position"] == STEPS
    return state


@pytest.mark.slow
@pytest.mark.multiprocess
def test_sigkill_at_random_points_then_resume_is_bit_identical(tmp_path):
    reference = start(tmp_path / "straight", tmp_path / "straight.log")
    assert reference.wait(timeout=600) == 0, (tmp_path / "straight.log").read_text()

    rng = np.random.default_rng(6)
    workdir = tmp_path / "killed"
    logs, kills, mid_save_kills = [], 0, 0
    for attempt, kind in enumerate(KILL_PLAN):
        resume_step = max(committed_steps(workdir), default=0)
        if resume_step + EVERY + 1 >= STEPS:
            break  # too close to the end for a planned kill
        logs.append(tmp_path / f"killed-{attempt}.log")
        started_ns = time.time_ns()
        process = start(workdir, logs[-1])
        if kind == "save":
            outcome = kill_during_save(process, workdir, resume_step, started_ns)
            mid_save_kills += bool(outcome)
        else:
            target = int(rng.integers(resume_step + 1, resume_step + 2 * EVERY + 1))
            outcome = wait_for_logged_step(process, workdir, target, started_ns)
            if outcome:
                time.sleep(rng.uniform(0.0, 0.3))
                kill(process)
        if process.poll() is None or process.returncode != -signal.SIGKILL:
            process.wait(timeout=600)
            break  # it finished before the planned kill
        kills += 1

    logs.append(tmp_path / "killed-final.log")
    resumed_from = max(committed_steps(workdir), default=0)
    final = start(workdir, logs[-1])
    assert final.wait(timeout=600) == 0, logs[-1].read_text()

    assert kills >= 3 and mid_save_kills >= 1, (kills, mid_save_kills)
    for log in logs:
        text = log.read_text()
        assert "cannot restore" not in text and "Traceback" not in text, text
    if resumed_from < STEPS:  # the final run saved, so it removed every unfinished save
        assert unfinished_saves(workdir) == []
    got, want = final_state(workdir), final_state(tmp_path / "straight")
    for (path, got_leaf), want_leaf in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want),
                                           strict=True):
        if jax.dtypes.issubdtype(got_leaf.dtype, jax.dtypes.prng_key):
            got_leaf, want_leaf = jax.random.key_data(got_leaf), jax.random.key_data(want_leaf)
        assert np.array_equal(np.asarray(got_leaf), np.asarray(want_leaf)), jax.tree_util.keystr(path)

    def losses(run):
        return [(row["step"], row["d_loss"], row["g_loss"]) for row in read_metrics(run / "metrics.jsonl")]

    assert losses(workdir) == losses(tmp_path / "straight")
    assert [step for step, *_ in losses(workdir)] == list(range(1, STEPS + 1))
