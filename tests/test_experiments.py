"""The experiment scripts: `experiments/generators_small_data.py`'s arms and budgets, and the script end to end.

The end-to-end test runs both budgets (equal steps, equal minutes) at the tiniest sizes with a
GAN and a diffusion arm in this process; it takes about two minutes on a 2-core CPU (the U-Net
is built and restored a dozen times), so it is `slow`.
"""

import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "generators_small_data.py"


def _load_script():
    """The script as a module (experiments/ is not a package): its functions, and `main` run in this process."""
    spec = importlib.util.spec_from_file_location("generators_small_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


experiment = _load_script()


@pytest.mark.parametrize("text, family, label, settings", [
    ("gan:seed", "gan", "gan-seed", ()),
    ("gan:ada", "gan", "gan-ada", ("gan_augment=ada", "ada_images_to_full=20000")),
    ("vae", "vae", "vae", ()),
    ("diffusion:prediction=eps", "diffusion", "diffusion", ("prediction=eps",)),
    ("diffusion:eps:prediction=eps;timesteps=500", "diffusion", "diffusion-eps", ("prediction=eps", "timesteps=500")),
    # A preset's settings come first, the arm's own after them (later ones win).
    ("gan:ada:ada_images_to_full=5000", "gan", "gan-ada",
     ("gan_augment=ada", "ada_images_to_full=20000", "ada_images_to_full=5000")),
])
def test_arms_parse_family_name_and_settings(text, family, label, settings):
    arm = experiment.parse_arm(text)
    assert (arm.family, arm.label, arm.settings) == (family, label, settings)
    if text == "gan:ada:ada_images_to_full=5000":
        assert arm.overrides() == {"gan_augment": "ada", "ada_images_to_full": "5000"}


@pytest.mark.parametrize("text, message", [
    ("classifier", "unknown generative family 'classifier'"),
    ("gan:fancy", "gan has no preset 'fancy'"),
    ("vae:beta:kl", "expected key=value, got 'kl'"),
    ("gan:seed:steps=10", "steps is the experiment's"),
    ("gan:a:b:c", "expected family[:name][:key=value;...]"),
])
def test_bad_arms_are_one_line_errors(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        experiment.parse_arm(text)


def test_repeated_arms_are_refused():
    with pytest.raises(argparse.ArgumentTypeError, match="distinct arms"):
        experiment.parse_arms("gan:seed,vae,gan:seed")


def test_an_arm_with_an_unknown_key_fails_before_any_run(tmp_path):
    with pytest.raises(experiment.UsageError, match="arm vae-x: unknown config key 'no_such_key'"):
        experiment.main(["--workdir", str(tmp_path / "run"), "--json", str(tmp_path / "out.json"),
                         "--arms", "vae:x:no_such_key=1"])
    assert not (tmp_path / "run").exists()


def test_budgets_must_be_positive(tmp_path, capsys):
    with pytest.raises(SystemExit):
        experiment.build_parser().parse_args(["--workdir", "w", "--json", "j", "--minutes", "0"])
    assert "expected a positive float, got '0'" in capsys.readouterr().err


def test_a_step_timing_is_kept_per_arm_and_gives_each_budget_its_steps(tmp_path, monkeypatch):
    timed = []

    def fake_benchmark(label, batch_size, *, steps, warmup, config):
        timed.append((label, config.batch_size))
        return {"step_ms": 100.0 * config.batch_size / 16, "step_ms_p10": 90.0, "step_ms_p90": 110.0,
                "images_per_s": 160.0, "compile_s": 1.0, "steps": steps, "warmup": warmup}

    monkeypatch.setattr(experiment, "benchmark_train_step", fake_benchmark)
    args = experiment.build_parser().parse_args(["--workdir", str(tmp_path), "--json", str(tmp_path / "j.json"),
                                                 "--minutes", "1", "--arms", "gan:seed"])
    arm = args.arms[0]
    assert experiment.step_timing(arm, args)["steps_for_budget"] == 600  # 60 s at 100 ms a step
    args.minutes = 2.5
    assert experiment.step_timing(arm, args)["steps_for_budget"] == 1500  # the kept timing, another budget
    assert timed == [("gan-seed", 16)]
    args.batch_size = 32  # another config: timed again
    assert experiment.step_timing(arm, args)["steps_for_budget"] == 750
    assert timed == [("gan-seed", 16), ("gan-seed", 32)]


TINY = ["--count", "20", "--seeds", "1", "--image-size", "32", "--batch-size", "8", "--feature-steps", "2",
        "--feature-images", "64", "--eval-n", "8", "--sample-n", "8", "--timing-n", "2", "--timing-steps", "2",
        "--arms", "gan:seed,diffusion:tiny:timesteps=50;unet_width=8"]


def _check_runs(result: dict, steps: dict[str, int]) -> None:
    runs = {run["arm"]: run for run in result["runs"]}
    assert set(runs) == {"gan-seed", "diffusion-tiny"} == set(result["arms"])
    for label, run in runs.items():
        assert run["data"] == "phantom" and run["seed"] == 0
        assert run["steps"] == steps[label]
        assert run["train_seconds"] > 0 and math.isfinite(run["fid"])
    assert "samplers" not in runs["gan-seed"]
    rows = runs["diffusion-tiny"]["samplers"]
    # DDPM on all 50 training timesteps, DDIM-50 at eta 0 and 1, DPM-Solver++ at its default steps; same images.
    assert [(row["sampler"], row["sampling_steps"], row["eta"], row["n"]) for row in rows] == [
        ("ddpm", 50, 0.0, 8), ("ddim", 50, 0.0, 8), ("ddim", 50, 1.0, 8), ("dpm_solver_2m", 25, 0.0, 8)]
    assert all(row["seconds_per_image"] > 0 and row["images_timed"] == 2 for row in rows)
    assert len({row["fid"] for row in rows}) == 4  # each sampler drew its own images


@pytest.mark.slow
def test_the_experiment_runs_in_both_modes_and_records_budgets_and_samplers(tmp_path):
    root, steps_json, minutes_json = tmp_path / "run", tmp_path / "steps.json", tmp_path / "minutes.json"
    assert experiment.main(["--workdir", str(root), "--json", str(steps_json), "--steps", "3", *TINY]) == 0
    result = json.loads(steps_json.read_text())
    assert (result["mode"], result["steps"], result["step_timing"]) == ("steps", 3, {})
    _check_runs(result, {"gan-seed": 3, "diffusion-tiny": 3})
    diffusion = root / "phantom_diffusion-tiny_s0"
    assert json.loads((diffusion / "eval_ddim_50" / "eval.json").read_text())["settings"] == {
        "sampling.sampler": "ddim", "sampling.steps": 50, "sampling.eta": 0.0}
    assert json.loads((diffusion / "eval_ddim_50_eta1" / "eval.json").read_text())["settings"] == {
        "sampling.sampler": "ddim", "sampling.steps": 50, "sampling.eta": 1.0}

    # The same experiment folder: the feature extractor is shared, the runs are the budget's own.
    assert experiment.main(["--workdir", str(root), "--json", str(minutes_json), "--minutes", "0.001", *TINY]) == 0
    result = json.loads(minutes_json.read_text())
    assert (result["mode"], result["minutes"]) == ("minutes", 0.001)
    timing = result["step_timing"]
    for label in ("gan-seed", "diffusion-tiny"):
        assert timing[label]["step_ms"] > 0
        assert timing[label]["steps_for_budget"] == max(1, int(0.001 * 60_000 / timing[label]["step_ms"]))
    _check_runs(result, {label: timing[label]["steps_for_budget"] for label in timing})
    assert (root / "phantom_gan-seed_s0_0.001min").is_dir()
