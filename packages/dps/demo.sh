#!/usr/bin/env bash
# End-to-end demo on an offline synthetic preference stream (spec §7): DPS vs TGAT-uniform, then
# evaluation with historical negatives and the per-node decay fit. Usage: bash demo.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")"
OUT="${1:-runs/demo-dps}"
VENV_BIN="$(cd ../.. && pwd)/.venv/bin"
[ -d "$VENV_BIN" ] && export PATH="$VENV_BIN:$PATH"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
dps-train --config configs/demo.yaml --model dps --out "$OUT/dps"
dps-train --config configs/demo.yaml --model tgat-uniform --out "$OUT/tgat-uniform"
dps-eval --run "$OUT/dps" --negatives historical
dps-fit-decay --config configs/demo.yaml --out "$OUT/alpha" --print-top 3
python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
for arm in ("dps", "tgat-uniform"):
    s = json.load(open(f"{out}/{arm}/summary.json"))
    print(f"{arm:14s} test AUC {s['test_auc']:.4f}  AP {s['test_ap']:.4f}  acc {s['test_acc']:.4f}  F1 {s['test_f1']:.4f}")
PY
