"""Where a benchmark's table and JSON go: the `--json` contract of every `jaxmed bench` command.

`--json` without a file: the JSON object alone on stdout (one line), the table on
stderr, so `jaxmed bench ... --json | jq` and scripts that parse stdout work.
`--json FILE`: the JSON written to FILE, the table on stdout. No `--json`: the table on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

STDOUT = "-"


def emit(report: dict, table: str, json_target: str | None) -> None:
    """Prints `table` and writes `report` as JSON to `json_target` ("-" for stdout, a path, or None)."""
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
