"""Benchmark `jaxmed.nn.upsample_conv` against `lax.conv_transpose` on the dcgan128 generator layers.

For each 4x4 stride-2 "SAME" up-sampling layer of the 128 px DCGAN generator, times
the jitted forward pass and the jitted gradient w.r.t. input and kernel of
sum(y ** 2) (forward recomputed inside, as in a training step), reporting medians
over `--repeats` runs after warm-up. Implementations are timed interleaved, so load
from other processes affects all of them alike.

    python benchmarks/upsample_conv.py --batch-size 32 --repeats 5 --json upsample.json
    python benchmarks/upsample_conv.py --methods auto,matmul,conv3x3   # also each formulation
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxmed.bench.environment import environment_record
from jaxmed.bench.stats import summarize_ms
from jaxmed.nn import upsample_conv

# (input height = width, C_in, C_out) of the dcgan128 generator's up-sampling layers.
DCGAN128_LAYERS = ((8, 256, 128), (16, 128, 64), (32, 64, 32), (64, 32, 1))
METHODS = ("auto", "matmul", "conv3x3")


def conv_transpose(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The reference: what `nnx.ConvTranspose(kernel_size=(4, 4), strides=(2, 2), padding="SAME")` computes."""
    return lax.conv_transpose(x, kernel, strides=(2, 2), padding="SAME",
                              dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _forward_and_backward(fn: Callable[[jax.Array, jax.Array], jax.Array]) -> tuple[Callable, Callable]:
    """Jitted forward and jitted d/d(x, kernel) of sum(fn(x, kernel) ** 2)."""
    def loss(x, kernel):
        return jnp.sum(jnp.square(fn(x, kernel)))
    return jax.jit(fn), jax.jit(jax.grad(loss, argnums=(0, 1)))


def _time_s(fn: Callable, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def benchmark_layer(size: int, c_in: int, c_out: int, batch_size: int, repeats: int, warmup: int,
                    methods: tuple[str, ...], seed: int = 0) -> dict:
    """Median forward / backward milliseconds of every implementation on one layer.

    Returns:
      {"shape": ..., "impls": {name: {"forward_ms", "backward_ms", "forward_min_ms", "backward_min_ms",
       "forward", "backward"}}, "max_abs_error": {name: |y - y_ref| max}}; "forward" and "backward"
      hold the full spread (`jaxmed.bench.stats.summarize_ms`).
    """
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((batch_size, size, size, c_in)), jnp.float32)
    kernel = jnp.asarray(rng.normal(0.0, 0.02, (4, 4, c_in, c_out)), jnp.float32)
    impls = {"conv_transpose": conv_transpose}
    impls.update({f"upsample_conv[{m}]": functools.partial(upsample_conv, method=m) for m in methods})
    compiled = {name: _forward_and_backward(fn) for name, fn in impls.items()}

    reference = compiled["conv_transpose"][0](x, kernel)
    errors = {}
    for name, (forward, backward) in compiled.items():
        errors[name] = float(jnp.max(jnp.abs(forward(x, kernel) - reference)))  # also compiles forward
        for _ in range(warmup + 1):  # the first call compiles
            jax.block_until_ready(forward(x, kernel))
            jax.block_until_ready(backward(x, kernel))

    times = {name: {"forward": [], "backward": []} for name in compiled}
    for _ in range(repeats):
        for name, (forward, backward) in compiled.items():
            times[name]["forward"].append(_time_s(forward, x, kernel))
            times[name]["backward"].append(_time_s(backward, x, kernel))
    impls = {}
    for name, t in times.items():
        forward, backward = summarize_ms(t["forward"]), summarize_ms(t["backward"])
        impls[name] = {"forward_ms": forward["median_ms"], "backward_ms": backward["median_ms"],
                       "forward_min_ms": forward["min_ms"], "backward_min_ms": backward["min_ms"],
                       "forward": forward, "backward": backward}
    return {
        "shape": {"batch": batch_size, "height": size, "width": size, "c_in": c_in, "c_out": c_out},
        "impls": impls,
        "max_abs_error": errors,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per implementation (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs after compilation")
    parser.add_argument("--methods", default="auto",
                        help=f"comma-separated upsample_conv methods to time, of {', '.join(METHODS)}")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args(argv)
    methods = tuple(m for m in args.methods.split(",") if m)
    if not methods or any(m not in METHODS for m in methods):
        parser.error(f"--methods must list some of {METHODS}")

    device = jax.devices()[0]
    print(f"jax {jax.__version__} on {device.platform} ({device.device_kind}), batch {args.batch_size}, "
          f"median of {args.repeats}; backward = jax.grad w.r.t. (x, kernel) of sum(y**2), forward included")
    header = (f"{'layer':>26s} {'implementation':>24s} {'fwd ms':>9s} {'bwd ms':>9s} "
              f"{'fwd speedup':>11s} {'bwd speedup':>11s} {'max|err|':>9s}")
    print(header)
    print("-" * len(header))
    layers = []
    for size, c_in, c_out in DCGAN128_LAYERS:
        result = benchmark_layer(size, c_in, c_out, args.batch_size, args.repeats, args.warmup, methods)
        ref = result["impls"]["conv_transpose"]
        result["speedup"] = {}
        for name, t in result["impls"].items():
            speedup = {"forward": ref["forward_ms"] / t["forward_ms"], "backward": ref["backward_ms"] / t["backward_ms"]}
            if name != "conv_transpose":
                result["speedup"][name] = speedup
            layer = f"{size}->{2 * size}px {c_in}->{c_out}ch"
            print(f"{layer:>26s} {name:>24s} {t['forward_ms']:9.1f} {t['backward_ms']:9.1f} "
                  f"{speedup['forward']:10.2f}x {speedup['backward']:10.2f}x {result['max_abs_error'][name]:9.1e}",
                  flush=True)
        layers.append(result)

    totals = {name: {key: sum(layer["impls"][name][key] for layer in layers) for key in ("forward_ms", "backward_ms")}
              for name in layers[0]["impls"]}
    for name, t in totals.items():
        print(f"{'all four layers':>26s} {name:>24s} {t['forward_ms']:9.1f} {t['backward_ms']:9.1f} "
              f"{totals['conv_transpose']['forward_ms'] / t['forward_ms']:10.2f}x "
              f"{totals['conv_transpose']['backward_ms'] / t['backward_ms']:10.2f}x")
    report = {
        "device": {"platform": device.platform, "kind": device.device_kind, "count": jax.device_count()},
        "jax_version": jax.__version__,
        "environment": environment_record(),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "backward_definition": "jax.grad w.r.t. (x, kernel) of sum(y**2), jitted; includes the forward pass",
        "layers": layers,
        "totals_ms": totals,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
