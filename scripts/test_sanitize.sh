#!/usr/bin/env bash
# The test suite under AddressSanitizer + UBSan (clang, CPU only, -O1), in the fuzz build
# folder (build-fuzz: the same sanitized libraries as the fuzz harnesses, built once).
#   scripts/test_sanitize.sh           the whole non-CUDA suite, [slow] tests included (long:
#                                      scripts/test.sh --sanitize)
#   scripts/test_sanitize.sh --subset  the CI subset: the readers' and the core engine's test
#                                      files, no [slow] tests, plus every fuzz regression
#                                      input replayed through its harness
# Any ASan report (out-of-bounds, use-after-free, leak) or UBSan report (non-recoverable)
# fails the test that met it, so the run fails.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${ENGINE_FUZZ_BUILD:-build-fuzz}
# The CI subset: files that exercise the readers, the writers, the data path and the core
# engine quickly; the model-heavy tests (conv layers, training) take minutes under ASan.
subset=(test_image test_dataset test_detections_json test_coco_results test_input_list test_synth test_metrics
        test_augment test_draw test_safetensors test_tensor test_autograd test_module test_optim
        test_weights test_box_coder test_box_iou test_matcher test_nms test_anchors
        test_loader test_augment_fused test_postprocess test_hard_negative_mining
        test_assign_targets test_losses test_pool test_concat test_elementwise
        test_frozen_bn_cache test_counters test_cpu_allocator test_head_layout
        test_read_file test_safetensors_limits test_readers_hardened test_image_decode
        test_small_boxes test_clip_grad test_conv2d_regions
        test_dist_launch test_dist_threads test_dist_hooks test_dist_reducer test_dist_sync_bn
        ssd_data)   # test_synth runs the ssd_data program
fuzz_targets=(fuzz_image fuzz_voc_xml fuzz_coco_json fuzz_detections_json fuzz_coco_results fuzz_safetensors fuzz_checkpoint
              fuzz_input_list)
mode=full
[ "${1:-}" = "--subset" ] && mode=subset

if [ "$mode" = subset ]; then
  # One goal for all of them (sanitize_subset, CMakeLists.txt): several --target goals would be
  # built one after another, one test file at a time.
  targets="${subset[*]} ${fuzz_targets[*]}"
  bash scripts/configure_fuzz.sh -DENGINE_TESTS_FAST=ON "-DENGINE_SANITIZE_SUBSET=${targets// /;}"
  cmake --build "$build" -j"$(nproc)" --target sanitize_subset
else
  bash scripts/configure_fuzz.sh -DENGINE_TESTS_FAST=OFF
  cmake --build "$build" -j"$(nproc)"
fi
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
# Test files left unbuilt (subset) appear to CTest as "<name>_NOT_BUILT": not run. The oracle
# tests (label "oracle") run the programs, which the subset does not build: not run there.
extra=()
[ "$mode" = subset ] && extra=(-LE oracle)
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" -E "_NOT_BUILT" "${extra[@]}"
