#!/usr/bin/env bash
# Sets up .venv (if needed) and runs a CPU-sized version of the brain-tumor DCGAN
# experiment on the embedded phantom data. Run again: it resumes and finishes at once.
# Workdir: $JAXMED_DEMO_WORKDIR (default: runs/demo).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_venv.sh"
cd "$ROOT"
WORKDIR="${JAXMED_DEMO_WORKDIR:-runs/demo}"
exec "$VENV/bin/python" experiments/brain_tumor_gan.py --workdir "$WORKDIR" --cpu-demo
