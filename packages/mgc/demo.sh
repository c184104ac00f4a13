#!/usr/bin/env bash
# MGC end to end on offline synthetic shapes: pre-train (with a mid-run checkpoint, then resume),
# export the backbone, evaluate kNN / linear probe / dense correspondence retrieval.
set -euo pipefail
cd "$(dirname "$0")"
OUT=${1:-runs/demo-mgc}
ROOT=$(cd ../.. && pwd)
export PATH="$ROOT/.venv/bin:$PATH"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # spinning OpenMP threads waste CPU on a shared box
rm -rf "$OUT"
mgc-train --config configs/demo.yaml --out "$OUT" --stop-at 30
mgc-train --config configs/demo.yaml --out "$OUT" --resume
mgc-export "$OUT" "$OUT/backbone.pt"
mgc-eval --checkpoint "$OUT/backbone.pt" dataset=synthetic bank=1000 test=500 pairs=200 probe_epochs=20 \
  --out "$OUT/eval"
echo "demo done: $OUT (config.yaml, metrics.jsonl, last.pt, summary.json, backbone.pt, eval/summary.json)"
