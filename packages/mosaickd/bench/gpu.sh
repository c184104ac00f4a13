#!/usr/bin/env bash
# One command on a CUDA machine (<= 8 min on one H100): throughput (spec §7c) + the real-data OOD-KD comparison
# (spec §7d GPU version, shortened to fit): teacher cifar10_animals6_wrn40_2, OOD = CIFAR-10 vehicles (and, second,
# vehicles + MNIST), student WRN-16-1, MosaicKD vs plain KD on the same OOD data at equal student steps vs
# data-free; in-domain test = the 6,000 CIFAR-10 animal test images. Prints a table last; writes JSON.
#   bash bench/gpu.sh [OUT]     (needs TENFOLD_DATA or ../shared/data, and ../shared/models)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/bench_gpu}"
ROOT="$(cd ../.. && pwd)"
[ -d "$ROOT/.venv/bin" ] && export PATH="$ROOT/.venv/bin:$PATH"
export TENFOLD_DATA="${TENFOLD_DATA:-$ROOT/../shared/data}" TENFOLD_QUIET=1
TEACHER="${TEACHER:-$ROOT/../shared/models/cifar10_animals6_wrn40_2.pt}"
ITERS="${ITERS:-600}"            # outer iterations per MosaicKD arm (x5 student steps)
STEPS=$((ITERS * 5))
DEVICE="${DEVICE:-cuda}"         # DEVICE=cpu ITERS=4 TP_ARGS="--device cpu --batch 4 --warmup 1 --iters 2" \
TP_ARGS="${TP_ARGS:-}"           #   MK_EXTRA="train.batch_size=4 data.test_per_class=10" KD_EXTRA="batch_size=8
read -r -a MK_EXTRA <<< "${MK_EXTRA:-}"  #   data.test_per_class=10" bash bench/gpu.sh: a CPU smoke test
read -r -a KD_EXTRA <<< "${KD_EXTRA:-}"
mkdir -p "$OUT"
python bench/gpu_throughput.py $TP_ARGS --json "$OUT/throughput.json" | tee "$OUT/throughput.txt"
COMMON=(-c configs/animals6_vehicles.yaml model.teacher="$TEACHER" --device "$DEVICE" "${MK_EXTRA[@]}")
mosaickd-train "${COMMON[@]}" --out "$OUT/mosaickd" train.iters=$ITERS train.eval_every=$((ITERS / 4))
mosaickd-kd -c configs/animals6_vehicles_kd.yaml model.teacher="$TEACHER" --device "$DEVICE" --out "$OUT/kd" \
  steps=$STEPS eval_every=$((STEPS / 4)) batch_size=256 "${KD_EXTRA[@]}"
mosaickd-train "${COMMON[@]}" --out "$OUT/datafree" train.iters=$ITERS train.eval_every=$((ITERS / 4)) \
  loss.local=0 train.kd_use_ood=false
mosaickd-train -c configs/animals6_vehicles_mnist.yaml model.teacher="$TEACHER" --device "$DEVICE" \
  --out "$OUT/mosaickd_mnist" train.iters=$ITERS train.eval_every=$((ITERS / 4)) "${MK_EXTRA[@]}"
mosaickd-kd -c configs/animals6_vehicles_kd.yaml model.teacher="$TEACHER" --device "$DEVICE" --out "$OUT/kd_mnist" \
  'data.ood=[cifar10,mnist]' steps=$STEPS eval_every=$((STEPS / 4)) batch_size=256 "${KD_EXTRA[@]}"
python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
rows = []
for name, label in [("mosaickd", "MosaicKD, OOD vehicles"), ("kd", "plain KD, OOD vehicles"),
                    ("datafree", "data-free (no patch D, no OOD)"), ("mosaickd_mnist", "MosaicKD, vehicles+MNIST"),
                    ("kd_mnist", "plain KD, vehicles+MNIST")]:
    s = json.load(open(f"{out}/{name}/summary.json"))
    rows.append({"run": name, "label": label, **s})
tp = json.load(open(f"{out}/throughput.json"))
json.dump({"runs": rows, "throughput": tp}, open(f"{out}/results.json", "w"), indent=1)
print(f"\ndevice: {tp['device']}")
for r in tp["rows"]:
    print(f"throughput amp={r['amp']}: {r['outer_it_per_s']:.2f} outer it/s, {r['student_images_per_s']:.0f} student "
          f"img/s, mosaickd/plain-KD time per student step {r['ratio_per_student_step']:.2f}, peak {r['peak_mem_gb']:.1f} GB")
print(f"{'run':34s} {'student steps':>13s} {'last top1':>9s} {'best top1':>9s} {'teacher':>8s}")
for r in rows:
    print(f"{r['label']:34s} {r['student_steps']:13d} {r['last_top1']:9.2f} {r['best_top1']:9.2f} "
          f"{r.get('teacher_top1', float('nan')):8.2f}")
PY
