#!/usr/bin/env bash
# GPU benchmark (one command, ≤ 8 min on one H100): (1) throughput of DCGAN 64 px (d=128, batch 128), one vs two
# stages, symmetric (BN D) and non-saturating (GN D); (2) DCGAN 32 px on real CIFAR-10, one vs two stages, equal
# iterations, Fréchet distance in cifar10_wrn40_2 feature space; (3) DFAD data-free KD wrn40_2 → wrn16_1, one vs
# two stages at equal iterations: student accuracy and time. Prints a table last, writes bench-gpu.json.
#   TENFOLD_DATA=... TENFOLD_MODELS=... bash bench/gpu.sh [outdir]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/bench-gpu}
mkdir -p "$OUT"
python bench/cpu.py --device cuda --size 64 --width 128 --batch 128 --repeat 50 --json "$OUT/throughput.json" > /dev/null
COMMON="data.name=cifar10 model.size=32 model.g_width=64 model.d_width=64 batch_size=128 max_steps=3000 eval_samples=5000 --device cuda"
osgan-train --mode two --loss nonsaturating model.d_norm=gn optim.lr_d=2e-4 $COMMON --out "$OUT/cifar-two" > /dev/null
osgan-train --mode one --loss nonsaturating model.d_norm=gn optim.lr_d=5e-5 $COMMON --out "$OUT/cifar-one" > /dev/null
osgan-train --config configs/dfad_kd_two_stage_cifar10.yaml epochs=40 optim.milestones=[20,32] --device cuda --out "$OUT/kd-two" > /dev/null
osgan-train --config configs/dfad_kd_one_stage_cifar10.yaml epochs=40 optim.milestones=[20,32] --device cuda --out "$OUT/kd-one" > /dev/null
python - "$OUT" <<'PY'
import json, sys, pathlib
o = pathlib.Path(sys.argv[1]); r = {}
t = json.loads((o / "throughput.json").read_text()); r["throughput"] = t
for k in ("cifar-two", "cifar-one", "kd-two", "kd-one"):
    r[k] = json.loads((o / k / "summary.json").read_text())
(o / "bench-gpu.json").write_text(json.dumps(r, indent=1, default=str))
print("| setting | two-stage | one-stage | ratio |\n|---|---|---|---|")
for k in ("minimax", "nonsaturating"):
    print(f"| DCGAN64 {k} img/s | {t[k]['two_stage_img_per_s']:.0f} | {t[k]['one_stage_img_per_s']:.0f} | {t[k]['ratio_two_over_one']:.2f}x |")
a, b = r["cifar-two"], r["cifar-one"]
print(f"| CIFAR-10 DCGAN32 FD (3000 it) | {a['fd']:.1f} | {b['fd']:.1f} | time {a['step_s']/b['step_s']:.2f}x |")
a, b = r["kd-two"], r["kd-one"]
print(f"| DFAD student acc (2000 it) | {a['student_acc']:.2f} | {b['student_acc']:.2f} | time {a['step_s']/b['step_s']:.2f}x |")
PY
