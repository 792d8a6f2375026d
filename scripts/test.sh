#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the test suite. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_venv.sh"
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"
