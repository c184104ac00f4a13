#!/usr/bin/env bash
# Kept for old instructions: the GPU benchmark is bench/gpu.py (issue #17); `make bench-gpu` runs every package's.
exec python "$(dirname "$0")/gpu.py" --out "${1:-runs/bench-gpu}" "${@:2}"
