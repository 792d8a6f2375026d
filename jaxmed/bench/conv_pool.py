"""The convolution and pooling core: every layer shape of the models, forward and backward, against rooflines.

For each distinct layer shape (`jaxmed.bench.layers.model_layers`), batch size and
dtype, times the jitted forward pass, the input gradient and (for convolutions) the
weight gradient, each as its own program: `jax.vjp` of the layer applied to a random
cotangent, so only the gradient's own operations run (the forward result is not
needed by a linear layer's gradient and XLA removes it; max pooling's gradient reads
the input, not the output). Speeds are reported as

- GFLOP/s for convolutions (costs in `jaxmed.bench.layers`) and their fraction of a
  float32 matmul measured in the same run (`jaxmed.bench.roofline`). The cost is the direct
  convolution's arithmetic, so a kernel that needs fewer multiplications (jaxmed's Winograd
  kernels for the 4x4 stride-2 and 3x3 stride-1 layers, `jaxmed/nn/onednn/winograd.h` and
  `winograd_3x3.h`) shows an effective
  rate, above the matmul's where it saves more than it loses;
- GB/s for pooling and its fraction of the memory-copy bandwidth measured in the same run.

Convolutions are timed with XLA's kernels and, on the CPU, with oneDNN's
(`jaxmed.nn.onednn`, what the models use there by default). The generator's
up-sampling layers are timed as jaxmed computes them (`jaxmed.nn.upsample_conv`,
its XLA sub-pixel form and its oneDNN form) and, with `reference=True`, as
`lax.conv_transpose` (what `nnx.ConvTranspose` runs), whose backward pass takes
seconds on XLA:CPU; max pooling as
`jaxmed.nn.max_pool` (its XLA form and, on the CPU, its kernel) and, with `reference=True`,
as `nnx.max_pool` (`reduce_window`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from jaxmed.bench import host, roofline
from jaxmed.bench.environment import environment_record
from jaxmed.bench.layers import (AVG_POOL, CONV, CONV_KINDS, MAX_POOL, MODELS, POOL_KINDS, UPSAMPLE_CONV, LayerShape,
                                 merge_across_models, model_layers)
from jaxmed.bench.timing import time_jitted
from jaxmed.errors import UsageError
from jaxmed.nn import max_pool, onednn, upsample_conv

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
DTYPES = ("float32", "bfloat16")
# The diffusion U-Net ("unet") is not among them: at 128 px it has 24 distinct layer shapes and
# about 3x the convolution work of these four together, so it is timed only when asked for.
DEFAULT_MODELS = ("dcgan", "vae", "seed_cnn", "resnet18")
# What each of jaxmed's own formulations replaces, timed beside it with reference=True.
REFERENCE_IMPLS = ("lax.conv_transpose", "nnx.max_pool")
REFERENCE_IMPL = REFERENCE_IMPLS[0]


def _conv(shape: LayerShape) -> Callable:
    def conv(x, kernel):
        return lax.conv_general_dilated(x, kernel, shape.strides, shape.padding, dimension_numbers=DIMENSION_NUMBERS)
    return conv


def _conv_transpose(x, kernel):
    # What nnx.ConvTranspose(kernel_size=(4, 4), strides=(2, 2), padding="SAME") computes.
    return lax.conv_transpose(x, kernel, strides=(2, 2), padding="SAME", dimension_numbers=DIMENSION_NUMBERS)


def _pool(shape: LayerShape) -> Callable:
    pool = nnx.max_pool if shape.kind == MAX_POOL else nnx.avg_pool
    return functools.partial(pool, window_shape=shape.kernel, strides=shape.strides, padding=shape.padding)


def _onednn_conv(shape: LayerShape) -> Callable:
    def conv(x, kernel):
        return onednn.conv2d(x, kernel, shape.strides, shape.padding)
    return conv


def implementations(shape: LayerShape, reference: bool = True) -> dict[str, Callable]:
    """{implementation name: fn(x, kernel) (convolutions) or fn(x) (pooling)} to time for a shape.

    Convolutions are timed on both backends of `jaxmed.nn.conv_backend` where oneDNN runs
    ("onednn.conv2d", "jaxmed.upsample_conv/onednn"), else on XLA only.
    """
    with_onednn = jax.default_backend() == "cpu" and onednn.unavailable_reason() is None
    if shape.kind == CONV:
        impls = {"lax.conv": _conv(shape)}
        if with_onednn:
            impls["onednn.conv2d"] = _onednn_conv(shape)
        return impls
    if shape.kind == UPSAMPLE_CONV:
        impls = {"jaxmed.upsample_conv": upsample_conv}
        if with_onednn:
            impls["jaxmed.upsample_conv/onednn"] = functools.partial(upsample_conv, method="onednn")
        if reference:
            impls[REFERENCE_IMPL] = _conv_transpose
        return impls
    if shape.kind == MAX_POOL:
        pool = functools.partial(max_pool, window=shape.kernel, strides=shape.strides, padding=shape.padding)
        impls = {"jaxmed.max_pool": pool}
        if with_onednn:
            impls["jaxmed.max_pool/kernel"] = functools.partial(pool, use_kernel=True)
        if reference:
            impls["nnx.max_pool"] = _pool(shape)
        return impls
    if shape.kind == AVG_POOL:
        return {"nnx.avg_pool": _pool(shape)}
    raise ValueError(f"unknown layer kind {shape.kind!r}")


def direction_programs(shape: LayerShape, fn: Callable) -> dict[str, Callable]:
    """Jitted programs per direction: "forward", "input_grad" and, for convolutions, "weight_grad"."""
    if shape.kind in POOL_KINDS:
        return {
            "forward": jax.jit(fn),
            "input_grad": jax.jit(lambda x, cotangent: jax.vjp(fn, x)[1](cotangent)[0]),
        }
    return {
        "forward": jax.jit(fn),
        "input_grad": jax.jit(lambda x, kernel, cotangent: jax.vjp(lambda v: fn(v, kernel), x)[1](cotangent)[0]),
        "weight_grad": jax.jit(lambda x, kernel, cotangent: jax.vjp(lambda k: fn(x, k), kernel)[1](cotangent)[0]),
    }


def _inputs(shape: LayerShape, batch: int, dtype: str, seed: int = 0) -> dict[str, jax.Array]:
    keys = jax.random.split(jax.random.key(seed), 3)
    arrays = {"x": jax.random.normal(keys[0], shape.input_shape(batch), jnp.float32).astype(dtype),
              "cotangent": jax.random.normal(keys[1], shape.output_shape(batch), jnp.float32).astype(dtype)}
    if shape.kernel_shape is not None:
        arrays["kernel"] = (0.02 * jax.random.normal(keys[2], shape.kernel_shape, jnp.float32)).astype(dtype)
    return arrays


def time_layer(shape: LayerShape, fn: Callable, batch: int, dtype: str, *, warmup: int = 1, repeats: int = 5,
               min_sample_s: float = 0.02) -> dict[str, dict]:
    """Timing of each direction of one implementation of one layer shape ({direction: timing in ms})."""
    arrays = _inputs(shape, batch, dtype)
    timings = {}
    for direction, program in direction_programs(shape, fn).items():
        if shape.kind in POOL_KINDS:
            args = (arrays["x"],) if direction == "forward" else (arrays["x"], arrays["cotangent"])
        else:
            args = (arrays["x"], arrays["kernel"]) if direction == "forward" else (
                arrays["x"], arrays["kernel"], arrays["cotangent"])
        timings[direction] = time_jitted(program, *args, warmup=warmup, repeats=repeats, min_sample_s=min_sample_s)
    return timings


def _with_speeds(shape: LayerShape, batch: int, dtype: str, timings: dict[str, dict], ceilings: dict) -> dict:
    """Adds GFLOP/s or GB/s and the fraction of the ceiling to each direction's timing."""
    directions = {}
    for direction, timing in timings.items():
        seconds = timing["median_ms"] / 1e3
        if shape.kind in POOL_KINDS:
            gigabytes = shape.bytes_moved(batch, jnp.dtype(dtype).itemsize, direction) / 1e9
            speed = {"gb": gigabytes, "gbs": gigabytes / seconds}
            speed["fraction"] = speed["gbs"] / ceilings["copy_gbs"]
        else:
            gflop = shape.flop(batch) / 1e9
            speed = {"gflop": gflop, "gflops": gflop / seconds}
            speed["fraction"] = speed["gflops"] / ceilings["matmul_gflops"]["float32"]
            if dtype in ceilings["matmul_gflops"]:
                speed["fraction_of_dtype_matmul"] = speed["gflops"] / ceilings["matmul_gflops"][dtype]
        directions[direction] = {**timing, **speed}
    return directions


