#!/usr/bin/env bash
# End-to-end demo on offline toy data: train a toy teacher, run CMI and the no-contrast ablation,
# then export a pre-inverted pool with cmi-synthesize. Usage: bash demo.sh [out_dir]
set -euo pipefail
cd "$(dirname "$0")"
OUT="${1:-runs/demo-cmi}"
VENV_BIN="$(cd ../.. && pwd)/.venv/bin"
[ -d "$VENV_BIN" ] && export PATH="$VENV_BIN:$PATH"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
cmi-teacher --config configs/demo_teacher.yaml --out "$OUT/teacher"
cmi-distill --config configs/demo.yaml --out "$OUT/cmi" teacher.path="$OUT/teacher/teacher.pt"
cmi-distill --config configs/demo.yaml --out "$OUT/no_contrast" teacher.path="$OUT/teacher/teacher.pt" \
  synth.cr=0 synth.adv=0
cmi-synthesize --out "$OUT/synth" teacher.path="$OUT/teacher/teacher.pt" data.dataset=toy data.image_size=16 \
  rounds=2 synth.batch_size=32 synth.g_steps=20 synth.lr_g=0.01 synth.nz=64 synth.ngf=32 synth.bank_size=256 \
  synth.n_neg=128 synth.head_dim=64
python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
for arm in ("cmi", "no_contrast"):
    s = json.load(open(f"{out}/{arm}/summary.json"))
    print(f"{arm:12s} best {s['best_top1']:.2f}  last {s['last_top1']:.2f}  teacher {s.get('teacher_top1', 0):.2f}")
PY
