#!/usr/bin/env bash
# CPU demo on offline data: the 2-D ring, one stage vs two stages (non-saturating loss), then a sample grid
# of a tiny DCGAN trained for a few iterations on the synthetic shapes.
set -euo pipefail
cd "$(dirname "$0")"
OUT=${1:-runs/demo-onestage_gan}
osgan-train --config configs/demo.yaml --out "$OUT/one" --mode one
osgan-train --config configs/demo.yaml --out "$OUT/two" --mode two
osgan-train --mode one --loss nonsaturating --out "$OUT/shapes" data.name=shapes data.num_samples=1024 \
  model.size=32 model.g_width=16 model.d_width=16 model.d_norm=gn model.zdim=32 batch_size=64 max_steps=60 \
  eval_samples=0 optim.lr_d=1e-4
osgan-sample "$OUT/shapes" --out "$OUT/shapes/samples.png"
python - "$OUT" <<'PY'
import json, sys
o = sys.argv[1]
for m in ("one", "two"):
    s = json.load(open(f"{o}/{m}/summary.json"))
    print(f"{m}-stage: {s['step_s']*1e3:.1f} ms/iter, high-quality {s['high_quality']:.2f}, modes {s['modes']}/8")
PY
