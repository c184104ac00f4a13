#!/usr/bin/env bash
# The paper's claim on CPU (run outside CI): DPS (leak-free GAS, the default) vs DPS with the official GAS t*
# (gas.mode=official) vs TGAT-uniform vs TGAT-recent on the four graphs of the
# paper's Table I that tenfold ships (ia_hypertext, ia_contact, fb_forum, bitcoinotc), 3 seeds each, test AUC
# and AP mean ± std, with the CPU-scale settings of configs/cpu-proof.yaml (D = 32, 1 layer, 10 neighbours,
# lr 1e-3, 3 epochs; equal budget for every arm). Usage: bash bench/compare.sh [OUT_DIR] (needs $TENFOLD_DATA);
# ARMS="dps dps-official" runs a subset of the arms.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/compare}"
VENV_BIN="$(cd ../.. && pwd)/.venv/bin"
[ -d "$VENV_BIN" ] && export PATH="$VENV_BIN:$PATH"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TENFOLD_QUIET=1
: "${TENFOLD_DATA:?set TENFOLD_DATA to the folder holding ia_hypertext/, ia_contact/, fb_forum/, bitcoinotc/}"
GRAPHS="${GRAPHS:-ia_hypertext ia_contact fb_forum bitcoinotc}"
ARMS="${ARMS:-dps dps-official tgat-uniform tgat-recent}"
for g in $GRAPHS; do
  for arm in $ARMS; do
    extra=()
    model="$arm"
    if [ "$arm" = dps-official ]; then model=dps; extra=(gas.mode=official); fi
    if [ -f "$OUT/$g/$arm/summary.json" ] && grep -q test_auc_mean "$OUT/$g/$arm/summary.json"; then continue; fi
    echo "== $g / $arm"
    dps-train --config configs/cpu-proof.yaml --model "$model" "data.name=$g" "train.seeds=[0,1,2]" "${extra[@]}" \
      --out "$OUT/$g/$arm" --resume-if-exists > "$OUT.$g.$arm.log" 2>&1 || { tail -3 "$OUT.$g.$arm.log"; exit 1; }
    tail -1 "$OUT.$g.$arm.log"
  done
done
python bench/table.py "$OUT" $GRAPHS
