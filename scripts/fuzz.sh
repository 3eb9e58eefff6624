#!/usr/bin/env bash
# Fuzzes every reader with libFuzzer + ASan + UBSan (tests/fuzz, docs/testing.md "Fuzzing").
#
#   scripts/fuzz.sh [SECONDS]            each target for SECONDS (default 60), after replaying
#                                        its regression inputs and seed corpus once
#   scripts/fuzz.sh --regressions        only the replay (every committed input once)
#   scripts/fuzz.sh --make-corpus        rewrite tests/fuzz/corpus/ with make_corpus
#   scripts/fuzz.sh --findings           run each input of tests/fuzz/findings/ (faults found
#                                        and not yet fixed): "fixed" or what still fails
# Environment: FUZZ_TARGETS="image voc_xml ..." (default: all), FUZZ_JOBS (targets run side
# by side, default: the number of cores), FUZZ_RSS_MB (default 2048), FUZZ_TIMEOUT (seconds
# per input, default 10), ENGINE_FUZZ_BUILD (default build-fuzz), FUZZ_KEEP_GOING=1 (libFuzzer's
# fork mode: go on after a crash, timeout or OOM and collect every distinct input; for
# surveys, the summary's executions then come from the last status line).
#
# The tree is not modified: each target fuzzes a copy of its corpus in
# <build>/fuzz-work/<target>/ (new inputs, the log and any crashing input stay there).
# Exit status 1 when any target found a crash, leak, UB, timeout or out-of-memory; the message
# names the saved input. At the end a table: target, seconds, executions, exec/s, coverage
# (edges "cov" and features "ft" from libFuzzer's final status line), corpus files/bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
all_targets="image voc_xml coco_json detections_json coco_results safetensors checkpoint input_list"
targets=${FUZZ_TARGETS:-$all_targets}
build=${ENGINE_FUZZ_BUILD:-build-fuzz}
seconds=60
mode=fuzz
case "${1:-}" in
  --regressions) mode=replay ;;
  --make-corpus) mode=corpus ;;
  --findings) mode=findings ;;
  "") ;;
  *) [[ "$1" =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS | --regressions | --make-corpus]" >&2; exit 2; }
     seconds=$1 ;;
esac
jobs=${FUZZ_JOBS:-$(nproc)}
rss=${FUZZ_RSS_MB:-2048}
per_input=${FUZZ_TIMEOUT:-10}

bash scripts/configure_fuzz.sh
if [ "$mode" = corpus ]; then
  cmake --build "$build" -j"$(nproc)" --target make_corpus
  "$build/tests/fuzz/make_corpus" tests/fuzz/corpus
  echo "fuzz: corpora rewritten in tests/fuzz/corpus/"
  exit 0
fi
export OMP_NUM_THREADS=1
if [ "$mode" = findings ]; then
  build_targets=()
  for t in $targets; do [ -d tests/fuzz/findings/$t ] && build_targets+=("fuzz_$t"); done
  if [ ${#build_targets[@]} -eq 0 ]; then
    echo "fuzz: no unfixed findings in tests/fuzz/findings/"
    exit 0
  fi
  cmake --build "$build" -j"$(nproc)" --target "${build_targets[@]}"
  for t in $targets; do
    for f in tests/fuzz/findings/$t/*; do
      [ -f "$f" ] || continue
      if out=$("$build/tests/fuzz/fuzz_$t" -rss_limit_mb="$rss" -timeout="$per_input" "$f" 2>&1); then
        echo "fixed        $f  (move it to tests/fuzz/regressions/$t/)"
      else
        why=$(grep -m1 -oE 'fuzz oracle: .{0,80}|runtime error: .{0,80}|ERROR: [A-Za-z]+Sanitizer: [a-z-]+|terminate called .*|ERROR: libFuzzer: [a-z-]+' <<<"$out" || true)
        echo "still fails  $f  ${why}"
      fi
    done
  done
  exit 0
fi
build_targets=()
for t in $targets; do build_targets+=("fuzz_$t"); done
cmake --build "$build" -j"$(nproc)" --target "${build_targets[@]}"

export OMP_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
work=$root/$build/fuzz-work
rm -rf "$work"
mkdir -p "$work"
# The harnesses' scratch files (readers that take a path), removed at the end even when a
# harness crashed: in memory when /dev/shm is there.
scratch=$work/scratch
[ -w /dev/shm ] && scratch=/dev/shm/engine_fuzz_sh_$$
trap 'rm -rf "$scratch"' EXIT

dict_of() {
  case $1 in
    voc_xml) echo tests/fuzz/dict/xml.dict ;;
    coco_json|detections_json|coco_results) echo tests/fuzz/dict/json.dict ;;
    safetensors|checkpoint) echo tests/fuzz/dict/safetensors.dict ;;
  esac
}

# One target: replay its committed inputs, then (mode fuzz) fuzz a scratch copy of its corpus.
run_target() {
  local t=$1 dir=$work/$1 exe=$root/$build/tests/fuzz/fuzz_$1
  export FUZZ_SCRATCH=$scratch/$t
  mkdir -p "$dir/corpus" "$dir/artifacts"
  local inputs=()
  for d in tests/fuzz/regressions/$t tests/fuzz/corpus/$t; do [ -d "$d" ] && inputs+=("$root/$d"); done
  local common=(-rss_limit_mb="$rss" -timeout="$per_input" -artifact_prefix="$dir/artifacts/")
  if ! "$exe" "${common[@]}" -runs=0 "${inputs[@]}" >"$dir/replay.log" 2>&1; then
    echo "replay" >"$dir/failed"
    [ "${FUZZ_KEEP_GOING:-0}" = 1 ] || return 0
  fi
  [ "$mode" = replay ] && return 0
  cp -r "$root/tests/fuzz/corpus/$t/." "$dir/corpus/" 2>/dev/null || true
  local dict=() d keep=()
  [ "${FUZZ_KEEP_GOING:-0}" = 1 ] && keep=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
  d=$(dict_of "$t")
  [ -n "$d" ] && dict=(-dict="$root/$d")
  # New inputs go to the first folder only (the scratch copy); the regressions are read.
  if ! "$exe" "${common[@]}" "${dict[@]}" "${keep[@]}" -max_total_time="$seconds" -print_final_stats=1 \
      "$dir/corpus" "${inputs[@]}" >"$dir/fuzz.log" 2>&1; then
    echo "fuzz" >"$dir/failed"
  fi
  # Fork mode exits 0 after ignored crashes: the saved inputs tell.
  if ls "$dir"/artifacts/* >/dev/null 2>&1 && [ ! -f "$dir/failed" ]; then echo "fuzz" >"$dir/failed"; fi
  return 0
}

start=$(date +%s)
running=0
for t in $targets; do
  run_target "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait
elapsed=$(($(date +%s) - start))

status=0
printf '\n| target | seconds | executions | exec/s | cov (edges) | ft (features) | corpus (files / bytes) | result |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for t in $targets; do
  dir=$work/$t
  log=$dir/fuzz.log
  [ "$mode" = replay ] && log=$dir/replay.log
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" 2>/dev/null | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" 2>/dev/null | tail -1)
  status_line=$(grep -E '^#[0-9]+.*cov: ' "$log" 2>/dev/null | tail -1 || true)
  [ -z "$execs" ] && execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$status_line")
  # Fork mode prints no average, and a crashed run's average is over its short life.
  # A run stopped by its first crash has no meaningful rate.
  if [ "$mode" = fuzz ] && [ -n "$execs" ] && [ -z "$rate" ]; then rate=$((execs / seconds)); fi
  if [ -f "$dir/failed" ] && [ "${FUZZ_KEEP_GOING:-0}" != 1 ]; then rate="-"; fi
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$status_line")
  ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$status_line")
  if [ "$mode" = replay ]; then
    execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
    corpus="-"
  else
    corpus="$(find "$dir/corpus" -type f | wc -l) / $(du -sb "$dir/corpus" | cut -f1)"
  fi
  result=ok
  if [ -f "$dir/failed" ]; then
    result="FAILED ($(cat "$dir/failed"))"
    status=1
  fi
  secs=$seconds
  [ "$mode" = replay ] && secs=0
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$secs" "${execs:--}" "${rate:--}" "${cov:--}" "${ft:--}" \
    "$corpus" "$result"
done
echo
for t in $targets; do
  dir=$work/$t
  [ -f "$dir/failed" ] || continue
  log=$dir/fuzz.log
  [ "$(cat "$dir/failed")" = replay ] && log=$dir/replay.log
  what=$(grep -m1 -oE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): [a-z-]+( [a-z-]+)?|runtime error: .*|fuzz oracle: .*|uncaught exception|terminate called.*' "$log" || true)
  input=$(ls "$dir"/artifacts/* 2>/dev/null | head -1 || true)
  count=$(ls "$dir"/artifacts/ 2>/dev/null | wc -l)
  [ "$count" -gt 1 ] && echo "fuzz: $t: $count inputs saved in $dir/artifacts/" 
  [ -z "$input" ] && input=$(grep -m1 -oE 'Running: .*' "$log" | sed 's/Running: //' || true)
  echo "fuzz: $t FAILED: ${what:-see $log}"
  echo "fuzz:   input: ${input:-unknown}   log: $log"
  echo "fuzz:   reproduce: $build/tests/fuzz/fuzz_$t ${input:-<input>}"
  echo "fuzz:   once fixed, commit the input as tests/fuzz/regressions/$t/<name> (see docs/testing.md)"
done
echo "fuzz: ${mode}, $(wc -w <<<"$targets") targets, ${elapsed} s wall, $jobs side by side; logs in $work"
exit $status
