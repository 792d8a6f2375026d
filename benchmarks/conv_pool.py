"""The conv/pool core benchmark with its JSON and plot in one command, or the plot from saved JSON.

    python benchmarks/conv_pool.py --json conv_pool.json --plot conv_pool.png   # defaults: batch 32, float32
    python benchmarks/conv_pool.py --batch-sizes 1,32,128 --dtypes float32,bfloat16 --json full.json --plot full.png
    python benchmarks/conv_pool.py --from-json conv_pool.json --plot conv_pool.png   # re-plot only

Every flag but --from-json is `jaxmed bench conv-pool`'s (see its --help).
"""

from __future__ import annotations

import argparse
import json
import sys

from jaxmed.bench.plot import plot_roofline_fractions
from jaxmed.cli import main as jaxmed_main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--from-json")
    parser.add_argument("--plot")
    known, rest = parser.parse_known_args(argv)
    if known.from_json:
        if not known.plot or rest:
            sys.exit("--from-json takes only --plot FILE")
        with open(known.from_json) as f:
            print(f"wrote {plot_roofline_fractions(json.load(f), known.plot)}")
        return 0
    return jaxmed_main(["bench", "conv-pool", *argv])


if __name__ == "__main__":
    sys.exit(main())
