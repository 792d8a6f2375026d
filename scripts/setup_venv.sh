#!/usr/bin/env bash
# Creates .venv with Python 3.11 and installs jaxmed with its test extra.
# Idempotent: reinstalls only when pyproject.toml changed since the last install.
# Sourced by demo.sh and test.sh; leaves VENV set to the environment's path.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "jaxmed needs Python 3.11; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.jaxmed-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[test]"
  echo "$WANT" > "$STAMP"
fi
# Compile the oneDNN convolution kernels now rather than in the first run (cached; a no-op
# when up to date). Where they cannot be built, jaxmed says why and uses XLA's convolutions.
"$VENV/bin/python" -m jaxmed.nn.onednn || true
