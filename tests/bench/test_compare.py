"""jaxmed / best peer: medians over runs, the fastest peer variant, parameter parity (benchmarks/peers.py's core)."""

import pytest

from jaxmed.bench import compare


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


def test_parameters_are_compared_network_by_network_whatever_the_family():
    ours = {"step_ms": 100, "batch_size": 32, "images_per_s": 320, "parameters": {"unet": 7, "total": 7}}
    same = {**ours, "framework": "pytorch", "variant": "eager"}
    other = {**same, "variant": "compile", "parameters": {"unet": 8, "total": 8}}
    renamed = {**same, "framework": "tensorflow", "parameters": {"denoiser": 7, "total": 7}}
    result = compare.compare([ours, same, other, renamed])
    assert result["parameters_match"] == {"pytorch/eager": True, "pytorch/compile": False,
                                          "tensorflow/eager": False}
    assert "unet 8 (DIFFERENT from jaxmed)" in compare.format_comparison(result)