def measure_ceilings(dtypes: Sequence[str], *, repeats: int = 5, matmul_size: int = roofline.MATMUL_SIZE,
                     copy_megabytes: int = roofline.COPY_MEGABYTES) -> dict:
    """The float32 (and each benchmarked dtype's) matmul and the copy bandwidth, measured now."""
    matmuls = {dtype: roofline.matmul_roofline(dtype, matmul_size, repeats=repeats)
               for dtype in dict.fromkeys(("float32", *dtypes))}
    return {"matmul": matmuls, "copy": roofline.copy_bandwidth(copy_megabytes, repeats=repeats)}


def _best_ceilings(*measurements: dict) -> dict:
    """The higher of repeated ceiling measurements (so fractions are never flattered by a slow moment)."""
    return {
        "matmul_gflops": {dtype: max(m["matmul"][dtype]["gflops"] for m in measurements)
                          for dtype in measurements[0]["matmul"]},
        "copy_gbs": max(m["copy"]["gbs"] for m in measurements),
    }


def run_conv_pool(models: Sequence[str] = DEFAULT_MODELS, batch_sizes: Sequence[int] = (32,),
                  dtypes: Sequence[str] = ("float32",), *, image_size: int = 128, resnet_width: int = 64,
                  reference: bool = True, kinds: Sequence[str] | None = None, warmup: int = 1, repeats: int = 5,
                  min_sample_s: float = 0.02, matmul_size: int = roofline.MATMUL_SIZE,
                  copy_megabytes: int = roofline.COPY_MEGABYTES,
                  progress: Callable[[str], None] | None = None) -> dict:
    """Times every layer shape of `models` at each batch size and dtype; returns the JSON-able report.

    Args:
      models: of "dcgan", "vae", "seed_cnn", "resnet18". A shape two models share is timed once, under
        the first, and its row names the other's layers too (`layers.merge_across_models`).
      batch_sizes: batch sizes to time.
      dtypes: of "float32", "bfloat16" (inputs and weights in that dtype).
      image_size: image side of every model (the DCGAN reference and the classifiers: 128).
      resnet_width: ResNet-18 base width.
      reference: also time `lax.conv_transpose` for the up-sampling layers.
      kinds: only these layer kinds (e.g. ("conv",)); None for all.
      warmup, repeats, min_sample_s: the timing method (`jaxmed.bench.stats.time_samples`).
      matmul_size, copy_megabytes: sizes of the ceiling measurements (`jaxmed.bench.roofline`);
        the defaults are what the ceilings mean; smaller ones only serve tests.
      progress: called with one line per timed row (e.g. print to stderr).

    Returns:
      {"benchmark": "conv-pool", "environment", "load_average", "settings", "ceilings", "wall_s", "rows"};
      see README (Performance).

    Raises:
      UsageError: an unknown model, dtype or layer kind.
    """
    for name, values, allowed in (("model", models, MODELS), ("dtype", dtypes, DTYPES),
                                  ("layer kind", kinds or (), (*CONV_KINDS, *POOL_KINDS))):
        for value in values:
            if value not in allowed:
                raise UsageError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    layers = merge_across_models([layer for model in models
                                  for layer in model_layers(model, image_size, resnet_width=resnet_width)
                                  if kinds is None or layer.shape.kind in kinds])
    start = time.perf_counter()
    load_before = host.load_average()
    ceiling_sizes = {"repeats": repeats, "matmul_size": matmul_size, "copy_megabytes": copy_megabytes}
    before = measure_ceilings(dtypes, **ceiling_sizes)
    timed = []
    for batch in batch_sizes:
        for dtype in dtypes:
            for layer in layers:
                for impl, fn in implementations(layer.shape, reference).items():
                    timings = time_layer(layer.shape, fn, batch, dtype, warmup=warmup, repeats=repeats,
                                         min_sample_s=min_sample_s)
                    timed.append((layer, impl, batch, dtype, timings))
                    if progress:
                        summary = " ".join(f"{d} {t['median_ms']:.2f}" for d, t in timings.items())
                        progress(f"{layer.model:>9s} {layer.shape.describe():<36s} {impl:<22s} b{batch} {dtype}: "
                                 f"{summary} ms")
    after = measure_ceilings(dtypes, **ceiling_sizes)
    ceilings = _best_ceilings(before, after)
    rows = []
    for layer, impl, batch, dtype, timings in timed:
        shape = layer.shape
        rows.append({
            "model": layer.model, "layer": shape.describe(), "names": list(layer.names), "kind": shape.kind,
            "impl": impl, "reference": impl in REFERENCE_IMPLS, "batch": batch, "dtype": dtype,
            "input_shape": list(shape.input_shape(batch)), "output_shape": list(shape.output_shape(batch)),
            "kernel_shape": list(shape.kernel_shape) if shape.kernel_shape else None,
            "strides": list(shape.strides), "padding": [list(pair) for pair in shape.padding],
            "ceiling": "copy_gbs" if shape.kind in POOL_KINDS else "matmul_gflops.float32",
            **_with_speeds(shape, batch, dtype, timings, ceilings),
        })
    return {
        "benchmark": "conv-pool",
        "environment": environment_record(),
        "load_average": {"before": load_before, "after": host.load_average()},
        "settings": {"models": list(models), "image_size": image_size, "resnet_width": resnet_width,
                     "batch_sizes": list(batch_sizes), "dtypes": list(dtypes), "reference": reference,
                     "kinds": list(kinds) if kinds else None, "warmup": warmup, "repeats": repeats,
                     "min_sample_s": min_sample_s,
                     "method": "median over `repeats` samples after compiling and `warmup` untimed calls; "
                               "each direction is its own jitted program (jax.vjp applied to a random cotangent)"},
        "ceilings": {**ceilings, "before": before, "after": after},
        "wall_s": time.perf_counter() - start,
        "rows": rows,
    }


