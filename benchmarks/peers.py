"""jaxmed's dcgan128 train step against PyTorch and TensorFlow, in one session, same method.

    bash benchmarks/peers/setup.sh                    # once: the peers' own environment
    python benchmarks/peers.py --json peers.json      # batch 32, each implementation once
    python benchmarks/peers.py --rounds 3 --json peers.json   # interleaved rounds, medians over rounds
    python benchmarks/peers.py --precision fp32,bf16 --json peers.json   # also every framework's mixed precision

Runs `jaxmed bench train-step --model dcgan128` (this Python) and the peers
(`benchmarks/peers/dcgan128_torch.py` eager and torch.compile, `dcgan128_tf.py`
tf.function and tf.function(jit_compile=True), in the peers' environment) one after
another, each in a fresh process, rotating the order every round so drifting load from
other processes hits all alike. All time the step with the same code
(`jaxmed/bench/stats.py`: first step, warm-up steps, then the median of per-step
times). Writes one JSON with every run, each implementation's median, the best peer
and jaxmed / best peer (`jaxmed.bench.compare`), and prints the table. A peer variant
that fails (e.g. torch.compile without a C++ compiler) is recorded and skipped.
`--precision bf16` runs jaxmed's `--precision bf16` against each framework's own mixed
precision (PyTorch autocast, Keras "mixed_bfloat16"); each precision is compared apart.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from jaxmed.bench import compare, host
from jaxmed.config import PRECISIONS

HERE = Path(__file__).resolve().parent
PEERS_PYTHON = HERE / "peers" / ".venv" / "bin" / "python"
IMPLEMENTATIONS = {
    "jaxmed": lambda peers_python: [sys.executable, "-m", "jaxmed", "bench", "train-step", "--model", "dcgan128"],
    "pytorch/eager": lambda peers_python: [peers_python, str(HERE / "peers" / "dcgan128_torch.py"), "--variant",
                                           "eager"],
    "pytorch/compile": lambda peers_python: [peers_python, str(HERE / "peers" / "dcgan128_torch.py"), "--variant",
                                             "compile"],
    "tensorflow/function": lambda peers_python: [peers_python, str(HERE / "peers" / "dcgan128_tf.py"), "--variant",
                                                 "function"],
    "tensorflow/xla": lambda peers_python: [peers_python, str(HERE / "peers" / "dcgan128_tf.py"), "--variant", "xla"],
}


def run_one(name: str, command: list[str], precision: str, args: argparse.Namespace) -> dict:
    """Runs one implementation in its own process; its JSON result, or {"error": ...}."""
    command = [*command, "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup",
               str(args.warmup), "--precision", precision, "--json"]
    print(f"== {name} {precision}: {' '.join(command)} (load {host.load_average()})", file=sys.stderr, flush=True)
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    failure = {"implementation": name, "precision": precision, "command": command}
    if result.returncode != 0:
        return {**failure, "error": f"exit status {result.returncode}"}
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        return {**failure, "error": "no JSON object on stdout"}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after the first (default 3)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every implementation, interleaved")
    parser.add_argument("--only", default=",".join(IMPLEMENTATIONS),
                        help=f"comma-separated subset of {', '.join(IMPLEMENTATIONS)}")
    parser.add_argument("--precision", default="fp32",
                        help="comma-separated fp32 and/or bf16 (each framework's own mixed precision)")
    parser.add_argument("--peers-python", default=str(PEERS_PYTHON), help="the peers' interpreter (setup.sh)")
    parser.add_argument("--json", metavar="FILE", help="write everything here")
    args = parser.parse_args(argv)
    names = [name for name in args.only.split(",") if name]
    unknown = [name for name in names if name not in IMPLEMENTATIONS]
    if unknown:
        parser.error(f"unknown implementations {unknown}; choose from {', '.join(IMPLEMENTATIONS)}")
    precisions = [precision for precision in args.precision.split(",") if precision]
    if not precisions or any(precision not in PRECISIONS for precision in precisions):
        parser.error(f"--precision takes a comma-separated subset of {', '.join(PRECISIONS)}")
    if any(name != "jaxmed" for name in names) and not Path(args.peers_python).exists():
        parser.error(f"{args.peers_python} does not exist: run `bash benchmarks/peers/setup.sh` first")

    load_before = host.load_average()
    runs, failures = [], []
    for round_index in range(args.rounds):
        order = names[round_index % len(names):] + names[:round_index % len(names)]
        for precision in precisions:
            for name in order:
                outcome = run_one(name, IMPLEMENTATIONS[name](args.peers_python), precision, args)
                outcome["round"] = round_index
                (failures if "error" in outcome else runs).append(outcome)
    comparisons = {precision: compare.compare([run for run in runs if run["precision"] == precision])
                   for precision in precisions}
    report = {
        "benchmark": "peers",
        "model": "dcgan128",
        "settings": {"batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
                     "rounds": args.rounds, "implementations": names, "precisions": precisions},
        "host": host.host_record(),
        "load_average": {"before": load_before, "after": host.load_average()},
        "comparison": comparisons,
        "failures": failures,
        "runs": runs,
    }
    for precision, comparison in comparisons.items():
        print(f"-- {precision}\n{compare.format_comparison(comparison)}")
    for failure in failures:
        print(f"{failure['implementation']} failed: {failure['error']}")
    print(f"load average (1, 5, 15 min) before {load_before}, after {report['load_average']['after']} "
          f"on {report['host']['usable_cores']} cores")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
