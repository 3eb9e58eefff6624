#!/usr/bin/env bash
# Configures a Release build in $1 (default: build). CUDA is used whenever nvcc is found
# (on PATH or in /usr/local/cuda/bin), so every .cu file is compiled even without a GPU.
set -euo pipefail
build=${1:-build}; shift || true
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
launcher=()
# ccache, when installed, makes rebuilds in a second checkout (a worktree) cheap.
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
cmake -S "$(dirname "$0")/.." -B "$build" -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" "$@"
