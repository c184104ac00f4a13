#!/usr/bin/env bash
# End-to-end demo on offline synthetic data: partition histogram, FedMGD (Stage 1 + Stage 2), then FedAvg from
# the same Stage-1 classifiers at equal communication. Usage: bash demo.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")"
OUT="${1:-runs/demo-fedmgd}"
VENV_BIN="$(cd ../.. && pwd)/.venv/bin"
[ -d "$VENV_BIN" ] && export PATH="$VENV_BIN:$PATH"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
fedmgd-partition --config configs/demo.yaml --out "$OUT/partition"
fedmgd-train --config configs/demo.yaml --out "$OUT/fedmgd" --method fedmgd
fedmgd-train --config configs/demo.yaml --out "$OUT/fedavg" --method fedavg fl.init=stage1 \
  fl.stage1_from="$OUT/fedmgd/stage1.pt"
python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
for m in ("fedmgd", "fedavg"):
    s = json.load(open(f"{out}/{m}/summary.json"))
    print(f"{m:7s} final global test accuracy {s['final_test_acc']:.3f} ({s['rounds']} rounds)")
PY
