"""jaxmed / best peer: medians over runs, the fastest peer variant, parameter parity; and the peers' constants."""

import importlib.util
import py_compile
from pathlib import Path

import pytest

from jaxmed.bench import compare
from jaxmed.config import PRECISIONS
from jaxmed.families.gan import GanConfig

PEERS = Path(__file__).resolve().parents[2] / "benchmarks" / "peers"


def _run(step_ms, framework=None, variant=None, generator=10, discriminator=5):
    run = {"step_ms": step_ms, "batch_size": 32, "images_per_s": 32 / (step_ms / 1e3),
           "parameters": {"generator": generator, "discriminator": discriminator}}
    if framework:
        run.update(framework=framework, variant=variant)
    return run


def test_ratio_uses_the_fastest_peer_variant_and_medians_over_runs():
    runs = [_run(100), _run(300), _run(200),  # jaxmed: median 200 ms
            _run(400, "pytorch", "eager"), _run(250, "pytorch", "compile"),
            _run(500, "tensorflow", "function", discriminator=6)]
    result = compare.compare(runs)
    assert result["implementations"]["jaxmed"]["step_ms"] == 200
    assert result["implementations"]["jaxmed"]["runs"] == 3
    assert result["best_peer"] == "pytorch/compile"
    assert result["ratio_jaxmed_over_best_peer"] == pytest.approx(250 / 200)
    assert result["parameters_match"] == {"pytorch/eager": True, "pytorch/compile": True,
                                          "tensorflow/function": False}
    assert "DIFFERENT" in compare.format_comparison(result)


def test_no_peer_means_no_ratio():
    result = compare.compare([_run(100)])
    assert result["best_peer"] is None and result["ratio_jaxmed_over_best_peer"] is None


def test_peer_scripts_compile_and_share_jaxmeds_settings():
    for script in PEERS.glob("*.py"):
        py_compile.compile(str(script), doraise=True)
    spec = importlib.util.spec_from_file_location("peers_common", PEERS / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)  # stdlib only: loads jaxmed's timing files by path
    config = GanConfig()
    assert (common.IMAGE_SIZE, common.CHANNELS, common.LATENT_DIM) == (config.image_size, config.channels,
                                                                        config.latent_dim)
    assert (common.LEARNING_RATE, common.BETA1, common.BETA2) == (config.optimizer.lr, config.optimizer.b1,
                                                                  config.optimizer.b2)
    assert common.stats.summarize_ms([0.001])["median_ms"] == pytest.approx(1.0)


def _peers_runner():
    spec = importlib.util.spec_from_file_location("peers_runner", PEERS.parent / "peers.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    return runner


def test_each_precision_is_compared_apart(monkeypatch):
    runner = _peers_runner()
    step_ms = {("jaxmed", "fp32"): 300, ("pytorch/eager", "fp32"): 360, ("jaxmed", "bf16"): 200,
               ("pytorch/eager", "bf16"): 100}

    def fake_run(name, command, precision, args):
        assert command[-1] in ("eager", "dcgan128")  # the implementation's own command, flags added by run_one
        framework, _, variant = name.partition("/")
        run = _run(step_ms[name, precision], *((framework, variant) if variant else ()))
        return {**run, "precision": precision}

    monkeypatch.setattr(runner, "run_one", fake_run)
    monkeypatch.setattr(runner.Path, "exists", lambda self: True)
    report = runner.main(["--only", "jaxmed,pytorch/eager", "--precision", "fp32,bf16"])

    assert report["comparison"]["fp32"]["ratio_jaxmed_over_best_peer"] == pytest.approx(360 / 300)
    assert report["comparison"]["bf16"]["ratio_jaxmed_over_best_peer"] == pytest.approx(100 / 200)
    with pytest.raises(SystemExit):
        runner.main(["--only", "jaxmed", "--precision", "fp16"])


def test_peers_take_the_precisions_jaxmed_has():
    spec = importlib.util.spec_from_file_location("peers_common", PEERS / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    assert tuple(common.PRECISIONS) == tuple(_peers_runner().PRECISIONS) == tuple(PRECISIONS)
