"""The jaxmed command: one-line errors with the documented exit status, train and sample."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxmed.cli import main

TINY = ["--image-size", "32", "--batch-size", "8", "--set", "data.n=32", "--set", "latent_dim=8",
        "--set", "checkpoint.every=1", "--set", "sample.every=2", "--set", "eval.n=8", "--no-progress"]


def run(capsys, *argv):
    """(exit status, stderr) of the command, whether it returns or argparse exits."""
    try:
        status = main(list(argv))
    except SystemExit as exit:
        status = exit.code
    return status, capsys.readouterr().err


def one_line_error(err):
    lines = err.strip().splitlines()
    return len(lines) == 1 and "error" in lines[0] and "Traceback" not in err


@pytest.mark.parametrize("argv, status, fragment", [
    (["train", "gan", "--data", "phantom:heart", "--workdir", "{tmp}/w", "--steps", "1"], 1, "unknown data spec"),
    (["train", "gan", "--workdir", "{tmp}/w", "--steps", "ten"], 2, "positive integer"),
    (["train", "gan", "--workdir", "{tmp}/w", "--image-size", "64.5"], 2, "positive integer"),
    (["train", "gan", "--workdir", "{tmp}/w", "--image-size", "100"], 2, "image_size must be"),
    (["train", "gan", "--workdir", "{tmp}/w", "--set", "optimizer.lr"], 2, "key=value"),
    (["train", "gan", "--workdir", "{tmp}/w", "--set", "colour=red"], 2, "unknown config key"),
    (["sample", "--workdir", "{tmp}/missing", "--n", "4", "--out", "{tmp}/s"], 1, "does not exist"),
    (["sample", "--workdir", "{tmp}/w", "--n", "0", "--out", "{tmp}/s"], 2, "positive integer"),
    (["sample", "--workdir", "{tmp}/w", "--n", "2", "--out", "{tmp}/s", "--format", "gif"], 2, "invalid choice"),
])
def test_bad_input_gives_one_line_and_exit_status(tmp_path, capsys, argv, status, fragment):
    got, err = run(capsys, *[arg.format(tmp=tmp_path) for arg in argv])
    assert got == status
    assert fragment in err and one_line_error(err), err


def test_console_entry_point_reports_errors_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "jaxmed", "train", "gan", "--data", "nope", "--workdir",
                             str(tmp_path / "w")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == "jaxmed: error: nope: unknown data spec and no such folder; this version reads phantom:brain, phantom:lung, a folder path"


def test_train_resume_and_deterministic_sampling(tmp_path, capsys):
    workdir = str(tmp_path / "w")
    assert main(["train", "gan", "--data", "phantom:brain", "--workdir", workdir, "--steps", "2", *TINY]) == 0
    assert main(["train", "gan", "--workdir", workdir, "--steps", "3", "--no-progress"]) == 0
    assert "trained to step 3" in capsys.readouterr().err
    # A resumed run may not change what the checkpoint means.
    status, err = run(capsys, "train", "gan", "--workdir", workdir, "--steps", "4", "--image-size", "64")
    assert status == 2 and "image_size=32" in err

    for out in ("a", "b"):
        assert main(["sample", "--workdir", workdir, "--n", "3", "--out", str(tmp_path / out), "--seed", "5"]) == 0
    first = sorted((tmp_path / "a").iterdir())
    assert [path.name for path in first] == ["sample_00000.png", "sample_00001.png", "sample_00002.png"]
    for path in first:
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes()
        image = Image.open(path)
        assert image.size == (32, 32) and "SYNTHETIC" in image.text["Description"]
    assert main(["sample", "--workdir", workdir, "--n", "3", "--out", str(tmp_path / "c"), "--seed", "6"]) == 0
    assert (tmp_path / "c" / "sample_00000.png").read_bytes() != first[0].read_bytes()

    assert main(["sample", "--workdir", workdir, "--n", "3", "--out", str(tmp_path / "npz"), "--format", "npz"]) == 0
    with np.load(tmp_path / "npz" / "samples.npz") as archive:
        assert archive["images"].shape == (3, 32, 32, 1)
        assert np.abs(archive["images"]).max() <= 1.0
        assert "SYNTHETIC" in str(archive["synthetic"])
