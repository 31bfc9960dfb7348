#!/usr/bin/env bash
# The GPU check: one command, about 8 minutes on one GPU, for whoever has a GPU at hand.
#
#   bash benchmarks/gpu_check.sh                 # writes gpu_check.json and prints a table
#   bash benchmarks/gpu_check.sh my_gpu.json     # another output file
#   bash benchmarks/gpu_check.sh out.json --budget 900 --iters 100   # more time, more iterations
#
# It generates a Market-1501-sized JPEG set (12,936 + 3,368 + 15,913 images) in a temporary
# folder and measures, within a time budget (default 450 s of measurements): synchronisations
# per steady-state step; the training loader per input backend; the whole trainer against a
# hand-written loop (bag-of-tricks R50 at 256x128, batch 64, and MGN at 384x128; bf16,
# channels-last; per-image and batched backends); the training step alone in fp32 / bf16 / fp16
# with and without channels-last; evaluation of the 19,281-image test set (fp32 and bf16) and
# the metric on MSMT17-scale random features; a 2-process NCCL run when two GPUs are present;
# torch.compile last (its compile time is large). No download: backbones start from random
# weights (speed does not depend on them). Details: benchmarks/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_check.json}"
shift || true
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python benchmarks/gpu_check.py --json "$out" "$@"
