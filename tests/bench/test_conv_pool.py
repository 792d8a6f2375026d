"""conv-pool: every layer of a tiny model gets a row per implementation, with sane, consistent fields."""

import math

import pytest

from jaxmed.bench import conv_pool, layers
from jaxmed.bench.plot import plot_roofline_fractions
from jaxmed.errors import UsageError

FAST = {"batch_sizes": (1,), "dtypes": ("float32",), "image_size": 32, "warmup": 0, "repeats": 1,
        "min_sample_s": 0.0, "matmul_size": 64, "copy_megabytes": 1}


@pytest.fixture(scope="module")
def dcgan_report():
    # Without the lax.conv_transpose reference rows: they run the same code, and compiling
    # their slow gradients would double this file's time.
    return conv_pool.run_conv_pool(("dcgan",), reference=False, **FAST)


def _positive(value):
    return isinstance(value, float) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_rows_cover_every_layer_and_implementation(dcgan_report):
    expected = {(layer.shape.describe(), impl) for layer in layers.model_layers("dcgan", 32)
                for impl in conv_pool.implementations(layer.shape, reference=False)}
    rows = dcgan_report["rows"]
    assert {(row["layer"], row["impl"]) for row in rows} == expected
    # Two up-sampling layers (generator), two convolutions (discriminator), each on XLA and oneDNN.
    assert len(rows) == len(expected) == 8


def test_up_sampling_layers_also_time_the_transposed_convolution_reference():
    up = next(layer.shape for layer in layers.model_layers("dcgan", 32) if layer.shape.kind == layers.UPSAMPLE_CONV)
    ours = ["jaxmed.upsample_conv", "jaxmed.upsample_conv/onednn"]
    assert list(conv_pool.implementations(up, reference=True)) == ours + [conv_pool.REFERENCE_IMPL]
    assert list(conv_pool.implementations(up, reference=False)) == ours


def test_convolutions_are_timed_on_both_backends():
    conv = next(layer.shape for layer in layers.model_layers("dcgan", 32) if layer.shape.kind == layers.CONV)
    assert list(conv_pool.implementations(conv)) == ["lax.conv", "onednn.conv2d"]


@pytest.mark.slow
def test_convolution_rows_are_sane_and_consistent(dcgan_report):
    ceiling = dcgan_report["ceilings"]["matmul_gflops"]["float32"]
    assert _positive(ceiling) and _positive(dcgan_report["ceilings"]["copy_gbs"])
    for row in dcgan_report["rows"]:
        shape = next(layer.shape for layer in layers.model_layers("dcgan", 32)
                     if layer.shape.describe() == row["layer"])
        for direction in ("forward", "input_grad", "weight_grad"):
            entry = row[direction]
            assert entry["samples"] == 1 and _positive(entry["median_ms"])
            assert entry["gflop"] == pytest.approx(shape.flop(1) / 1e9)
            assert entry["gflops"] == pytest.approx(entry["gflop"] / (entry["median_ms"] / 1e3))
            assert entry["fraction"] == pytest.approx(entry["gflops"] / ceiling)
        assert row["output_shape"] == list(shape.output_shape(1))


@pytest.mark.slow
def test_pooling_rows_use_bandwidth():
    report = conv_pool.run_conv_pool(("resnet18",), kinds=("max_pool",), resnet_width=8, **{**FAST, "image_size": 64})
    # the stem's 3x3/2 pool: jaxmed's two forms and the reference
    assert {row["impl"] for row in report["rows"]} == {"jaxmed.max_pool", "jaxmed.max_pool/kernel", "nnx.max_pool"}
    for row in report["rows"]:
        assert set(row) >= {"forward", "input_grad"} and "weight_grad" not in row
        assert row["ceiling"] == "copy_gbs"
        entry = row["input_grad"]
        assert entry["gbs"] == pytest.approx(entry["gb"] / (entry["median_ms"] / 1e3))
        assert entry["fraction"] == pytest.approx(entry["gbs"] / report["ceilings"]["copy_gbs"])
    assert "nnx.max_pool" in conv_pool.format_table(report)


@pytest.mark.slow
def test_plot_is_written(dcgan_report, tmp_path):
    path = plot_roofline_fractions(dcgan_report, tmp_path / "plots" / "roofline.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argument, value", [("models", ("wavenet",)), ("dtypes", ("float16",)), ("kinds", ("dense",))])
def test_unknown_names_are_usage_errors(argument, value):
    with pytest.raises(UsageError, match=value[0]):
        conv_pool.run_conv_pool(**{**FAST, argument: value})
