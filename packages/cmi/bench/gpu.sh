#!/usr/bin/env bash
# Replaced by bench/gpu.py (issue #17); kept as a two-line shim: bash bench/gpu.sh OUTDIR [gpu.py options]
exec python "$(dirname "$0")/gpu.py" --out "${1:-runs/bench_gpu}" "${@:2}"
