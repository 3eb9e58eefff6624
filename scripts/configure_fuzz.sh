#!/usr/bin/env bash
# Configures the clang build with libFuzzer coverage, AddressSanitizer and UBSan (CPU only,
# -O1) shared by the fuzz harnesses (scripts/fuzz.sh) and the sanitized test subset
# (scripts/test_sanitize.sh). Folder: $ENGINE_FUZZ_BUILD or build-fuzz; arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh >/dev/null
bash scripts/install_fuzz_deps.sh >/dev/null
cxx=clang++
command -v clang++ >/dev/null 2>&1 || cxx=clang++-14
CXX=$cxx bash scripts/configure.sh "${ENGINE_FUZZ_BUILD:-build-fuzz}" -DENGINE_FUZZ=ON -DENGINE_BUILD_TESTS=ON \
  -DCMAKE_CXX_FLAGS_RELEASE=-O1 "$@" >/dev/null
