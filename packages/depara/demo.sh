#!/usr/bin/env bash
# DEPARA end to end on offline synthetic data: train the zoo and measure transfer, score all model pairs,
# rank sources per target (evaluated against measured transfer), then select a layer of T2's model for T1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export PATH="$here/../../.venv/bin:$PATH"
out="${1:-runs/demo-depara}"
cfg="$here/configs/demo.yaml"
depara-zoo --config "$cfg" --out "$out"
depara-score --config "$cfg" --out "$out"
depara-select --config "$cfg" --out "$out"
depara-select --config "$cfg" --out "$out/layers" zoo_dir="$out" select.mode=layer
echo "outputs in $out: transfer.json scores.json selection.json depara.png selection.png layers/layers.json"
