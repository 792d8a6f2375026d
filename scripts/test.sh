#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the whole test suite (what CI runs). Extra arguments go to pytest:
#   ./scripts/test.sh -m "not slow"      the fast tier (a few minutes on a 2-core CPU)
#   ./scripts/test.sh -m multiprocess    only the tests that start JAX subprocesses
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_venv.sh"
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"
