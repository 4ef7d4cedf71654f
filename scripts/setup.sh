#!/usr/bin/env bash
# Set up scalesweep in ./.venv on a fresh machine (Python >= 3.10 with pip and venv is all it needs).
#   bash scripts/setup.sh          the package and its command `scalesweep`
#   bash scripts/setup.sh --test   the same plus the test tools (pytest, pytest-xdist, hypothesis, ruff)
# On a Linux machine without an NVIDIA GPU, the CPU build of torch is installed first, so pip never pulls the
# multi-GB CUDA build; with a GPU (or on macOS) pip takes torch from PyPI within pyproject.toml's range.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${SCALESWEEP_VENV:-.venv}
torch_version=${SCALESWEEP_TORCH_VERSION:-2.13.0}
cpu_index=https://download.pytorch.org/whl/cpu
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"

if ! "$py" -c "import torch" 2>/dev/null && [ "$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "setup: no NVIDIA GPU here: installing the CPU build of torch $torch_version first"
  if "$py" -c "import urllib.request as u; u.urlopen('$cpu_index/', timeout=5)" 2>/dev/null; then
    "$py" -m pip install -q "torch==$torch_version" --index-url "$cpu_index"
  else
    # PyTorch's index is out of reach: take the pinned release from the configured indexes and wheel folders.
    "$py" -m pip install -q "torch==$torch_version"
  fi
fi

echo "setup: installing scalesweep$extras into $venv"
"$py" -m pip install -q -e ".$extras"
"$py" -c "import torch; print(f'setup: done (torch {torch.__version__}, cuda available: {torch.cuda.is_available()})')"
