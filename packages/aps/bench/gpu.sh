#!/usr/bin/env bash
# One command on a CUDA machine (≤ 8 min on one H100): (1) throughput and peak memory of an APS sub-step vs a
# full-token step (ViT-S/2, batch 512, bf16); (2) real CIFAR-10: ViT-Tiny/2 APS vs the MoCo-v3-style full-token
# baseline at an EQUAL number of optimizer steps, kNN + linear probe on the 10,000 test images, time per step.
# Needs CIFAR-10 under $TENFOLD_DATA (cifar10/train.npz) or torchvision's cifar-10-batches-py.
# Usage: bash bench/gpu.sh [OUT_DIR]   (writes OUT_DIR/gpu.json and prints a table last)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/bench-gpu}"
VENV_BIN="$(cd ../.. && pwd)/.venv/bin"
[ -d "$VENV_BIN" ] && export PATH="$VENV_BIN:$PATH"
PY="$(command -v python)"
STEPS="${APS_GPU_STEPS:-1200}"   # optimizer steps per arm (APS: STEPS/4 batches of K = 4 sub-steps)
mkdir -p "$OUT"
"$PY" bench/gpu_throughput.py --arch small --batch 512 --out "$OUT/throughput.json"
COMMON=(model.patch_size=2 model.embed_dim=192 model.depth=12 model.num_heads=3 data.dataset=cifar10
        data.num_workers=12 optim.batch_size=512 optim.lr_base=1e-3 optim.epochs=400 optim.schedule_unit=step
        optim.warmup_epochs=1 eval.linear_probe=true eval.batch_size=1024 ckpt_every=0 log_every=50 seed=0)
aps-train "${COMMON[@]}" --out "$OUT/aps" sampling.mode=aps optim.max_steps=$((STEPS / 4))
aps-train "${COMMON[@]}" --out "$OUT/full" sampling.mode=full optim.max_steps="$STEPS"
"$PY" - "$OUT" <<'PYEOF'
import json, sys
out = sys.argv[1]
t = json.load(open(f"{out}/throughput.json"))
a, f = (json.load(open(f"{out}/{m}/summary.json")) for m in ("aps", "full"))
res = {"throughput": t, "aps": a, "full": f, "step_time_ratio_aps_over_full": a["s_per_opt_step"] / f["s_per_opt_step"]}
json.dump(res, open(f"{out}/gpu.json", "w"), indent=2)
print(f"\n== APS on {t['device']} ==")
print(f"{'':34s}{'APS':>12s}{'full-token':>12s}{'ratio':>8s}")
print(f"{'ViT-S/2 ms/step (b512, bf16)':34s}{t['aps_ms_per_step']:12.1f}{t['full_ms_per_step']:12.1f}{t['speedup_full_over_aps']:8.2f}")
print(f"{'ViT-S/2 pairs/s':34s}{t['aps_pairs_per_s']:12.0f}{t['full_pairs_per_s']:12.0f}")
print(f"{'ViT-S/2 peak memory GiB':34s}{t['aps_peak_mem_gib']:12.2f}{t['full_peak_mem_gib']:12.2f}{t['mem_ratio_full_over_aps']:8.2f}")
print(f"{'CIFAR-10 ViT-T/2 optimizer steps':34s}{a['optimizer_steps']:12d}{f['optimizer_steps']:12d}")
print(f"{'CIFAR-10 s per optimizer step':34s}{a['s_per_opt_step']:12.4f}{f['s_per_opt_step']:12.4f}{f['s_per_opt_step'] / a['s_per_opt_step']:8.2f}")
print(f"{'CIFAR-10 kNN top-1 (10k test)':34s}{a['knn_top1']:12.2f}{f['knn_top1']:12.2f}")
print(f"{'CIFAR-10 linear probe top-1':34s}{a.get('linear_top1', float('nan')):12.2f}{f.get('linear_top1', float('nan')):12.2f}")
PYEOF
