#!/usr/bin/env bash
# The whole test suite from a fresh machine: install deps, configure (CUDA when nvcc
# exists), build, run every test with CTest. [cuda] tests report "Skipped" without a GPU.
# Pass --fast to leave out tests tagged [slow].
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/configure.sh build
cmake --build build -j"$(nproc)"
exclude=()
[ "${1:-}" = "--fast" ] && exclude=(-E '\[slow\]')
ctest --test-dir build --output-on-failure -j"$(nproc)" "${exclude[@]}"
