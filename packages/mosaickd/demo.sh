#!/usr/bin/env bash
# MosaicKD demo on offline synthetic shapes (CPU, < 2 min): train a small teacher on shapes 0-4, distil it with
# MosaicKD from the OOD shapes 5-9, then run plain KD on the same OOD images at the same student steps.
set -euo pipefail
cd "$(dirname "$0")"
OUT="${1:-runs/demo-mosaickd}"
VENV_BIN="$(cd ../.. && pwd)/.venv/bin"
[ -d "$VENV_BIN" ] && export PATH="$VENV_BIN:$PATH"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" TENFOLD_QUIET="${TENFOLD_QUIET:-1}"
mosaickd-teacher -c configs/demo_teacher.yaml --out "$OUT/teacher"
mosaickd-train -c configs/demo.yaml --out "$OUT/mosaickd" model.teacher="$OUT/teacher/teacher.pt"
mosaickd-kd -c configs/demo_kd.yaml --out "$OUT/kd" model.teacher="$OUT/teacher/teacher.pt"
python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
t = json.load(open(f"{out}/teacher/summary.json"))
m = json.load(open(f"{out}/mosaickd/summary.json"))
k = json.load(open(f"{out}/kd/summary.json"))
print(f"teacher {t['test_top1']:.1f} | MosaicKD student {m['last_top1']:.1f} | plain KD on OOD {k['last_top1']:.1f} "
      f"(in-domain test top-1 %, {m['student_steps']} student steps each); synthetic images: {out}/mosaickd/synthetic.png")
PY
