"""The jaxmed command: one-line errors with the documented exit status, train and sample."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxmed import data as data_lib
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
    (["train", "gan", "--data", "phantom:heart", "--workdir", "{tmp}/w", "--steps", "1"], 1, "unknown phantom"),
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


@pytest.mark.multiprocess
def test_console_entry_point_reports_errors_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "jaxmed", "train", "gan", "--data", "nope", "--workdir",
                             str(tmp_path / "w")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"jaxmed: error: nope: no such file or folder, and not a data spec; this version "
                                     f"reads {', '.join(data_lib.SPECS)}")


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


@pytest.mark.slow
def test_train_vae_then_sample_dicom(tmp_path, capsys):
    workdir = str(tmp_path / "vae")
    assert main(["train", "vae", "--data", "phantom:brain", "--workdir", workdir, "--steps", "2", *TINY]) == 0
    assert "trained to step 2" in capsys.readouterr().err
    assert (tmp_path / "vae" / "plots" / "reconstructions.png").is_file()
    # The GAN command refuses a VAE workdir rather than reading its config as a GAN's.
    status, err = run(capsys, "train", "gan", "--workdir", workdir, "--steps", "3", "--no-progress")
    assert status == 2 and one_line_error(err) and "holds a 'vae' run, not a dcgan or resnet one" in err
    assert main(["sample", "--workdir", workdir, "--n", "2", "--out", str(tmp_path / "dcm"), "--format", "dcm"]) == 0
    written = sorted((tmp_path / "dcm").iterdir())
    assert len(written) == 2 and all(path.suffix == ".dcm" for path in written)
    assert "checkpoint step 2" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_trains_a_feature_extractor_once_and_refuses_other_workdirs(tmp_path, capsys):
    gan, out = str(tmp_path / "gan"), str(tmp_path / "eval")
    assert main(["train", "gan", "--data", "phantom:brain", "--workdir", gan, "--steps", "2", *TINY]) == 0
    capsys.readouterr()
    evaluate = ["evaluate", "--workdir", gan, "--out", out, "--n", "16", "--feature-steps", "4", "--no-progress"]
    assert main(evaluate) == 0
    err = capsys.readouterr().err
    assert "training an in-domain feature extractor" in err and "FID " in err and "copies of training images 0" in err
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["counts"]["generated"] == 16 and report["feature_extractor"]["model"] == "vae"
    # The second run reuses the extractor, and gives the same numbers.
    assert main(evaluate) == 0
    assert "training an in-domain feature extractor" not in capsys.readouterr().err
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["fid"] == report["fid"]

    for argv, fragment in [
            (["--workdir", str(tmp_path / "nowhere"), "--out", out], "workdir does not exist"),
            (["--workdir", gan, "--out", out, "--features", gan], "a 'dcgan' run; a feature extractor is a jaxmed "
                                                                   "VAE or finished classifier workdir"),
            (["--workdir", gan, "--out", out, "--data", str(tmp_path / "nowhere")], "no such file or folder"),
            (["--workdir", gan, "--out", out, "--n", "3"], "need at least 6 reference and 6 generated images")]:
        status, err = run(capsys, "evaluate", *argv, "--no-progress")
        assert status == 1 and fragment in err and one_line_error(err), err


def image_folder_with_a_bad_file(root, n=8):
    """Classes a/ and b/ of n distinct 32x32 PNGs each, plus a truncated PNG in a/."""
    rng = np.random.default_rng(0)
    for class_name in ("a", "b"):
        (root / class_name).mkdir(parents=True)
        for index in range(n):
            Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(root / class_name / f"{index}.png")
    (root / "a" / "cut.png").write_bytes((root / "a" / "0.png").read_bytes()[:50])
    return str(root)


def test_skip_bad_lists_skipped_files_in_the_workdir(tmp_path, capsys):
    data = image_folder_with_a_bad_file(tmp_path / "data")
    workdir = tmp_path / "w"
    status, err = run(capsys, "train", "gan", "--data", data, "--workdir", str(workdir), "--steps", "1", *TINY)
    assert status == 1 and one_line_error(err) and "cut.png: truncated or corrupt image" in err
    assert not (workdir / "skipped.json").exists()

    status, err = run(capsys, "train", "gan", "--data", data, "--workdir", str(workdir), "--steps", "1", "--skip-bad",
                      *TINY)
    assert status == 0, err
    report = json.loads((workdir / "skipped.json").read_text())
    assert report["count"] == 1 and report["skipped"][0]["file"] == "a/cut.png"
    assert "truncated" in report["skipped"][0]["reason"]
    assert f"skipped 1 file (see {workdir / 'skipped.json'})" in err.splitlines()
    assert json.loads((workdir / "config.json").read_text())["data"]["skip_bad"] is True
    # --skip-bad is data.skip_bad: giving both is refused.
    status, err = run(capsys, "train", "gan", "--data", data, "--workdir", str(tmp_path / "w2"), "--skip-bad",
                      "--set", "data.skip_bad=true")
    assert status == 2 and "given twice" in err

    # The study lists them in its own directory (here it then stops: the folder has no 'tumor' class).
    status, err = run(capsys, "study", "augmentation", "--data", data, "--workdir", str(tmp_path / "study"),
                      "--skip-bad", "--no-progress", "--set", "minority_class=tumor")
    assert status == 1 and "no class 'tumor'" in err
    assert json.loads((tmp_path / "study" / "skipped.json").read_text())["skipped"][0]["file"] == "a/cut.png"


def test_data_inspect_outputs(tmp_path, capsys):
    data = image_folder_with_a_bad_file(tmp_path / "data", n=3)
    (tmp_path / "data" / "b" / "copy.png").write_bytes((tmp_path / "data" / "a" / "1.png").read_bytes())

    # --json alone: one JSON object on stdout, nothing else there; the text report on stderr.
    status = main(["data", "inspect", data, "--skip-bad", "--image-size", "16", "--json"])
    out, err = capsys.readouterr()
    assert status == 0
    assert out.count("\n") == 1
    report = json.loads(out)
    assert report["total"] == 7 and report["classes"] == {"a": 3, "b": 4}
    assert report["skipped"][0]["file"] == "a/cut.png"
    assert report["duplicates"]["exact"]["across_classes"]["pairs"] == 1
    assert "WARNING: 1 exact-duplicate pair(s) carry different labels" in err

    # Default: the text report on stdout, warnings repeated on stderr.
    status = main(["data", "inspect", data, "--skip-bad", "--image-size", "16", "--montage",
                   str(tmp_path / "montage.png"), "--json", str(tmp_path / "report.json")])
    out, err = capsys.readouterr()
    assert status == 0
    assert out.startswith(f"{data} (images): 7 images in 2 classes") and "a/cut.png: truncated" in out
    assert f"montage: {tmp_path / 'montage.png'}" in out
    assert [line for line in err.splitlines() if "WARNING" in line] == [
        "jaxmed: WARNING: " + report["warnings"][0]]
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["montage"] == str(tmp_path / "montage.png") and written["total"] == 7
    assert Image.open(tmp_path / "montage.png").format == "PNG"

    # Bad input: one line, exit 1; usage errors exit 2.
    status, err = run(capsys, "data", "inspect", data)
    assert status == 1 and one_line_error(err) and "a/cut.png" in err
    status, err = run(capsys, "data", "inspect", data, "--set", "data.spec=x")
    assert status == 2 and one_line_error(err) and "the data spec is SPEC" in err
    status, err = run(capsys, "data", "inspect", data, "--set", "data.n=many")
    assert status == 2 and one_line_error(err) and "must be int" in err


def test_evaluate_passes_the_drawing_flags(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_evaluate(workdir, out, **options):
        seen.update(options)
        return {"fid": 1.0, "kid": {"mean": 0.0}, "precision": 0.5, "recall": 0.5,
                "memorization": {"copies": 0, "data_copying": None}}

    monkeypatch.setattr("jaxmed.evaluation.generators.evaluate_generator", fake_evaluate)
    assert main(["evaluate", "--workdir", str(tmp_path), "--out", str(tmp_path / "e"), "--sampler", "ddim",
                 "--sampling-steps", "50", "--eta", "0.5"]) == 0
    assert seen["settings"] == {"sampling.sampler": "ddim", "sampling.steps": 50, "sampling.eta": 0.5}
    assert main(["evaluate", "--workdir", str(tmp_path), "--out", str(tmp_path / "e")]) == 0
    assert seen["settings"] == {}
