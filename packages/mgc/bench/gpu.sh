#!/usr/bin/env bash
# One command on a CUDA machine (<= 8 min on one H100, estimated; not measured yet):
#  1. ViT-S/16 224 px training throughput, MGC vs global-only, batch 128/256 (bench/throughput.py);
#  2. the real-data comparison at GPU scale: ViT-Tiny/2 on CIFAR-10 32 px, levels {1,2,8}, batch 256,
#     MGC vs global-only at equal steps and seeds (STEPS, default 1500 per arm to fit the time box; the
#     spec's full setting is configs/cifar10_vit_tiny_gpu.yaml with 6000), then kNN / linear probe /
#     dense correspondence retrieval of both;
#  3. prints a short table last and writes bench/results/gpu.json.
# Usage: TENFOLD_DATA=/path/to/data bash bench/gpu.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu-bench}
STEPS=${STEPS:-1500}
SUBSET=${SUBSET:-0}   # 5000 for the data-efficiency setting
ROOT=$(cd ../.. && pwd)
export PATH="$ROOT/.venv/bin:$PATH"
export TENFOLD_QUIET=1
mkdir -p "$OUT" bench/results
python bench/throughput.py --batch 128 256 --out "$OUT/throughput.json"
for arm in mgc global; do
  cfg=configs/cifar10_vit_tiny_gpu.yaml
  [ "$arm" = global ] && cfg=configs/cifar10_vit_tiny_gpu_global.yaml
  mgc-train --config "$cfg" --out "$OUT/$arm" optim.steps="$STEPS" optim.warmup_steps=$((STEPS / 12)) \
    data.subset="$SUBSET" monitor.knn_every=0 monitor.final_eval=false ckpt_every=0 > "$OUT/$arm.train.json"
  mgc-eval --checkpoint "$OUT/$arm" dataset=cifar10 bank=50000 test=10000 pairs=2000 probe_epochs=50 \
    --out "$OUT/$arm/eval" > /dev/null
done
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
tp = json.loads((out / "throughput.json").read_text())
res = {"device": tp["device"], "throughput": tp["rows"]}
for arm in ("mgc", "global"):
    ev = json.loads((out / arm / "eval" / "summary.json").read_text())
    tr = json.loads((out / arm / "summary.json").read_text())
    res[arm] = {"knn_top1": ev["knn_top1"], "linear_top1": ev["linear_top1"], "corr": ev["corr_retrieval"],
                "pairs_per_s": tr["pairs_per_s"], "steps": tr["steps"], "final_loss": tr["final_loss"]}
res["train_ratio_pairs_per_s"] = res["mgc"]["pairs_per_s"] / res["global"]["pairs_per_s"]
Path("bench/results").mkdir(exist_ok=True)
(Path("bench/results") / "gpu.json").write_text(json.dumps(res, indent=1))
(out / "gpu.json").write_text(json.dumps(res, indent=1))
print(f"\n{res['device']}  (results: bench/results/gpu.json)")
print(f"{'ViT-S/16 224 batch':<22}{'MGC pairs/s':>12}{'global pairs/s':>16}{'ratio':>7}{'MGC GB':>8}")
for r in tp["rows"]:
    print(f"{r['batch']:<22}{r['mgc']['pairs_per_s']:>12.0f}{r['global']['pairs_per_s']:>16.0f}"
          f"{r['ratio_pairs_per_s']:>7.2f}{r['mgc']['peak_mem_gb']:>8.1f}")
print(f"{'CIFAR-10 ViT-Ti/2':<22}{'kNN':>8}{'linear':>8}{'corr':>8}{'pairs/s':>9}")
for arm in ("mgc", "global"):
    r = res[arm]
    print(f"{arm:<22}{r['knn_top1']:>8.1f}{r['linear_top1']:>8.1f}{r['corr']:>8.1f}{r['pairs_per_s']:>9.0f}")
print(f"train pairs/s ratio MGC/global: {res['train_ratio_pairs_per_s']:.2f}")
PY
