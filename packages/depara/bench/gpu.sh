#!/usr/bin/env bash
# One command on a CUDA machine (<= 8 min): throughput figures (spec 7.3) + the larger real-data zoo (ResNet-18
# trunks, both WRN-40-2 teachers as extra sources, 1,000 probes) + layer selection on the VGG16 teacher.
# Needs TENFOLD_DATA (cifar10/, mnist/) and the shared models (TENFOLD_MODELS, default $TENFOLD_DATA/../models).
# Writes bench/gpu_results.json and prints a short table last.   usage: bash bench/gpu.sh [OUT_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "$here/../.." && pwd)"
export PATH="$root/.venv/bin:$PATH" TENFOLD_QUIET=1
export TENFOLD_DATA="${TENFOLD_DATA:-$root/../shared/data}"
models="${TENFOLD_MODELS:-$TENFOLD_DATA/../models}"
out="${1:-$here/runs/gpu}"
mkdir -p "$out"
cd "$here"
python -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 'bench/gpu.sh needs a CUDA device')"
t0=$(date +%s)
python bench/gpu_bench.py --out "$out/throughput.json"
t1=$(date +%s)
teachers="zoo.teachers=[$models/cifar10_wrn40_2.pt,$models/cifar10_animals6_wrn40_2.pt]"
depara-zoo --config configs/real_zoo_gpu.yaml --out "$out/zoo" "$teachers"
depara-select --config configs/real_zoo_gpu.yaml --out "$out/zoo" "$teachers"
t2=$(date +%s)
depara-select --config configs/vgg_layer_selection.yaml --out "$out/layers" \
  "select.layer_source=$models/cifar10_vgg16_blockwise.pt" \
  "select.layer_reference=$models/cifar10_animals6_wrn40_2.pt"
t3=$(date +%s)
python - "$out" "$((t1 - t0))" "$((t2 - t1))" "$((t3 - t2))" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
thr = json.loads((out / "throughput.json").read_text())
sel = json.loads((out / "zoo" / "selection.json").read_text())["metrics"]
lay = json.loads((out / "layers" / "layers.json").read_text())
res = {"throughput": thr, "model_selection": sel, "layer_selection": lay,
       "seconds": {"throughput": int(sys.argv[2]), "zoo_and_selection": int(sys.argv[3]), "layers": int(sys.argv[4])}}
(out / "gpu_results.json").write_text(json.dumps(res, indent=2))
Path("bench/gpu_results.json").write_text(json.dumps(res, indent=2))
print(f"\ndevice: {thr['device']}")
print(f"{'scorer':<16}{'spearman':>10}{'kendall':>10}{'top1_hit':>10}")
for k, m in sel.items():
    print(f"{k:<16}{m['spearman']:>10.3f}{m['kendall']:>10.3f}{m['top1_hit']:>10.3f}")
print(f"layer selection vgg16_blockwise -> C2: lam=1 picks {lay['argmax_lam1']} (spearman "
      f"{lay['spearman_lam1']:.3f}, regret {lay['regret_lam1']:.2f} pts), best {lay['best_layer']}")
print(f"attribution img/s: resnet50 fp32 {thr['resnet50_fp32_img_per_s']:.0f} amp {thr['resnet50_amp_img_per_s']:.0f}"
      f" | vgg19_bn fp32 {thr['vgg19_bn_fp32_img_per_s']:.0f} amp {thr['vgg19_bn_amp_img_per_s']:.0f}")
print(f"multi-layer (16 convs, one forward vs 16): {thr['multi_layer_speedup']:.2f}x; "
      f"pairwise 190 pairs x 499,500 edges: {thr['pairwise_s']:.1f} s, peak {thr.get('peak_mem_gb', 0):.1f} GB")
print(f"time (s): {res['seconds']}")
PY
