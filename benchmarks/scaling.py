"""Train-step throughput on 1, 2, 4 and 8 forced CPU devices, float32 and bfloat16 (issue 6).

    python benchmarks/scaling.py --json scaling.json --plot scaling.png
    python benchmarks/scaling.py --model seed_cnn --batch-size 64 --devices 1,2 --precisions fp32

Each (devices, precision) runs in its own fresh process with
XLA_FLAGS=--xla_force_host_platform_device_count=N (`jaxmed bench train-step --devices
1,2,4,8 --precision fp32,bf16` does the same). Forced CPU devices share the machine's
cores: on a 2-core CPU more devices cannot add compute, so this measures the cost of
the sharded program (collectives, smaller per-device work), not a speed-up; on a
multi-GPU host run `jaxmed bench train-step --devices N` with real devices instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxmed.bench.train_step import format_table, run_train_steps


def plot_scaling(report: dict, path: str) -> None:
    """images/s against device count, one line per precision."""
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for precision in dict.fromkeys(run["precision"] for run in report["runs"]):
        runs = sorted((run for run in report["runs"] if run["precision"] == precision), key=lambda r: r["devices"])
        ax.plot([r["devices"] for r in runs], [r["images_per_s"] for r in runs], marker="o", label=precision)
    first = report["runs"][0]
    ax.set_xscale("log", base=2)
    ax.set_xlabel("forced CPU devices")
    ax.set_ylabel("images/s (median step)")
    ax.set_title(f"{first['model']} batch {first['batch_size']}, {report['environment']['usable_cores']} cores",
                 fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dcgan128", choices=("dcgan128", "dcgan64", "seed_cnn", "resnet18"))
    parser.add_argument("--batch-size", type=int, default=32, help="divisible by every device count (default 32)")
    parser.add_argument("--devices", default="1,2,4,8")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run (default 10)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--plot", metavar="FILE", help="images/s against device count (PNG)")
    args = parser.parse_args(argv)
    report = run_train_steps(args.model, args.batch_size, devices=[int(d) for d in args.devices.split(",")],
                             precisions=args.precisions.split(","), steps=args.steps, warmup=args.warmup)
    if "runs" not in report:  # a single combination: same shape as a sweep
        report = {"benchmark": "train-step-sweep", "runs": [report], "environment": report["environment"]}
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        plot_scaling(report, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
