#!/usr/bin/env bash
# Train every notebook a few hundred steps on a CUDA GPU, then grade the saved weights on the CPU.
#
#   scripts/gpu_check.sh            # 2 epochs per notebook: the GPU code path, CPU weights, grading
#   scripts/gpu_check.sh 5          # 5 epochs per notebook
#   scripts/gpu_check.sh full       # the notebooks' own epoch counts; every bar must then pass
#
# Each solution notebook is executed in training mode (like `make weights`) in a folder of its
# own under gpu-check/, with `device = "cuda"` and the epoch count set in a cell after its
# settings cell. The script then checks that training ran on the GPU, that the saved weights
# are CPU tensors, and grades them in a separate process that sees no GPU
# (CUDA_VISIBLE_DEVICES=""), printing every graded number beside its bar. It fails, saying why,
# when no CUDA device is available. Needs a CUDA build of torch (the course's set-up installs
# the CPU build: install one in a separate environment and point PYTHON at it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
exec "$PY" scripts/gpu_check.py "$@"
