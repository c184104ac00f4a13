#!/usr/bin/env bash
# End-to-end CPU demo on offline synthetic data: teacher, NetGraft, the plain-KD baseline, evaluation.
set -euo pipefail
cd "$(dirname "$0")"
OUT=${1:-runs/demo-netgraft}
netgraft-teacher --config configs/demo_teacher.yaml --out "$OUT/teacher"
netgraft-train --config configs/demo.yaml --out "$OUT/netgraft" model.teacher_ckpt="$OUT/teacher/teacher.pt"
netgraft-train --config configs/demo.yaml --out "$OUT/kd" --method kd model.teacher_ckpt="$OUT/teacher/teacher.pt"
netgraft-eval "$OUT/netgraft"
python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
g = json.load(open(f"{out}/netgraft/summary.json")); k = json.load(open(f"{out}/kd/summary.json"))
print(f"teacher {g['teacher_acc']:.1f}%  netgraft {g['test_acc']:.1f}%  plain KD {k['test_acc']:.1f}%  ({g['n_shot']} shots)")
PY
