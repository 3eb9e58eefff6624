#!/usr/bin/env bash
# The test suite from a fresh machine (what .ci/run calls): install deps, configure (CUDA when
# nvcc exists), build, run every test not tagged [slow] with CTest. [cuda] tests report
# "Skipped" without a GPU; then, on such a machine, they run again on the CPU emulator of CUDA
# (scripts/test_cuda_emu.sh). Test oracles (ONNX Runtime, pycocotools, headless Chromium) come
# from scripts/install_oracles.sh. Then, in the clang build build-fuzz, a subset under
# ASan + UBSan and a short libFuzzer run of every reader (skip them with
# ENGINE_SKIP_SANITIZE=1 / ENGINE_SKIP_FUZZ=1; ENGINE_FUZZ_SECONDS per target, default 20).
#   --all       the [slow] tests too (the learning runs; about an hour more on 2 cores), in the
#               main and the emulated suites
#   --fast      the default (kept for older commands)
#   --sanitize  only the whole non-CUDA suite under ASan + UBSan (slow; scripts/test_sanitize.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--sanitize" ]; then
  exec bash scripts/test_sanitize.sh
fi
bash scripts/install_deps.sh
bash scripts/install_oracles.sh
fast=ON
case "${1:-}" in
  --all) fast=OFF ;;
  --fast|"") ;;
  *) echo "usage: scripts/test.sh [--all | --fast | --sanitize]" >&2; exit 2 ;;
esac
bash scripts/configure.sh build -DENGINE_TESTS_FAST=$fast
cmake --build build -j"$(nproc)"
# Tests run side by side (-j), so OpenMP threads must not busy-wait for cores that another
# test holds. The programs wait passively by default (engine/cpu_threads.h, ENGINE_CPU_SPIN);
# the test executables run the engine in-process without the programs' start-up, so they
# get the same default here.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
ctest --test-dir build --output-on-failure -j"$(nproc)"
# No GPU: the [cuda] tests skipped above; run them (the project's CUDA kernels) on the emulator.
if ! nvidia-smi -L 2>/dev/null | grep -q GPU; then
  ENGINE_TESTS_FAST=$fast bash scripts/test_cuda_emu.sh
fi
# Sanitizers and fuzzing (docs/testing.md, "Fuzzing and sanitizers"): a reader regression fails here.
if [ "${ENGINE_SKIP_SANITIZE:-0}" != 1 ]; then
  bash scripts/test_sanitize.sh --subset
fi
if [ "${ENGINE_SKIP_FUZZ:-0}" != 1 ]; then
  bash scripts/fuzz.sh "${ENGINE_FUZZ_SECONDS:-20}"
fi
