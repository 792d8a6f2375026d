#!/usr/bin/env bash
# Creates the peers' environment (PyTorch and TensorFlow, CPU builds) for benchmarks/peers.py.
#
#   bash benchmarks/peers/setup.sh            # -> benchmarks/peers/.venv (git-ignored)
#   PEERS_VENV=/elsewhere bash benchmarks/peers/setup.sh
#
# Kept apart from the project's .venv so the peers' own numpy / protobuf / ml_dtypes pins
# never touch jaxmed's. Idempotent: a second run only checks that both frameworks import.
# torch is pinned: a plain `pip install torch` on Linux fetches the multi-GB CUDA build.
# Where pip sees a local CPU wheel (`torch-2.13.0+cpu`, e.g. via PIP_FIND_LINKS) it takes
# that, since 2.13.0+cpu satisfies ==2.13.0 and sorts above it; elsewhere run with
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu to get the CPU build.
# tensorflow-cpu is TensorFlow's CPU-only wheel of the same release as `tensorflow`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${PEERS_VENV:-$here/.venv}"
python="${PYTHON:-python3.11}"
TORCH_VERSION="2.13.0"
TENSORFLOW_VERSION="2.21.0"

if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import torch, tensorflow" >/dev/null 2>&1; then
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet "torch==$TORCH_VERSION"
  "$venv/bin/pip" install --quiet "tensorflow-cpu==$TENSORFLOW_VERSION"
fi
"$venv/bin/python" - <<'PY'
import tensorflow as tf
import torch
print(f"peers environment ready: torch {torch.__version__}, tensorflow {tf.__version__}")
PY
echo "$venv"