def format_table(report: dict) -> str:
    """The report as a fixed-width text table: ms, GFLOP/s or GB/s, and fraction of the ceiling per direction."""
    ceilings = report["ceilings"]
    matmuls = ", ".join(f"{dtype} {gflops:.0f} GFLOP/s" for dtype, gflops in ceilings["matmul_gflops"].items())
    lines = [f"ceilings: matmul {matmuls}; memory copy {ceilings['copy_gbs']:.1f} GB/s "
             f"(fraction = of the float32 matmul for convolutions, of the copy for pooling)"]
    header = (f"{'model':<9s} {'layer':<36s} {'implementation':<22s} {'batch':>5s} {'dtype':<8s} "
              f"{'fwd ms':>8s} {'speed':>7s} {'frac':>5s} {'dx ms':>8s} {'speed':>7s} {'frac':>5s} "
              f"{'dW ms':>8s} {'speed':>7s} {'frac':>5s}")
    lines += [header, "-" * len(header)]
    for row in report["rows"]:
        unit = "gbs" if row["kind"] in POOL_KINDS else "gflops"
        cells = []
        for direction in ("forward", "input_grad", "weight_grad"):
            if direction in row:
                d = row[direction]
                cells.append(f"{d['median_ms']:8.2f} {d[unit]:7.1f} {d['fraction']:5.2f}")
            else:
                cells.append(f"{'':8s} {'':7s} {'':5s}")
        lines.append(f"{row['model']:<9s} {row['layer']:<36s} {row['impl']:<22s} {row['batch']:>5d} "
                     f"{row['dtype']:<8s} " + " ".join(cells))
    lines.append("speed: GFLOP/s (convolutions: the direct algorithm's count, an effective rate for Winograd kernels) "
                 "or GB/s (pooling); dx = input gradient, dW = weight gradient")
    return "\n".join(lines)
