#!/usr/bin/env bash
# Installs the PyTorch reference that `trainer bench --pytorch` runs side by side with our rows:
# CPU PyTorch from PyPI (the wheel pulls its CUDA libraries even for CPU use: about 6 GB),
# transformers, and gguf + accelerate so that transformers loads the same GGUF file we do.
# Usage: bench/install_pytorch.sh [VENV]   (default ~/.cache/trainer-torch-venv)
# Then:  trainer bench --pytorch ~/.cache/trainer-torch-venv/bin/python
set -euo pipefail
VENV="${1:-${HOME}/.cache/trainer-torch-venv}"
if "${VENV}/bin/python" -c 'import torch, transformers, gguf, accelerate' 2>/dev/null; then
  echo "PyTorch reference already installed in ${VENV}"
  exit 0
fi
python3 -m venv "${VENV}"
"${VENV}/bin/pip" install --no-input --progress-bar off 'torch==2.15.0' 'transformers==5.24.0' \
  'gguf==0.19.0' 'accelerate==1.16.0'
"${VENV}/bin/python" -c 'import torch; print("torch", torch.__version__, "threads", torch.get_num_threads())'
