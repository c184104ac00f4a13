#!/usr/bin/env bash
# Superseded by bench/gpu.py (issue #17 contract; the root `make bench-gpu` calls it directly).
exec python "$(dirname "$0")/gpu.py" "$@"
