#!/usr/bin/env bash
# Configures a Release build in $1 (default: build). CUDA is used whenever nvcc is found
# (on PATH or in /usr/local/cuda/bin), so every .cu file is compiled even without a GPU.
set -euo pipefail
build=${1:-build}; shift || true
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
cmake -S "$(dirname "$0")/.." -B "$build" -DCMAKE_BUILD_TYPE=Release "$@"
