#!/usr/bin/env bash
# Replaced by bench/gpu.py (issue #17; run all packages with `make bench-gpu` at the repository root): DIR [ARGS].
exec python "$(dirname "$0")/gpu.py" --out "${1:-runs/bench-gpu}" --long "${@:2}"
