"""Multi-host training: two processes on localhost (gloo CPU collectives) train as one.

Each process has 2 CPU devices, so the mesh has 4 devices over 2 processes. Process 0
gets its settings from flags, process 1 from environment variables. Their run must
equal a one-process, one-device run of the same global batch (tolerances as in
test_sharding.py, whose helpers are repeated here).
"""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxmed import cli
from jaxmed.errors import UsageError
from jaxmed.training import distributed
from jaxmed.training.metrics_writer import read_metrics
from jaxmed.training.restore import restore_run

LOSS_RTOL = 1e-5
PARAM_ATOL = 5e-5

FLAGS = ["train", "gan", "--data", "phantom:brain", "--image-size", "32", "--batch-size", "8", "--steps", "3",
         "--set", "data.n=64", "--set", "latent_dim=16", "--set", "checkpoint.every=2", "--set", "sample.every=100",
         "--set", "eval.every=100", "--set", "eval.n=16", "--set", "sample.n=4", "--set", "log.every=1",
         "--no-progress",
         # One convolution backend for every device count: "auto" picks oneDNN on one CPU device and
         # XLA on several, and Adam's first steps magnify their different rounding of near-zero gradients.
         "--set", "conv_backend=xla"]
TIMEOUT_SECONDS = 600


def gan_losses(workdir):
    rows = read_metrics(workdir / "metrics.jsonl")
    return np.array([[row["step"], row["d_loss"], row["g_loss"], row["d_real"], row["d_fake"]] for row in rows])


def final_gan_state(workdir):
    return restore_run(workdir).state


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_env(**extra):
    # Without proxies (gRPC would send the localhost coordinator traffic to them) and
    # without inherited distributed settings.
    env = {key: value for key, value in os.environ.items()
           if "_proxy" not in key.lower() and key not in (distributed.COORDINATOR_ENV, distributed.NUM_PROCESSES_ENV,
                                                          distributed.PROCESS_ID_ENV)}
    return {**env, "JAX_PLATFORMS": "cpu", "JAXMED_XLA_CACHE": "", **extra}


def jaxmed(args, env):
    return subprocess.Popen([sys.executable, "-m", "jaxmed", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_train_in_step_and_equal_one_process(tmp_path):
    coordinator = f"127.0.0.1:{free_port()}"
    multi = tmp_path / "two_processes"
    processes = [
        jaxmed([*FLAGS, "--workdir", str(multi), "--coordinator", coordinator, "--num-processes", "2",
                "--process-id", "0"], child_env(JAX_NUM_CPU_DEVICES="2")),
        jaxmed([*FLAGS, "--workdir", str(multi)],
               child_env(JAX_NUM_CPU_DEVICES="2", JAX_COORDINATOR_ADDRESS=coordinator, JAX_NUM_PROCESSES="2",
                         JAX_PROCESS_ID="1")),
        jaxmed([*FLAGS, "--workdir", str(tmp_path / "one_process")], child_env(JAX_NUM_CPU_DEVICES="1")),
    ]
    try:
        outputs = [process.communicate(timeout=TIMEOUT_SECONDS) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
        assert "trained to step 3" in stderr
    # Process 0 alone writes the metrics: each step once.
    multi_losses, single_losses = gan_losses(multi), gan_losses(tmp_path / "one_process")
    np.testing.assert_array_equal(multi_losses[:, 0], [1, 2, 3])
    np.testing.assert_allclose(multi_losses, single_losses, rtol=LOSS_RTOL)
    # Both processes saved through Orbax: one checkpoint per step, readable as a whole.
    assert sorted(path.name for path in (multi / "checkpoints").iterdir() if path.name.isdigit()) == ["2", "3"]
    multi_state, single_state = final_gan_state(multi), final_gan_state(tmp_path / "one_process")
    assert int(multi_state.step) == 3
    for field in ("generator_params", "discriminator_params", "ema_params", "generator_stats",
                  "discriminator_stats"):
        for got, want in zip(jax.tree.leaves(getattr(multi_state, field)), jax.tree.leaves(getattr(single_state, field)),
                             strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=PARAM_ATOL, err_msg=field)
    # Adam's moments hold the raw gradients, where summation order shows: BatchNorm's input
    # gradient is what is left of dy after projecting out 1 and x_hat, and early in training dy
    # is nearly that projection, so float32 keeps ~1e-3 of it as order-dependent noise (for
    # XLA's autodiff of BatchNorm as much as for jaxmed's). gloo's cross-process sums and one
    # process's sums differ in order; seen: 1.4 % of the largest first moment, 8e-6 in a parameter.
    for got, want in zip(jax.tree.leaves((multi_state.generator_opt, multi_state.discriminator_opt)),
                         jax.tree.leaves((single_state.generator_opt, single_state.discriminator_opt)), strict=True):
        np.testing.assert_allclose(got, want, atol=0.05 * float(np.abs(want).max(initial=0.0)))


def test_settings_come_from_flags_then_environment():
    assert distributed.settings_from(environ={}) is None
    assert distributed.settings_from(detect=True, environ={}) == distributed.DistributedSettings()
    from_env = distributed.settings_from(environ={"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234",
                                                  "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"})
    assert from_env == distributed.DistributedSettings("10.0.0.1:1234", 4, 3)
    from_flags = distributed.settings_from("host:99", 2, 0, environ={"JAX_PROCESS_ID": "1"})
    assert from_flags == distributed.DistributedSettings("host:99", 2, 0)


@pytest.mark.parametrize("arguments, environ, message", [
    (("localhost", 2, 0), {}, "--coordinator must be HOST:PORT"),
    (("h:1", 2, 2), {}, r"--process-id must be in \[0, 2\), got 2"),
    ((None, None, None), {"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES must be an integer"),
])
def test_bad_settings_are_usage_errors(arguments, environ, message):
    with pytest.raises(UsageError, match=message):
        distributed.settings_from(*arguments, environ=environ)


def test_cli_rejects_a_bad_process_id_in_one_line(tmp_path, capsys):
    status = cli.main([*FLAGS, "--workdir", str(tmp_path), "--coordinator", "127.0.0.1:1", "--num-processes", "2",
                       "--process-id", "5"])
    assert status == 2
    assert capsys.readouterr().err.strip() == "jaxmed: error: --process-id must be in [0, 2), got 5"
    assert not any(tmp_path.iterdir())
