"""Where a report's text and JSON go: the `--json` contract of `jaxmed bench` and `jaxmed data inspect`.

`--json` without a file: the JSON object alone on stdout (one line), the text on
stderr, so `jaxmed ... --json | jq` and scripts that parse stdout work.
`--json FILE`: the JSON written to FILE, the text on stdout. No `--json`: the text on stdout.
Standard library only, so the benchmark peers (no JAX) load this file directly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# The `--json` value that means "the JSON on stdout".
STDOUT = "-"


def emit(report: dict, table: str, json_target: str | None) -> None:
    """Prints `table` and writes `report` as JSON to `json_target` ("-" for stdout, a path, or None).

    Args:
        report: JSON-able report.
        table: Its text form for people, without a final newline.
        json_target: `STDOUT`, a file path (folders are created), or None for text only.
    """
    if json_target == STDOUT:
        print(table, file=sys.stderr, flush=True)
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()
        return
    print(table, flush=True)
    if json_target:
        path = Path(json_target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {path}", file=sys.stderr)
