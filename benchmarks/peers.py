"""jaxmed's train step of every benchmarked model against PyTorch (and, for dcgan128, TensorFlow), in one session.

    bash benchmarks/peers/setup.sh                    # once: the peers' own environment
    python benchmarks/peers.py --json peers.json      # every model, batch 32, each implementation once
    python benchmarks/peers.py --models resnet18,unet64 --rounds 3 --json peers.json   # interleaved rounds
    python benchmarks/peers.py --precision fp32,bf16 --json peers.json   # also every framework's mixed precision

For each model of `--models` (dcgan128, resnet18, seed_cnn, vae128, unet64: the models of
`jaxmed bench train-step`) this runs `jaxmed bench train-step --model MODEL` (this Python)
and the peers in the peers' environment: `benchmarks/peers/torch_peer.py --model MODEL`
eager and torch.compile, and for dcgan128 also `dcgan128_tf.py` tf.function and
tf.function(jit_compile=True). Each run is a fresh process; every round runs every model's
implementations one after another, their order rotated each round, so drifting load from
other processes hits all alike. All time the step with the same code
(`jaxmed/bench/stats.py`: first step, warm-up steps, then the median of per-step times).

Writes one JSON: per model its runs, each implementation's median, the best peer and jaxmed /
best peer (`jaxmed.bench.compare`) per precision, and prints the tables. Every peer reports
its parameter counts per network; one that differs from jaxmed's is an error (listed per model
and in "errors", and the exit status is 1), since the comparison is then not of the same
network. A peer variant that fails (e.g. torch.compile without a C++ compiler) is recorded
and skipped. `--precision bf16` runs jaxmed's `--precision bf16` against each framework's own
mixed precision (PyTorch autocast, Keras "mixed_bfloat16"); each precision is compared apart.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from jaxmed.bench import compare, host
from jaxmed.config import PRECISIONS

HERE = Path(__file__).resolve().parent
PEERS_PYTHON = HERE / "peers" / ".venv" / "bin" / "python"
TORCH_PEER = str(HERE / "peers" / "torch_peer.py")
TENSORFLOW_PEER = str(HERE / "peers" / "dcgan128_tf.py")
MODELS = ("dcgan128", "resnet18", "seed_cnn", "vae128", "unet64")

Command = Callable[[str], list[str]]  # the peers' interpreter -> the command line, before the shared flags


def _implementations(model: str) -> dict[str, Command]:
    """How each implementation of `model` runs; TensorFlow's peer is the DCGAN tutorial's step only."""
    commands: dict[str, Command] = {
        "jaxmed": lambda peers_python: [sys.executable, "-m", "jaxmed", "bench", "train-step", "--model", model],
        "pytorch/eager": lambda peers_python: [peers_python, TORCH_PEER, "--model", model, "--variant", "eager"],
        "pytorch/compile": lambda peers_python: [peers_python, TORCH_PEER, "--model", model, "--variant", "compile"],
    }
    if model == "dcgan128":
        commands["tensorflow/function"] = lambda peers_python: [peers_python, TENSORFLOW_PEER, "--variant",
                                                                "function"]
        commands["tensorflow/xla"] = lambda peers_python: [peers_python, TENSORFLOW_PEER, "--variant", "xla"]
    return commands


IMPLEMENTATIONS = {model: _implementations(model) for model in MODELS}
ALL_IMPLEMENTATIONS = tuple(dict.fromkeys(name for commands in IMPLEMENTATIONS.values() for name in commands))


def run_one(model: str, name: str, command: list[str], precision: str, args: argparse.Namespace) -> dict:
    """Runs one implementation in its own process; its JSON result, or {"error": ...}."""
    command = [*command, "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup",
               str(args.warmup), "--precision", precision, "--json"]
    print(f"== {model} {name} {precision}: {' '.join(command)} (load {host.load_average()})", file=sys.stderr,
          flush=True)
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    failure = {"model": model, "implementation": name, "precision": precision, "command": command}
    if result.returncode != 0:
        return {**failure, "error": f"exit status {result.returncode}"}
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        return {**failure, "error": "no JSON object on stdout"}


def parameter_errors(model: str, comparisons: dict[str, dict]) -> list[str]:
    """One line per peer whose parameter counts differ from jaxmed's, in any precision.

    Args:
      model: the benchmark model's name.
      comparisons: {precision: `jaxmed.bench.compare.compare` result}.
    """
    errors = []
    for precision, comparison in comparisons.items():
        implementations = comparison["implementations"]
        for peer, match in comparison["parameters_match"].items():
            if not match:
                errors.append(f"{model} {peer} ({precision}): parameters "
                              f"{compare.format_parameters(implementations[peer]['parameters'])} differ from jaxmed's "
                              f"{compare.format_parameters(implementations[compare.JAXMED]['parameters'])}")
    return errors


def model_report(model: str, outcomes: list[dict], precisions: list[str]) -> dict:
    """One model's part of the JSON: its comparison per precision, parameter errors, failures and runs.

    Args:
      model: the benchmark model's name.
      outcomes: this model's results and failures (those with an "error"), in the order they ran.
      precisions: the precisions that ran.
    """
    runs = [outcome for outcome in outcomes if "error" not in outcome]
    comparisons = {precision: compare.compare([run for run in runs if run["precision"] == precision])
                   for precision in precisions}
    return {"comparison": comparisons, "parameter_errors": parameter_errors(model, comparisons),
            "failures": [outcome for outcome in outcomes if "error" in outcome], "runs": runs}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after the first (default 3)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every implementation, interleaved")
    parser.add_argument("--only", default=",".join(ALL_IMPLEMENTATIONS),
                        help=f"comma-separated subset of {', '.join(ALL_IMPLEMENTATIONS)} (each model runs those it "
                             f"has; TensorFlow only dcgan128)")
    parser.add_argument("--precision", default="fp32",
                        help="comma-separated fp32 and/or bf16 (each framework's own mixed precision)")
    parser.add_argument("--peers-python", default=str(PEERS_PYTHON), help="the peers' interpreter (setup.sh)")
    parser.add_argument("--json", metavar="FILE", help="write everything here")
    args = parser.parse_args(argv)
    models = [model for model in args.models.split(",") if model]
    if not models or any(model not in MODELS for model in models):
        parser.error(f"--models takes a comma-separated subset of {', '.join(MODELS)}, got {args.models!r}")
    names = [name for name in args.only.split(",") if name]
    unknown = [name for name in names if name not in ALL_IMPLEMENTATIONS]
    if unknown:
        parser.error(f"unknown implementations {unknown}; choose from {', '.join(ALL_IMPLEMENTATIONS)}")
    precisions = [precision for precision in args.precision.split(",") if precision]
    if not precisions or any(precision not in PRECISIONS for precision in precisions):
        parser.error(f"--precision takes a comma-separated subset of {', '.join(PRECISIONS)}")
    if any(name != compare.JAXMED for name in names) and not Path(args.peers_python).exists():
        parser.error(f"{args.peers_python} does not exist: run `bash benchmarks/peers/setup.sh` first")

    load_before = host.load_average()
    outcomes: dict[str, list[dict]] = {model: [] for model in models}
    for round_index in range(args.rounds):
        for precision in precisions:
            for model in models:
                chosen = [name for name in names if name in IMPLEMENTATIONS[model]]
                shift = round_index % len(chosen) if chosen else 0
                for name in chosen[shift:] + chosen[:shift]:
                    outcome = run_one(model, name, IMPLEMENTATIONS[model][name](args.peers_python), precision, args)
                    outcome["round"] = round_index
                    outcomes[model].append(outcome)
    reports = {model: model_report(model, outcomes[model], precisions) for model in models}
    report = {
        "benchmark": "peers",
        "settings": {"models": models, "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
                     "rounds": args.rounds, "implementations": names, "precisions": precisions},
        "host": host.host_record(),
        "load_average": {"before": load_before, "after": host.load_average()},
        "models": reports,
        "errors": [error for model_entry in reports.values() for error in model_entry["parameter_errors"]],
    }
    for model, model_entry in reports.items():
        for precision, comparison in model_entry["comparison"].items():
            print(f"-- {model} {precision}\n{compare.format_comparison(comparison)}")
        for failure in model_entry["failures"]:
            print(f"{model} {failure['implementation']} {failure['precision']} failed: {failure['error']}")
    for error in report["errors"]:
        print(f"ERROR: {error}")
    print(f"load average (1, 5, 15 min) before {load_before}, after {report['load_average']['after']} "
          f"on {report['host']['usable_cores']} cores")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return report


if __name__ == "__main__":
    sys.exit(1 if main()["errors"] else 0)
