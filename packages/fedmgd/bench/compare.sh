#!/usr/bin/env bash
# README table (CPU, outside CI): MNIST, CPU-scale proof setting (5,000-image pool, 16x16, K = 5, 20 rounds x 10
# local steps), alpha in {0.01, 0.05, 0.1}; FedMGD vs FedAvg vs FedProx vs SCAFFOLD, mean +- std over 3 seeds.
# Each seed trains its own Stage 1 for FedMGD; FedAvg/FedProx/SCAFFOLD start from scratch (as in the reference),
# and "FedAvg (Stage-1 init)" starts from the same seed's Stage-1 classifiers (equal pre-training budget).
# Finished runs (summary.json present) are skipped, so an interrupted comparison continues where it stopped.
# Usage: TENFOLD_DATA=/path/to/data bash bench/compare.sh [OUT_DIR]     (about 15 min CPU-time on one core)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/compare-cpu}"
VENV_BIN="$(cd ../.. && pwd)/.venv/bin"
[ -d "$VENV_BIN" ] && export PATH="$VENV_BIN:$PATH"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TENFOLD_QUIET=1
CFG=configs/mnist_cpu_proof.yaml
for a in 0.01 0.05 0.1; do
  for m in fedmgd fedavg fedprox scaffold; do
    [ -f "$OUT/a$a/$m/summary.json" ] || fedmgd-train --config $CFG --method "$m" partition.alpha="$a" \
      --out "$OUT/a$a/$m" --seeds 0 1 2 > /dev/null
  done
  for s in 0 1 2; do
    [ -f "$OUT/a$a/fedavg_s1/seed$s/summary.json" ] || fedmgd-train --config $CFG --method fedavg fl.init=stage1 \
      fl.stage1_from="$OUT/a$a/fedmgd/seed$s/stage1.pt" partition.alpha="$a" --seed $s \
      --out "$OUT/a$a/fedavg_s1/seed$s" > /dev/null
  done
done
python - "$OUT" <<'PY'
import json, statistics, sys
out = sys.argv[1]
arms = [("fedmgd", "FedMGD"), ("fedavg_s1", "FedAvg (Stage-1 init)"), ("fedavg", "FedAvg"), ("fedprox", "FedProx"),
        ("scaffold", "SCAFFOLD")]
rows = ["| alpha | " + " | ".join(n for _, n in arms) + " |", "|---" * (len(arms) + 1) + "|"]
for a in ("0.01", "0.05", "0.1"):
    cells = []
    for m, _ in arms:
        if m == "fedavg_s1":
            accs = [json.load(open(f"{out}/a{a}/{m}/seed{s}/summary.json"))["final_test_acc"] for s in (0, 1, 2)]
            mean, std = statistics.mean(accs), statistics.stdev(accs)
        else:
            s = json.load(open(f"{out}/a{a}/{m}/summary.json"))
            mean, std = s["mean"], s["std"]
        cells.append(f"{100 * mean:.1f} ± {100 * std:.1f}")
    rows.append(f"| {a} | " + " | ".join(cells) + " |")
table = "\n".join(rows)
open(f"{out}/table.md", "w").write(table + "\n")
print(table)
PY
