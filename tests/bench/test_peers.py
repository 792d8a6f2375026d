"""benchmarks/peers.py and the peers' settings, without the peers' frameworks: the model table, the JSON it
assembles, parameter-count errors, and the constants the PyTorch peers take from jaxmed's configs."""

import ast
import importlib.util
import py_compile
from pathlib import Path

import numpy as np
import pytest

from jaxmed.bench import train_step
from jaxmed.config import PRECISIONS
from jaxmed.data.augment import AugmentConfig
from jaxmed.families.classifier import ClassifierConfig
from jaxmed.families.diffusion import DiffusionConfig
from jaxmed.families.gan import GanConfig
from jaxmed.families.vae import VaeConfig
from jaxmed.models.classifier import SEED_CNN_FEATURES, SEED_CNN_HIDDEN
from jaxmed.models.unet import UNET_SIZES

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
PEERS = BENCHMARKS / "peers"
PARAMETERS = {"dcgan128": {"generator": 20, "discriminator": 10}, "resnet18": {"classifier": 30},
              "seed_cnn": {"classifier": 40}, "vae128": {"encoder": 5, "decoder": 6}, "unet64": {"unet": 7}}


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runner():
    return _load(BENCHMARKS / "peers.py", "peers_runner")


@pytest.fixture(scope="module")
def common():
    return _load(PEERS / "common.py", "peers_common")  # stdlib only: loads jaxmed's timing files by path


def _fake_runs(monkeypatch, runner, step_ms=None, parameters=PARAMETERS, fail=()):
    """Replaces the subprocesses by results made up from the implementation's name; returns the call log."""
    calls = []

    def fake_run(model, name, command, precision, args):
        calls.append((model, name, precision))
        assert "--model" in command or name.startswith("tensorflow")  # each model's own command line
        if (model, name) in fail:
            return {"model": model, "implementation": name, "precision": precision, "command": command,
                    "error": "exit status 1"}
        framework, _, variant = name.partition("/")
        milliseconds = (step_ms or {}).get((name, precision), 100.0)
        counts = parameters[model] if framework == "jaxmed" else PARAMETERS[model]
        run = {"model": model, "precision": precision, "step_ms": milliseconds, "batch_size": 32,
               "images_per_s": 32 / (milliseconds / 1e3), "parameters": {**counts, "total": sum(counts.values())}}
        return {**run, "framework": framework, "variant": variant} if variant else run

    monkeypatch.setattr(runner, "run_one", fake_run)
    monkeypatch.setattr(runner.Path, "exists", lambda self: True)
    return calls


def test_peer_scripts_compile():
    scripts = sorted(PEERS.glob("*.py"))
    assert {"torch_peer.py", "torch_models.py", "torch_steps.py", "dcgan128_tf.py"} <= {s.name for s in scripts}
    for script in scripts:
        py_compile.compile(str(script), doraise=True)


def _registry_keys(script: str, name: str) -> set[str]:
    """The keys of the dict literal `name: ... = {...}` in a peers script (read from its source: no torch here)."""
    source = ast.parse((PEERS / script).read_text())
    registry = next(node.value for node in ast.walk(source)
                    if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == name)
    return {key.value for key in registry.keys}


def test_every_benchmark_model_has_a_pytorch_peer_and_only_dcgan128_a_tensorflow_one(runner):
    assert set(runner.MODELS) <= set(train_step.MODELS)
    assert _registry_keys("torch_steps.py", "STEPS") == set(runner.MODELS)
    for model, commands in runner.IMPLEMENTATIONS.items():
        assert {"jaxmed", "pytorch/eager", "pytorch/compile"} <= set(commands)
        assert any(name.startswith("tensorflow") for name in commands) == (model == "dcgan128")
        assert commands["jaxmed"]("peers-python")[-2:] == ["--model", model]
        assert commands["pytorch/eager"]("peers-python")[:1] == ["peers-python"]
        assert ["--model", model] == commands["pytorch/compile"]("peers-python")[2:4]


