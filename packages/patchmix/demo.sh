#!/usr/bin/env bash
# PatchMix end to end on offline synthetic shapes: pre-train a tiny ViT, then kNN and a short linear probe.
# Usage: bash demo.sh [OUT_DIR]   (default runs/demo-patchmix); ~1-2 min on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")"
OUT="${1:-runs/demo-patchmix}"
VENV_BIN="$(cd ../.. && pwd)/.venv/bin"
[ -d "$VENV_BIN" ] && export PATH="$VENV_BIN:$PATH"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

patchmix-train --config configs/demo.yaml --out "$OUT/pretrain"
patchmix-eval --config configs/demo_eval.yaml --checkpoint "$OUT/pretrain" --out "$OUT/knn" --protocol knn
patchmix-eval --config configs/demo_eval.yaml --checkpoint "$OUT/pretrain" --out "$OUT/linear" --protocol linear
echo "demo done: $OUT/pretrain/summary.json, $OUT/knn/summary.json, $OUT/linear/summary.json"
