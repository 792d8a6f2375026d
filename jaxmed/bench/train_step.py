"""Throughput of a model's full jitted train step: images/s, step time, compile time, peak memory.

The step is the library's own (`jaxmed.train.gan_steps.make_gan_train_step`,
`jaxmed.train.vae_steps.make_vae_train_step`,
`jaxmed.train.classifier_steps.make_classifier_train_step`), built from the public
definitions and placed on a `data` mesh of `devices` devices (`jaxmed.train.sharding`)
exactly as training does: state replicated, batch split by rows. One batch of random
images stays on the device for every step, so the numbers are the step's own, without
the input pipeline.

Method: compile ahead of time (`compile_s` = trace + lower + XLA compile), run the
first step and `warmup` more untimed, then time `steps` steps one by one, each ended by
`jax.block_until_ready` (`jaxmed.bench.stats`). `step_ms` is their median and
`images_per_s` = batch size / median step time.

Peak memory: on a device with `memory_stats()` (GPU, TPU) the largest
`peak_bytes_in_use` over the mesh's devices; on CPU, where JAX has no allocator
statistics, the process's peak resident set size (`getrusage`) minus its resident size
just before the state was built, so it includes XLA's compilation as well as the
state, the batch and the step's temporaries.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np

from jaxmed.bench import forced_devices, host
from jaxmed.bench.environment import environment_record
from jaxmed.bench.stats import step_fields, summarize_ms, time_samples
from jaxmed.errors import UsageError
from jaxmed.train import sharding
from jaxmed.train.classifier_steps import classifier_definition, init_classifier_state, make_classifier_train_step
from jaxmed.train.config import ClassifierConfig, GanConfig, VaeConfig, model_conv_backend
from jaxmed.train.gan_state import gan_definition, init_gan_state
from jaxmed.train.gan_steps import make_gan_train_step
from jaxmed.train.vae_state import init_vae_state, vae_definition
from jaxmed.train.vae_steps import make_vae_train_step

# Model name -> (family, default image size). "dcgan128" is DESIGN.md's reference network;
# "vae128" is the VAE built from its layers (`jaxmed.models.vae`).
MODELS = {"dcgan128": ("gan", 128), "dcgan64": ("gan", 64), "vae128": ("vae", 128), "seed_cnn": ("classifier", 128),
          "resnet18": ("classifier", 128)}
GENERATIVE_CONFIGS = {"gan": GanConfig, "vae": VaeConfig}
PRECISIONS = ("fp32", "bf16")
NUM_CLASSES = 2


def benchmark_config(model: str, batch_size: int, precision: str = "fp32", image_size: int | None = None,
                     conv_backend: str = "auto") -> GanConfig | VaeConfig | ClassifierConfig:
    """The run config a benchmark model name stands for.

    Args:
      model: one of `MODELS`.
      batch_size: global batch size.
      precision: "fp32" or "bf16".
      image_size: classifiers only: input side (default 128); the DCGANs' size is in their name.
      conv_backend: "auto", "xla" or "onednn" (see `jaxmed.nn.conv_backend`).

    Raises:
      UsageError: unknown model, a size for a DCGAN, or an invalid setting.
    """
    if model not in MODELS:
        raise UsageError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    family, default_size = MODELS[model]
    if family in GENERATIVE_CONFIGS:
        if image_size not in (None, default_size):
            raise UsageError(f"{model} is {default_size} px by definition; --image-size applies to classifiers")
        return GENERATIVE_CONFIGS[family](image_size=default_size, batch_size=batch_size, precision=precision,
                                          conv_backend=conv_backend)
    return ClassifierConfig(model=model, image_size=image_size or default_size, batch_size=batch_size,
                            precision=precision, conv_backend=conv_backend)


def _make_step(make_step: Callable, definition, mesh) -> Callable:
    """The library's jitted step, given the mesh when the step builder takes one."""
    positional = [p for p in inspect.signature(make_step).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return make_step(definition, mesh) if len(positional) >= 2 else make_step(definition)


def _parameter_count(params) -> int:
    return int(sum(leaf.size for leaf in jax.tree.leaves(params)))


def _build(config: GanConfig | VaeConfig | ClassifierConfig, mesh, total_steps: int):
    """(jitted step, initial state, the step's other arguments, parameter counts) on `mesh`."""
    key = jax.random.key(config.seed)
    replicated, rows = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    # The batch is made on the host (numpy) and placed once: no device programs to compile for it.
    host_rng = np.random.default_rng(config.seed)
    images = host_rng.uniform(-1.0, 1.0, (config.batch_size, config.image_size, config.image_size, config.channels))
    images = images.astype(np.float32)
    # Initialised by one jitted program placed straight onto the mesh: run eagerly, the
    # initialisers compile dozens of small programs, which would dominate short benchmarks.
    if isinstance(config, GanConfig):
        definition = gan_definition(config)
        state = jax.jit(lambda k: init_gan_state(config, definition, k), out_shardings=replicated)(key)
        step = _make_step(make_gan_train_step, definition, mesh)
        arguments = (jax.device_put(images, rows),)
        parameters = {"generator": _parameter_count(state.generator_params),
                      "discriminator": _parameter_count(state.discriminator_params)}
    elif isinstance(config, VaeConfig):
        definition = vae_definition(config)
        state = jax.jit(lambda k: init_vae_state(config, definition, k), out_shardings=replicated)(key)
        step = _make_step(make_vae_train_step, definition, mesh)
        arguments = (jax.device_put(images, rows),)
        parameters = {"encoder": _parameter_count(state.params["encoder"]),
                      "decoder": _parameter_count(state.params["decoder"])}
    else:
        definition = classifier_definition(config, NUM_CLASSES, total_steps)
        state = jax.jit(lambda k: init_classifier_state(config, definition, k), out_shardings=replicated)(key)
        step = _make_step(make_classifier_train_step, definition, mesh)
        labels = host_rng.integers(0, NUM_CLASSES, config.batch_size).astype(np.int32)
        arguments = (jax.device_put(images, rows), jax.device_put(labels, rows),
                     jax.device_put(np.ones((NUM_CLASSES,), np.float32), replicated))
        parameters = {"classifier": _parameter_count(state.params)}
    parameters["total"] = sum(parameters.values())
    return step, state, arguments, parameters


def _device_peak_mb(devices) -> float | None:
    peaks = [(device.memory_stats() or {}).get("peak_bytes_in_use") for device in devices]
    peaks = [peak for peak in peaks if peak is not None]
    return max(peaks) / 1024**2 if peaks else None


def benchmark_train_step(model: str, batch_size: int, *, steps: int = 20, warmup: int = 3, precision: str = "fp32",
                         devices: int = 1, image_size: int | None = None, conv_backend: str = "auto",
                         config: GanConfig | VaeConfig | ClassifierConfig | None = None) -> dict:
    """Times `steps` train steps of `model`; returns the JSON-able result.

    Args:
      model: one of `MODELS` (a label only, when `config` is given).
      batch_size: global batch size (split over `devices`).
      steps: timed steps.
      warmup: untimed steps after the first.
      precision: "fp32" or "bf16".
      devices: devices on the data mesh (must be visible; see `jaxmed.bench.forced_devices`).
      image_size: classifiers only (see `benchmark_config`).
      conv_backend: "auto", "xla" or "onednn"; the result records what it resolved to.
      config: use this run config instead of the one `model` stands for (tests use tiny ones).

    Returns:
      {"benchmark": "train-step", "model", ..., "images_per_s", "step_ms", "step_ms_p10", "step_ms_p90",
       "compile_s", "peak_memory_mb", ...}; see README (Performance).

    Raises:
      UsageError: invalid model, precision, device count or convolution backend.
    """
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if steps < 1 or warmup < 0:
        raise UsageError(f"need steps >= 1 and warmup >= 0, got {steps} and {warmup}")
    config = config or benchmark_config(model, batch_size, precision, image_size, conv_backend)
    mesh = sharding.make_mesh(devices)
    sharding.check_batch_size(config.batch_size, mesh)
    load_before = host.load_average()
    rss_before = host.current_rss_mb()

    step, state, arguments, parameters = _build(config, mesh, total_steps=1 + warmup + steps)
    start = time.perf_counter()
    compiled = step.lower(state, *arguments).compile() if hasattr(step, "lower") else step
    compile_s = time.perf_counter() - start

    current = {"state": state}

    def run_one_step():
        current["state"], current["metrics"] = compiled(current["state"], *arguments)
        return current["state"], current["metrics"]

    samples, first_s = time_samples(run_one_step, jax.block_until_ready, warmup=warmup, repeats=steps)
    metrics = {name: float(value) for name, value in jax.device_get(current["metrics"]).items()}
    timing = summarize_ms(samples)

    device_peak = _device_peak_mb(mesh.devices.flat)
    if device_peak is not None:
        peak_mb, source = device_peak, "device memory_stats peak_bytes_in_use (max over the mesh's devices)"
    else:
        peak_mb = host.peak_rss_mb() - rss_before if rss_before is not None else None
        source = "process peak RSS (getrusage) minus RSS before building the state; includes XLA compilation"
    return {
        "benchmark": "train-step",
        "model": model,
        "image_size": config.image_size,
        "channels": config.channels,
        "batch_size": config.batch_size,
        "precision": config.precision,
        "conv_backend": model_conv_backend(config),
        "devices": devices,
        "steps": steps,
        "warmup": warmup,
        "final_step": int(current["state"].step),
        **step_fields(config.batch_size, timing),
        "compile_s": compile_s,
        "first_step_ms": 1e3 * first_s,
        "peak_memory_mb": peak_mb,
        "peak_memory_source": source,
        "parameters": parameters,
        "final_metrics": metrics,  # of the last timed step, e.g. to see that the losses are finite
        "method": "median of per-step times (each ended by block_until_ready) after the first step and `warmup` "
                  "more; compile_s = trace + lower + compile, ahead of time; data: one random batch on device",
        "load_average": {"before": load_before, "after": host.load_average()},
        "environment": environment_record(),
    }


def format_row(result: dict) -> str:
    """One line per result: model, batch, precision, conv backend, devices, images/s, step ms (p10-p90), compile s,
    memory."""
    memory = f"{result['peak_memory_mb']:.0f}" if result.get("peak_memory_mb") is not None else "?"
    return (f"{result['model']:<10s} {result['batch_size']:>5d} {result['precision']:<5s} "
            f"{result.get('conv_backend', '?'):<7s} {result['devices']:>7d} "
            f"{result['images_per_s']:9.1f} {result['step_ms']:9.1f} "
            f"{result['step_ms_p10']:7.1f}-{result['step_ms_p90']:<7.1f} {result['compile_s']:8.1f} {memory:>8s}")


TABLE_HEADER = (f"{'model':<10s} {'batch':>5s} {'prec':<5s} {'conv':<7s} {'devices':>7s} {'images/s':>9s} "
                f"{'step ms':>9s} {'p10-p90 ms':<15s} {'compile s':>8s} {'peak MB':>8s}")


def run_train_steps(model: str, batch_size: int, *, devices: Sequence[int] = (1,),
                    precisions: Sequence[str] = ("fp32",), conv_backends: Sequence[str] = ("auto",), steps: int = 20,
                    warmup: int = 3, image_size: int | None = None) -> dict:
    """One train-step benchmark, or a sweep over device counts, precisions and convolution backends.

    A single (devices, precision, backend) runs in this process when the devices are visible,
    else in a child process on forced CPU devices (`jaxmed.bench.forced_devices`). A
    sweep runs every combination in its own fresh child process, so each starts alike.

    Returns:
      `benchmark_train_step`'s result for a single run; for a sweep,
      {"benchmark": "train-step-sweep", "runs": [result, ...], "environment"}.
    """
    for precision in precisions:
        if precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    for backend in conv_backends:  # validate before starting children
        benchmark_config(model, batch_size, precisions[0], image_size, backend)
    combinations = [(count, precision, backend) for count in devices for precision in precisions
                    for backend in conv_backends]
    for count, _, _ in combinations:
        if batch_size % count:
            raise UsageError(f"batch size {batch_size} is not divisible by {count} devices")

    def argv(count: int, precision: str, backend: str) -> list[str]:
        size = [] if image_size is None else ["--image-size", str(image_size)]
        return ["bench", "train-step", "--model", model, "--batch-size", str(batch_size), "--steps", str(steps),
                "--warmup", str(warmup), "--precision", precision, "--devices", str(count), "--conv-backend",
                backend, *size]

    if len(combinations) == 1:
        count, precision, backend = combinations[0]
        if forced_devices.needs_child(count):
            return forced_devices.run_child(argv(count, precision, backend), count)
        return benchmark_train_step(model, batch_size, steps=steps, warmup=warmup, precision=precision,
                                    devices=count, image_size=image_size, conv_backend=backend)
    runs = [forced_devices.run_child(argv(*combination), combination[0]) for combination in combinations]
    return {"benchmark": "train-step-sweep", "runs": runs, "environment": environment_record()}


def format_table(report: dict) -> str:
    """A single result or a sweep as a text table."""
    runs = report["runs"] if "runs" in report else [report]
    loads = [run["load_average"]["before"] for run in runs if run.get("load_average")]
    footer = f"load average (1, 5, 15 min) before each run: {loads}; peak MB: {runs[0]['peak_memory_source']}"
    return "\n".join([TABLE_HEADER, "-" * len(TABLE_HEADER), *(format_row(run) for run in runs), footer])
