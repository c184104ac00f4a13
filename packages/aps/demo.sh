#!/usr/bin/env bash
# APS end to end on offline synthetic data (≤ 2 min on 2 CPU cores): pre-train with asymmetric patch
# sampling, evaluate the backbone (kNN + linear probe), fine-tune it. Usage: bash demo.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")"
OUT="${1:-runs/demo-aps}"
VENV_BIN="$(cd ../.. && pwd)/.venv/bin"
[ -d "$VENV_BIN" ] && export PATH="$VENV_BIN:$PATH"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
aps-train --config configs/demo.yaml --out "$OUT/pretrain"
aps-eval --checkpoint "$OUT/pretrain" --out "$OUT/eval" device=cpu data.dataset=synthetic data.synthetic_train=1024 \
  data.synthetic_test=500 model.patch_size=4 model.embed_dim=96 model.depth=4 model.num_heads=3
aps-finetune --config configs/demo_finetune.yaml --pretrained "$OUT/pretrain" --out "$OUT/finetune"
echo "demo done: $OUT/{pretrain,eval,finetune}/summary.json"