def test_peers_state_the_configs_jaxmed_benchmarks(common, runner):
    assert tuple(common.PRECISIONS) == tuple(runner.PRECISIONS) == tuple(PRECISIONS)
    for model, size in common.IMAGE_SIZES.items():
        config = train_step.benchmark_config(model, 32)
        assert (config.image_size, config.channels, config.accumulate_steps) == (size, common.CHANNELS, 1), model
    gan = GanConfig()
    assert (common.IMAGE_SIZE, common.LATENT_DIM) == (gan.image_size, gan.latent_dim)
    assert (common.LEARNING_RATE, common.BETA1, common.BETA2) == (gan.optimizer.lr, gan.optimizer.b1, gan.optimizer.b2)

    classifier = ClassifierConfig()
    assert (classifier.dropout_rate, classifier.width, classifier.augment) == (common.CLASSIFIER_DROPOUT,
                                                                               common.RESNET18_WIDTH, True)
    assert (tuple(common.SEED_CNN_FEATURES), common.SEED_CNN_HIDDEN) == (SEED_CNN_FEATURES, SEED_CNN_HIDDEN)
    optimizer = classifier.optimizer
    assert common.CLASSIFIER_OPTIMIZER == {"lr": optimizer.lr, "b1": optimizer.b1, "b2": optimizer.b2,
                                           "weight_decay": optimizer.weight_decay,
                                           "warmup_fraction": optimizer.warmup_fraction}
    assert (optimizer.schedule, optimizer.clip_norm, train_step.NUM_CLASSES) == ("cosine", 0.0, common.NUM_CLASSES)
    augment = AugmentConfig()
    assert {name: getattr(augment, name) for name in common.AUGMENT} == common.AUGMENT
    assert (augment.horizontal_flip, augment.vertical_flip, augment.brightness, augment.contrast) == (True, False, 0, 0)

    vae = VaeConfig()
    assert (vae.latent_dim, vae.kl_weight, vae.kl_warmup_steps) == (common.VAE_LATENT_DIM, common.VAE_KL_WEIGHT, 0)
    assert common.VAE_OPTIMIZER == {"lr": vae.optimizer.lr, "b1": vae.optimizer.b1, "b2": vae.optimizer.b2}
    assert (vae.optimizer.weight_decay, vae.optimizer.schedule) == (0.0, "constant")

    diffusion = DiffusionConfig()
    assert common.UNET == UNET_SIZES[diffusion.unet_size] and diffusion.unet_width == 0
    assert (diffusion.prediction, diffusion.conditional) == ("v", False)  # what the peer implements
    assert (diffusion.timesteps, diffusion.min_snr_gamma, diffusion.ema_decay) == (
        common.DIFFUSION_TIMESTEPS, common.DIFFUSION_MIN_SNR_GAMMA, common.DIFFUSION_EMA_DECAY)
    optimizer = diffusion.optimizer
    assert common.DIFFUSION_OPTIMIZER == {"lr": optimizer.lr, "b1": optimizer.b1, "b2": optimizer.b2,
                                          "warmup_fraction": optimizer.warmup_fraction,
                                          "clip_norm": optimizer.clip_norm}
    assert (optimizer.weight_decay, optimizer.schedule) == (0.0, "cosine")


def test_one_json_per_session_with_each_model_and_precision_compared_apart(monkeypatch, runner):
    step_ms = {("jaxmed", "fp32"): 300, ("pytorch/eager", "fp32"): 360, ("jaxmed", "bf16"): 200,
               ("pytorch/eager", "bf16"): 100}
    _fake_runs(monkeypatch, runner, step_ms)
    report = runner.main(["--models", "resnet18,unet64", "--only", "jaxmed,pytorch/eager",
                          "--precision", "fp32,bf16"])

    assert list(report["models"]) == ["resnet18", "unet64"] and report["errors"] == []
    for entry in report["models"].values():
        assert entry["comparison"]["fp32"]["ratio_jaxmed_over_best_peer"] == pytest.approx(360 / 300)
        assert entry["comparison"]["bf16"]["ratio_jaxmed_over_best_peer"] == pytest.approx(100 / 200)
        assert len(entry["runs"]) == 4 and entry["failures"] == [] and entry["parameter_errors"] == []
    assert report["settings"]["models"] == ["resnet18", "unet64"]
    with pytest.raises(SystemExit):
        runner.main(["--only", "jaxmed", "--precision", "fp16"])
    with pytest.raises(SystemExit):
        runner.main(["--models", "resnet50"])


def test_rounds_interleave_every_models_implementations_in_rotated_order(monkeypatch, runner):
    calls = _fake_runs(monkeypatch, runner)
    runner.main(["--models", "dcgan128,seed_cnn", "--only", "jaxmed,pytorch/eager,tensorflow/function",
                 "--rounds", "2"])
    assert calls == [("dcgan128", "jaxmed", "fp32"), ("dcgan128", "pytorch/eager", "fp32"),
                     ("dcgan128", "tensorflow/function", "fp32"),
                     ("seed_cnn", "jaxmed", "fp32"), ("seed_cnn", "pytorch/eager", "fp32"),
                     ("dcgan128", "pytorch/eager", "fp32"), ("dcgan128", "tensorflow/function", "fp32"),
                     ("dcgan128", "jaxmed", "fp32"),
                     ("seed_cnn", "pytorch/eager", "fp32"), ("seed_cnn", "jaxmed", "fp32")]


def test_a_peer_with_other_parameter_counts_is_an_error_and_a_failed_run_is_kept_apart(monkeypatch, runner):
    different = {**PARAMETERS, "vae128": {"encoder": 5, "decoder": 9}}
    _fake_runs(monkeypatch, runner, parameters=different, fail={("seed_cnn", "pytorch/compile")})
    report = runner.main(["--models", "vae128,seed_cnn", "--only", "jaxmed,pytorch/eager,pytorch/compile"])

    vae = report["models"]["vae128"]
    assert vae["comparison"]["fp32"]["parameters_match"] == {"pytorch/eager": False, "pytorch/compile": False}
    assert len(vae["parameter_errors"]) == 2 and report["errors"] == vae["parameter_errors"]
    assert "vae128 pytorch/eager (fp32)" in report["errors"][0] and "decoder 9" in report["errors"][0]
    seed = report["models"]["seed_cnn"]
    assert seed["parameter_errors"] == [] and [f["implementation"] for f in seed["failures"]] == ["pytorch/compile"]
    assert set(seed["comparison"]["fp32"]["implementations"]) == {"jaxmed", "pytorch/eager"}


def test_every_network_of_the_peers_has_a_jaxmed_reference(runner):
    reference = _load(PEERS / "jaxmed_reference.py", "peers_jaxmed_reference")
    networks = reference._networks(np.random.default_rng(0))
    assert set(networks) == _registry_keys("check_networks.py", "NETWORKS")
    assert {name.split(".")[0] for name in networks} == set(runner.MODELS)
