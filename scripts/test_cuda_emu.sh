#!/usr/bin/env bash
# Runs every [cuda] test with the project's CUDA kernels executed on the CPU by tools/cuda_emu
# (no GPU needed), plus the emulator's own self-tests; the [slow] ones only with
# ENGINE_TESTS_FAST=OFF. What it checks and what it cannot: docs/testing.md, "CUDA kernels
# without a GPU".
#   --asan   the same under AddressSanitizer + UBSan: out-of-bounds device accesses are
#            reported, as compute-sanitizer's memcheck would (slower; separate build folder).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build-emu
flags=()
if [ "${1:-}" = "--asan" ]; then
  dir=build-emu-asan
  flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS=-fsanitize=address,undefined -fno-omit-frame-pointer")
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi
# ENGINE_TESTS_FAST=OFF registers the [slow] [cuda] tests too (scripts/test.sh --all).
bash scripts/configure.sh "$dir" -DENGINE_CUDA=OFF -DENGINE_CUDA_EMULATOR=ON \
  -DENGINE_TESTS_FAST="${ENGINE_TESTS_FAST:-ON}" "${flags[@]}"
cmake --build "$dir" -j"$(nproc)"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
# The [cuda] tests compare CUDA with the CPU: the CPU side runs the reference convolution
# (im2col), not the Winograd fast path, whose float error (5-40x im2col's) grows over the
# training steps those tests compare (docs/kernels.md, Winograd).
export ENGINE_CPU_CONV=${ENGINE_CPU_CONV:-im2col}
ctest --test-dir "$dir" --output-on-failure -j"$(nproc)"
