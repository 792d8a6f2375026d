"""train-step: the result's fields on a tiny GAN, and how the step builder is given the mesh."""

import math

import jax
import pytest

from jaxmed.bench import train_step
from jaxmed.bench.compare import dcgan_parameter_counts
from jaxmed.errors import UsageError
from jaxmed.families.gan import FAMILY as GAN
from jaxmed.families.gan import GanConfig
from jaxmed.families.vae import VaeConfig
from jaxmed.training import sharding


@pytest.fixture(scope="module")
def tiny_gan_result():
    return train_step.benchmark_train_step("dcgan-tiny", 8, steps=3, warmup=1, config=GanConfig.tiny())


@pytest.mark.slow
def test_fields_are_sane_and_step_counts_right(tiny_gan_result):
    result = tiny_gan_result
    assert result["final_step"] == 1 + 1 + 3  # first step, warm-up, timed steps
    assert result["steps"] == 3 and result["batch_size"] == 8 and result["devices"] == 1
    for key in ("images_per_s", "step_ms", "compile_s", "first_step_ms", "peak_memory_mb"):
        assert math.isfinite(result[key]) and result[key] > 0, key
    assert result["step_ms_min"] <= result["step_ms_p10"] <= result["step_ms"] <= result["step_ms_p90"] \
        <= result["step_ms_max"]
    assert result["images_per_s"] == pytest.approx(8 / (result["step_ms"] / 1e3))
    assert set(result["final_metrics"]) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert all(math.isfinite(value) for value in result["final_metrics"].values())
    assert result["environment"]["device_count"] >= 1 and result["environment"]["versions"]["jax"] == jax.__version__
    assert "dcgan-tiny" in train_step.format_table(result)
    # "auto" on this one-CPU-device process resolves to oneDNN, and the record says so.
    assert result["conv_backend"] == result["environment"]["conv_backend"] == "onednn"


@pytest.mark.slow
def test_parameter_counts_are_the_models(tiny_gan_result):
    config = GanConfig.tiny()
    expected = dcgan_parameter_counts(config.image_size, config.channels, config.latent_dim)
    assert {k: tiny_gan_result["parameters"][k] for k in ("generator", "discriminator")} == expected


@pytest.mark.slow
def test_step_builder_gets_the_mesh(monkeypatch):
    # Every family's make_train_step takes the mesh: the benchmark builds its step with the run's mesh.
    seen = []
    monkeypatch.setattr(GAN, "make_train_step", lambda definition, mesh=None: seen.append((definition, mesh)) or "step")
    mesh = sharding.make_mesh(1)
    step, state, batch, parameters = train_step._build(GanConfig.tiny(), mesh, total_steps=1)
    assert step == "step" and len(seen) == 1 and seen[0][1] is mesh
    assert seen[0][0].latent_dim == GanConfig.tiny().latent_dim
    assert set(batch) == {"image"} and batch["image"].shape == (8, 32, 32, 1)
    assert batch["image"].sharding == sharding.batch_sharding(mesh)
    assert int(state.step) == 0 and parameters["total"] == parameters["generator"] + parameters["discriminator"]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"model": "wavenet", "batch_size": 8}, "unknown model"),
    ({"model": "dcgan128", "batch_size": 8, "image_size": 64}, "128 px by definition"),
    ({"model": "seed_cnn", "batch_size": 8, "precision": "fp16"}, "precision"),
    ({"model": "seed_cnn", "batch_size": 8, "conv_backend": "cudnn"}, "conv_backend"),
])
def test_bad_settings_are_usage_errors(kwargs, fragment):
    with pytest.raises(UsageError, match=fragment):
        train_step.benchmark_train_step(**kwargs)


def test_batch_must_divide_over_the_devices():
    with pytest.raises(UsageError, match="not divisible"):
        train_step.run_train_steps("seed_cnn", 6, devices=(4,))


@pytest.mark.slow
def test_vae_step_is_benchmarked():
    config = VaeConfig.tiny()
    result = train_step.benchmark_train_step("vae-tiny", 8, steps=2, warmup=0, config=config)
    assert result["final_step"] == 1 + 2 and math.isfinite(result["images_per_s"])
    assert set(result["final_metrics"]) == {"loss", "reconstruction", "kl", "kl_weight"}
    assert all(math.isfinite(value) for value in result["final_metrics"].values())
    definition_counts = result["parameters"]
    assert definition_counts["total"] == definition_counts["encoder"] + definition_counts["decoder"]
    generator_count = dcgan_parameter_counts(config.image_size, config.channels, config.latent_dim)["generator"]
    assert definition_counts["decoder"] == generator_count


def test_vae128_is_a_known_model():
    config = train_step.benchmark_config("vae128", 32)
    assert isinstance(config, VaeConfig) and config.image_size == 128 and config.batch_size == 32
