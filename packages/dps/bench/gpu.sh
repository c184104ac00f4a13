#!/usr/bin/env bash
# One command on a CUDA machine (≤ 8 min): sampler / training / inference throughput on a Wikipedia-scale
# synthetic stream, then DPS vs TGAT-uniform vs TGAT-recent on the graphs under $TENFOLD_DATA (paper graphs
# first) within a wall-clock budget. Prints a short table last; writes <OUT>/gpu_bench.json.
# Usage: TENFOLD_DATA=/path/to/data bash bench/gpu.sh [OUT_DIR] [extra gpu_bench.py flags]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/gpu-bench}"
shift || true
VENV_BIN="$(cd ../.. && pwd)/.venv/bin"
[ -d "$VENV_BIN" ] && export PATH="$VENV_BIN:$PATH"
export TENFOLD_QUIET=1
timeout 470 python bench/gpu_bench.py --out "$OUT" --budget-s "${BUDGET_S:-330}" --epochs "${EPOCHS:-5}" "$@"
