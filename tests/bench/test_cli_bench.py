"""`jaxmed bench`: the --json stdout contract of a run, forced-device re-execution, and one-line usage errors."""

import json
import subprocess
import sys

import pytest

from jaxmed.bench import forced_devices
from jaxmed.cli import main


@pytest.mark.slow
@pytest.mark.multiprocess
def test_train_step_json_on_stdout_from_a_forced_two_device_child():
    # This process's child sees one CPU device and must re-execute itself with two forced ones.
    env = {**forced_devices.forced_environment(1), forced_devices.CHILD_MARKER: ""}
    result = subprocess.run(
        [sys.executable, "-m", "jaxmed", "bench", "train-step", "--model", "seed_cnn", "--image-size", "28",
         "--batch-size", "2", "--steps", "2", "--warmup", "0", "--devices", "2", "--json"],
        capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1  # exactly one JSON object and nothing else on stdout
    report = json.loads(lines[0])
    assert report["devices"] == 2 and report["environment"]["device_count"] == 2
    assert f"{forced_devices.FORCE_FLAG}=2" in report["environment"]["xla_flags"]
    assert report["steps"] == 2 and report["final_step"] == 3 and report["images_per_s"] > 0
    assert "images/s" in result.stderr  # the table went to stderr


def test_forced_environment_replaces_an_earlier_device_count():
    env = forced_devices.forced_environment(4, {"XLA_FLAGS": "--xla_force_host_platform_device_count=2 --foo=1"})
    assert env["XLA_FLAGS"].split() == ["--foo=1", "--xla_force_host_platform_device_count=4"]
    assert env["JAX_PLATFORMS"] == "cpu" and env[forced_devices.CHILD_MARKER] == "4"


@pytest.mark.parametrize("argv, fragment", [
    (["bench", "conv-pool", "--dtypes", "float16"], "dtype must be one of"),
    (["bench", "conv-pool", "--batch-sizes", "1,x"], "comma-separated list"),
    (["bench", "train-step", "--model", "seed_cnn", "--batch-size", "6", "--devices", "4"], "not divisible"),
    (["bench", "train-step", "--model", "gpt", "--batch-size", "6"], "invalid choice"),
])
def test_usage_errors_are_one_line_with_status_2(capsys, argv, fragment):
    try:
        status = main(argv)
    except SystemExit as exit:
        status = exit.code
    err = capsys.readouterr().err.strip()
    assert status == 2 and fragment in err and len(err.splitlines()) == 1, err
