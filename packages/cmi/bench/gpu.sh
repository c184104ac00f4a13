#!/usr/bin/env bash
# One command on a CUDA machine (<= 8 min on one H100): throughput (spec §7(c)) + CMI vs DeepInversion vs
# DAFL on real CIFAR-10 (wrn40_2 -> wrn16_1, equal synthesis iterations and KD steps). Prints a table last,
# writes <out>/bench_gpu.json. Usage: bash bench/gpu.sh [out_dir]   (needs TENFOLD_DATA or ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/bench_gpu}"
VENV_BIN="$(cd ../.. && pwd)/.venv/bin"
[ -d "$VENV_BIN" ] && export PATH="$VENV_BIN:$PATH"
export TENFOLD_QUIET=1
python bench/gpu.py --out-dir "$OUT" --b 256 --g-steps 100 --rounds 20 --kd-steps 100 --kd-batch 256 \
  ${TENFOLD_DATA:+--data-root "$TENFOLD_DATA"}
