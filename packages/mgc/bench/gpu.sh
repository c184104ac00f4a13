#!/usr/bin/env bash
exec python "$(dirname "$0")/gpu.py" "$@"  # the benchmark is gpu.py (issue #17 contract); run by `make bench-gpu`
