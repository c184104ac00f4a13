#!/usr/bin/env bash
# One command on a CUDA machine (<= 8 min on one H100): CIFAR-10 exactly as spec §3 (pool = train + 90% test,
# 1,000 global test images, K = 10, r = 1, min_size 1,000), full-width networks, alpha = 0.05 (ALPHAS="0.05 0.1"
# for more; each alpha costs about 5 min);
# Stage 1 shortened to 500 GAN iterations, Stage 2 shortened to 10 rounds x 1 local epoch with 100
# server steps x 2048 synthetic samples. Arms at equal rounds/local steps: FedMGD, FedAvg from the same Stage-1
# classifiers, FedAvg / FedProx / SCAFFOLD from scratch. Prints a table last and writes bench/gpu.json.
# Usage: TENFOLD_DATA=/path/to/data bash bench/gpu.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/bench-gpu}"
VENV_BIN="$(cd ../.. && pwd)/.venv/bin"
[ -d "$VENV_BIN" ] && export PATH="$VENV_BIN:$PATH"
export TENFOLD_QUIET=1
# DEVICE / EXTRA (extra KEY=VALUE overrides) exist to smoke-test this script on a CPU with a tiny budget.
COMMON="--config configs/cifar10_gpu_short.yaml --device ${DEVICE:-cuda} ${EXTRA:-}"
for a in ${ALPHAS:-0.05}; do
  D="$OUT/a$a"
  fedmgd-train $COMMON --method fedmgd partition.alpha=$a --out "$D/fedmgd" > /dev/null
  fedmgd-train $COMMON --method fedavg fl.init=stage1 fl.stage1_from="$D/fedmgd/stage1.pt" \
    partition.alpha=$a --out "$D/fedavg_same" > /dev/null
  for m in fedavg fedprox scaffold; do
    fedmgd-train $COMMON --method $m partition.alpha=$a --out "$D/$m" > /dev/null
  done
done
python - "$OUT" "${ALPHAS:-0.05}" <<'PY'
import json, sys, torch
out = sys.argv[1]
res = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "torch": torch.__version__, "preset": "cifar10_gpu_short", "runs": {}}
lines = ["| alpha | FedMGD | FedAvg (same Stage-1 init) | FedAvg | FedProx | SCAFFOLD | gap vs FedAvg | "
         "Stage-1 it/s | FedMGD/FedAvg round time |", "|---|---|---|---|---|---|---|---|---|"]
for a in sys.argv[2].split():
    s = {m: json.load(open(f"{out}/a{a}/{m}/summary.json"))
         for m in ("fedmgd", "fedavg_same", "fedavg", "fedprox", "scaffold")}
    res["runs"][a] = s
    acc = {m: 100 * v["final_test_acc"] for m, v in s.items()}
    ratio = s["fedmgd"]["round_time_s"] / s["fedavg"]["round_time_s"]
    lines.append(f"| {a} | {acc['fedmgd']:.1f} | {acc['fedavg_same']:.1f} | {acc['fedavg']:.1f} | "
                 f"{acc['fedprox']:.1f} | {acc['scaffold']:.1f} | {acc['fedmgd'] - acc['fedavg']:+.1f} | "
                 f"{s['fedmgd']['stage1_it_per_s']:.2f} | {ratio:.2f} |")
json.dump(res, open(f"{out}/gpu.json" if "EXTRA" in __import__("os").environ else "bench/gpu.json", "w"), indent=1,
          default=str)
print(f"device: {res['device']}")
print("\n".join(lines))
PY
