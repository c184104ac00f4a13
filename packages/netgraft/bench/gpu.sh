#!/usr/bin/env bash
# GPU benchmark (one command, ≤ 8 min on one H100): 10/5/1-shot NetGraft vs plain few-shot KD at equal steps on
# real CIFAR-10 with the shared VGG16-blockwise teacher (official schedule with crops, full test set, last-epoch
# checkpoint), 2 seeds each, plus step throughput of both. Prints a table last and writes bench-gpu.json.
#   TENFOLD_DATA=... TENFOLD_MODELS=... bash bench/gpu.sh [outdir]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/bench-gpu}
mkdir -p "$OUT"
for shots in 10 5 1; do
  for seed in 0 1; do
    for method in netgraft kd; do
      netgraft-train --config configs/cifar10_vgg16_10shot.yaml --shots "$shots" --method "$method" --seed "$seed" \
        --device cuda --out "$OUT/${method}-${shots}shot-s${seed}" > /dev/null
    done
  done
done
python bench/cpu.py --batch 256 --repeat 20 --json "$OUT/throughput.json" > /dev/null 2>&1 || true
python - "$OUT" <<'PY'
import json, sys, statistics as st, pathlib
out = pathlib.Path(sys.argv[1]); rows = {}
for p in sorted(out.glob("*/summary.json")):
    s = json.loads(p.read_text()); rows.setdefault((s["n_shot"], s["method"]), []).append(s["test_acc"])
table = {f"{m}-{n}shot": {"mean": st.mean(v), "std": st.pstdev(v), "runs": v} for (n, m), v in rows.items()}
(out / "bench-gpu.json").write_text(json.dumps(table, indent=1))
print("| shots | NetGraft | plain KD |\n|---|---|---|")
for n in (1, 5, 10):
    g, k = rows.get((n, "netgraft"), [0]), rows.get((n, "kd"), [0])
    print(f"| {n} | {st.mean(g):.2f} ± {st.pstdev(g):.2f} | {st.mean(k):.2f} ± {st.pstdev(k):.2f} |")
PY
