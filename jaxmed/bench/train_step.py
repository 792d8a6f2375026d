"""Throughput of a model's full jitted train step: images/s, step time, compile time, peak memory.

The step is the library's own (the family's `make_train_step`, `jaxmed.families`),
built from the public definitions and placed on a `data` mesh of `devices` devices (`jaxmed.training.sharding`)
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

import time
from collections.abc import Sequence

import jax
import numpy as np

from jaxmed import families
from jaxmed.bench import forced_devices, host
from jaxmed.bench.environment import environment_record
from jaxmed.bench.stats import step_fields, summarize_ms, time_samples
from jaxmed.config import RunConfig
from jaxmed.errors import UsageError
from jaxmed.families.base import Task
from jaxmed.families.base import conv_backend as resolved_conv_backend  # `conv_backend` is a setting here
from jaxmed.training import sharding

# Benchmark name -> config fields (the family is the one whose config takes the `model`).
# "dcgan128" is the seed paper's reference network (docs/design.md); "vae128" is the VAE
# built from its layers (`jaxmed.models.vae`); "unet64" the diffusion family's small U-Net;
# generators' sizes are part of their name.
MODELS = {"dcgan128": {"model": "dcgan", "image_size": 128}, "dcgan64": {"model": "dcgan", "image_size": 64},
          "vae128": {"model": "vae", "image_size": 128}, "unet64": {"model": "unet", "image_size": 64},
          "seed_cnn": {"model": "seed_cnn"}, "resnet18": {"model": "resnet18"}}
PRECISIONS = ("fp32", "bf16")
# The classifiers' image side unless --image-size says otherwise.
CLASSIFIER_IMAGE_SIZE = 128
NUM_CLASSES = 2


def benchmark_config(model: str, batch_size: int, precision: str = "fp32", image_size: int | None = None,
                     conv_backend: str = "auto") -> RunConfig:
    """The run config a benchmark model name stands for.

    Args:
      model: one of `MODELS`.
      batch_size: global batch size.
      precision: "fp32" or "bf16".
      image_size: classifiers only: input side (default 128); the generators' size is in their name.
      conv_backend: "auto", "xla" or "onednn" (see `jaxmed.nn.conv_backend`).

    Raises:
      UsageError: unknown model, a size for a generator, or an invalid setting.
    """
    if model not in MODELS:
        raise UsageError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    fields = MODELS[model]
    if "image_size" in fields:
        if image_size not in (None, fields["image_size"]):
            raise UsageError(f"{model} is {fields['image_size']} px by definition; --image-size applies to classifiers")
    else:
        fields = {**fields, "image_size": image_size or CLASSIFIER_IMAGE_SIZE}
    return families.for_model(fields["model"]).config_type(batch_size=batch_size, precision=precision,
                                                  conv_backend=conv_backend, **fields)


def _build(config: RunConfig, mesh, total_steps: int):
    """(jitted step, initial state, the batch, parameter counts) on `mesh`."""
    family = families.for_model(config.model)
    definition = family.definition(config, Task(class_names=tuple(f"class_{i}" for i in range(NUM_CLASSES)),
                                                total_steps=total_steps))
    # Initialised by one jitted program placed straight onto the mesh: run eagerly, the
    # initialisers compile dozens of small programs, which would dominate short benchmarks.
    state = jax.jit(lambda key: family.init_state(config, definition, key),
                    out_shardings=sharding.replicated(mesh))(jax.random.key(config.seed))
    # The batch is made on the host (numpy) and placed once: no device programs to compile for it.
    batch = jax.device_put(family.benchmark_batch(config, np.random.default_rng(config.seed)),
                           sharding.batch_sharding(mesh))
    parameters = family.parameter_counts(state)
    parameters["total"] = sum(parameters.values())
    return family.make_train_step(definition, mesh), state, batch, parameters


def _device_peak_mb(devices) -> float | None:
    peaks = [(device.memory_stats() or {}).get("peak_bytes_in_use") for device in devices]
    peaks = [peak for peak in peaks if peak is not None]
    return max(peaks) / 1024**2 if peaks else None


def benchmark_train_step(model: str, batch_size: int, *, steps: int = 20, warmup: int = 3, precision: str = "fp32",
                         devices: int = 1, image_size: int | None = None, conv_backend: str = "auto",
                         config: RunConfig | None = None) -> dict:
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

    step, state, batch, parameters = _build(config, mesh, total_steps=1 + warmup + steps)
    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start

    current = {"state": state}

    def run_one_step():
        current["state"], current["metrics"] = compiled(current["state"], batch)
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
        "conv_backend": resolved_conv_backend(config),
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
