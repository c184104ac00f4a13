#!/usr/bin/env bash
# One command on a CUDA machine (<= 8 min on one H100): throughput/MFU table + PatchMix vs no-mix on CIFAR-10.
# Usage: bash bench/gpu.sh [OUT_DIR]   (needs CIFAR-10 under $TENFOLD_DATA or torchvision's layout)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/bench-gpu}"
VENV_BIN="$(cd ../.. && pwd)/.venv/bin"
[ -d "$VENV_BIN" ] && export PATH="$VENV_BIN:$PATH"
export TENFOLD_DATA="${TENFOLD_DATA:-$(cd ../.. && pwd)/../shared/data}"
timeout 470 python bench/gpu.py --out "$OUT" --epochs "${EPOCHS:-30}"
