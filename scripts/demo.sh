#!/usr/bin/env bash
# From a fresh machine: install deps, build, and run the main job on embedded defaults
# (until ssd_train exists: demo_train, a small conv net trained on generated data).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/configure.sh build
cmake --build build -j"$(nproc)"
./build/apps/demo_train "$@"
