#!/usr/bin/env bash
# The one prepared check for a single-GPU machine: throughput and MFU of a ~300M-parameter model on the plain and the
# FSDP (world size 1) path, then the GPU-marked tests. On a machine without a GPU it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
if ! "$py" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no GPU, skipped"
  exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$py" benchmarks/gpu_throughput.py
"$py" -m pytest -m gpu -q -n 0 -p no:cacheprovider
