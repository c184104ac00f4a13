#!/usr/bin/env bash
# README table (CPU, outside CI): MNIST, CPU-scale proof setting (5,000-image pool, 16x16, K = 5, 20 rounds x 10
# local steps), alpha in {0.01, 0.05, 0.1}; FedMGD vs FedAvg vs FedProx vs SCAFFOLD, mean +- std over 3 seeds.
# Each seed trains its own Stage 1 for FedMGD; baselines start from scratch (as in the reference).
# Usage: TENFOLD_DATA=/path/to/data bash bench/compare.sh [OUT_DIR]     (about 1 h CPU-time on one core)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/compare-cpu}"
VENV_BIN="$(cd ../.. && pwd)/.venv/bin"
[ -d "$VENV_BIN" ] && export PATH="$VENV_BIN:$PATH"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TENFOLD_QUIET=1
for a in 0.01 0.05 0.1; do
  for m in fedmgd fedavg fedprox scaffold; do
    fedmgd-train --config configs/mnist_cpu_proof.yaml --method "$m" partition.alpha="$a" \
      --out "$OUT/a$a/$m" --seeds 0 1 2 > /dev/null
  done
done
python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
rows = ["| alpha | FedMGD | FedAvg | FedProx | SCAFFOLD |", "|---|---|---|---|---|"]
for a in ("0.01", "0.05", "0.1"):
    cells = []
    for m in ("fedmgd", "fedavg", "fedprox", "scaffold"):
        s = json.load(open(f"{out}/a{a}/{m}/summary.json"))
        cells.append(f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}")
    rows.append(f"| {a} | " + " | ".join(cells) + " |")
table = "\n".join(rows)
open(f"{out}/table.md", "w").write(table + "\n")
print(table)
PY
