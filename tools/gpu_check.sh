#!/usr/bin/env bash
# One call on a GPU machine: configure with CUDA, build, run the whole suite (the [cuda]
# tests now run), run compute-sanitizer memcheck on every [cuda] test, run bench_kernels (every
# precision), short ssd_train runs in each --precision, tools/bench_torch.py (PyTorch on
# the same shapes), bench_models and tools/bench_torch_models.py (end-to-end model timings,
# ours and PyTorch's, every precision, torch.compile too; the loader alone on 1 and all
# cores), and write everything to a log folder
# (default gpu-check-logs/, or $1): at most 8 files, so the device tool can bring them back:
# summary.txt build.log ctest.log memcheck.log bench.txt bench.json bench_torch.json models.json.
#
# On the lent GPU machine (no package registry there), first pack the Debian headers here:
#   ../shared/device/pack-deps.sh .deps libopenblas-dev libopenblas0-pthread libopenblas-pthread-dev
# and carry ".deps"; this script picks it up automatically.
set -uo pipefail
cd "$(dirname "$0")/.."
log=${1:-gpu-check-logs}
mkdir -p "$log"
summary="$log/summary.txt"
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }

extra=()
if [ -d .deps ]; then
  extra+=(-DCMAKE_PREFIX_PATH="$PWD/.deps")
  export LD_LIBRARY_PATH="$PWD/.deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
fi
[ -x /usr/local/cuda/bin/nvcc ] && export PATH=/usr/local/cuda/bin:$PATH

note "date: $(date -u +%Y-%m-%dT%H:%MZ)"
note "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
note "device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo none)"

cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release "${extra[@]}" >"$log/build.log" 2>&1 \
  || { note "configure: FAILED (see build.log)"; exit 1; }
if cmake --build build-gpu -j"$(nproc)" >>"$log/build.log" 2>&1; then note "build: ok"; else
  note "build: FAILED (see build.log)"; tail -30 "$log/build.log"; exit 1; fi

# CUDA-vs-CPU tests compare against the CPU reference convolution (scripts/test_cuda_emu.sh).
ENGINE_CPU_CONV=${ENGINE_CPU_CONV:-im2col} ctest --test-dir build-gpu --output-on-failure -j4 >"$log/ctest.log" 2>&1
note "ctest: $(grep -E 'tests passed|tests failed' "$log/ctest.log" | tail -1)"
skipped=$(grep -c '(Skipped)' "$log/ctest.log" || true)
note "ctest skipped: $skipped"

# compute-sanitizer memcheck over the [cuda] tests of each test executable. (On gVisor H200
# machines it has been seen to refuse the device: memcheck.log then says so.)
san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
fails=0
if [ -z "$san" ]; then
  note "memcheck: skipped (compute-sanitizer not found)"
elif ! nvidia-smi >/dev/null 2>&1; then
  note "memcheck: skipped (no GPU)"
else
  for exe in build-gpu/tests/test_*; do
    [ -x "$exe" ] || continue
    n=$("$exe" "[cuda]" --list-test-names-only 2>/dev/null | grep -c . || true)
    [ "$n" -gt 0 ] || continue
    name=$(basename "$exe")
    if "$san" --tool memcheck --error-exitcode 99 "$exe" "[cuda]" >"$log/memcheck_$name.log" 2>&1; then
      note "memcheck $name: ok ($n tests)"
    else
      note "memcheck $name: FAILED (see memcheck.log)"; fails=$((fails + 1))
    fi
  done
fi
if ls "$log"/memcheck_test_*.log >/dev/null 2>&1; then
  cat "$log"/memcheck_test_*.log >"$log/memcheck.log" && rm -f "$log"/memcheck_test_*.log
fi

if [ -x build-gpu/apps/bench_kernels ]; then
  build-gpu/apps/bench_kernels --device all --json "$log/bench.json" >"$log/bench.txt" 2>&1 \
    && note "bench_kernels: ok (bench.txt, bench.json)" || note "bench_kernels: FAILED (see bench.txt)"
fi
# Short training runs on the device, one per precision (appended to bench.txt: the log folder
# keeps to 8 files): tiny_ssd on generated shapes (losses must fall) and SSD300 at batch 32
# (img/s, the figure torchvision is compared with).
if [ -x build-gpu/apps/ssd_train ] && nvidia-smi >/dev/null 2>&1; then
  data=$(mktemp -d)
  build-gpu/apps/ssd_data synth --format voc --out "$data/train" --n 256 --seed 1 >/dev/null 2>&1
  for prec in fp32 tf32 bf16; do
    for run in "tiny_ssd 8 60" "ssd300_vgg16 32 30"; do
      set -- $run
      out="$data/run_${1}_$prec"
      if build-gpu/apps/ssd_train --arch "$1" --data "$data/train" --device cuda --precision "$prec" --batch "$2" \
          --iters "$3" --log-every 10 --save-every 100000 --workers 4 --out "$out" >"$out.log" 2>&1; then
        ips=$(grep '"img_per_s"' "$out/metrics.jsonl" | tail -1 | sed 's/.*"img_per_s":\([0-9.e+-]*\).*/\1/')
        first=$(grep '"loss"' "$out/metrics.jsonl" | head -1 | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
        last=$(grep '"loss"' "$out/metrics.jsonl" | tail -1 | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
        note "ssd_train $1 batch $2 $prec: ok, $ips img/s (last interval), loss $first -> $last"
      else
        note "ssd_train $1 batch $2 $prec: FAILED: $(tail -1 "$out.log")"
      fi
      { echo "== ssd_train $1 batch $2 --precision $prec"; cat "$out.log"; } >>"$log/bench.txt"
    done
  done
  # What a step costs on the GPU (counters and CUDA-event phase times), eager and with the
  # whole step replayed from a CUDA graph (docs/gpu-step.md).
  for graph in "" "--cuda-graph"; do
    out="$data/profile${graph:+_graph}"
    if build-gpu/apps/ssd_train --arch ssd300_vgg16 --data "$data/train" --device cuda --batch 32 --iters 8 \
        --profile 5 $graph --log-every 4 --save-every 100000 --workers 4 --out "$out" >"$out.log" 2>&1; then
      note "ssd_train --profile ${graph:-(eager)}: ok, $(grep -m1 '^profile of' "$out.log")"
    else
      note "ssd_train --profile $graph: FAILED: $(tail -1 "$out.log")"
    fi
    { echo "== ssd_train --profile 5 $graph"; cat "$out.log"; } >>"$log/bench.txt"
  done
  rm -rf "$data"
fi
# PyTorch / torchvision on the same shapes, for the ratio columns of docs/kernels.md.
if ! nvidia-smi >/dev/null 2>&1; then
  note "bench_torch: skipped (no GPU)"
elif python3 -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "== tools/bench_torch.py" >>"$log/bench.txt"
  python3 tools/bench_torch.py --device cuda --json "$log/bench_torch.json" >>"$log/bench.txt" 2>&1 \
    && note "bench_torch: ok (bench.txt, bench_torch.json)" || note "bench_torch: FAILED (see bench.txt)"
else
  note "bench_torch: skipped (torch/torchvision not importable)"
fi
# End-to-end model timings (docs/performance.md): bench_models in each precision, the PyTorch
# peers eager in each precision and torch.compile in bf16, and the loader alone (decode + SSD
# augmentation at 300) on one worker and on every core, ours and torchvision's transforms v2.
# Every row goes into models.json ({"rows": [...]}, "impl": ours|torch); the tables to bench.txt.
# GPU_CHECK_MODELS picks the models (default: all but ssd512_vgg16, to keep the check short);
# torch.compile runs on SSD300 only (its compile takes minutes per model).
if [ -x build-gpu/apps/bench_models ] && nvidia-smi >/dev/null 2>&1; then
  mdir=$(mktemp -d)
  models=${GPU_CHECK_MODELS:-tiny_ssd,ssd300_vgg16,retinanet_resnet50_fpn,fasterrcnn_resnet50_fpn}
  have_torch=0
  python3 -c "import torch, torchvision" >/dev/null 2>&1 && have_torch=1
  for prec in fp32 tf32 bf16; do
    echo "== bench_models --precision $prec" >>"$log/bench.txt"
    build-gpu/apps/bench_models --device cuda --model "$models" --precision "$prec" --reps 10 --warmup 3 \
        --json "$mdir/ours_$prec.json" >>"$log/bench.txt" 2>&1 \
      && note "bench_models $prec: ok" || note "bench_models $prec: FAILED (see bench.txt)"
    if [ "$have_torch" = 1 ]; then
      echo "== bench_torch_models --precision $prec" >>"$log/bench.txt"
      python3 tools/bench_torch_models.py --device cuda --model "$models" --precision "$prec" --reps 10 --warmup 3 \
          --json "$mdir/torch_$prec.json" >>"$log/bench.txt" 2>&1 \
        && note "bench_torch_models $prec: ok" || note "bench_torch_models $prec: FAILED (see bench.txt)"
    fi
  done
  if [ "$have_torch" = 1 ]; then
    echo "== bench_torch_models --precision bf16 --compile" >>"$log/bench.txt"
    python3 tools/bench_torch_models.py --device cuda --model ssd300_vgg16 --precision bf16 --compile --reps 10 --warmup 3 \
        --json "$mdir/torch_bf16_compile.json" >>"$log/bench.txt" 2>&1 \
      && note "bench_torch_models bf16 --compile: ok" || note "bench_torch_models bf16 --compile: FAILED (see bench.txt)"
  else
    note "bench_torch_models: skipped (torch/torchvision not importable)"
  fi
  # The loader alone on VOC-sized JPEGs: one worker (the per-core rate) and one per core.
  build-gpu/apps/ssd_data synth --format voc --out "$mdir/voc" --n 64 --size 500x375 --seed 2 >/dev/null 2>&1
  for w in 1 "$(nproc)"; do
    echo "== bench_models --loader --workers $w" >>"$log/bench.txt"
    build-gpu/apps/bench_models --loader "$mdir/voc" --workers "$w" --loader-images $((64 * w)) \
        --json "$mdir/ours_loader_$w.json" >>"$log/bench.txt" 2>&1 \
      && note "bench_models --loader --workers $w: $(grep -o '"img_per_s": [0-9.]*' "$mdir/ours_loader_$w.json" | head -1)" \
      || note "bench_models --loader --workers $w: FAILED (see bench.txt)"
  done
  if [ "$have_torch" = 1 ]; then
    echo "== bench_torch_models --loader" >>"$log/bench.txt"
    python3 tools/bench_torch_models.py --loader "$mdir/voc" --loader-images 64 \
        --json "$mdir/torch_loader.json" >>"$log/bench.txt" 2>&1 \
      && note "bench_torch_models --loader: $(grep -o '"img_per_s": [0-9.]*' "$mdir/torch_loader.json" | head -1)" \
      || note "bench_torch_models --loader: FAILED (see bench.txt)"
  fi
  python3 - "$log/models.json" "$mdir"/*.json <<'PY' || cp "$mdir/ours_bf16.json" "$log/models.json" 2>/dev/null
import json, sys
rows = []
for path in sys.argv[2:]:
    try:
        rows += json.load(open(path))["rows"]
    except Exception as e:  # a failed run leaves no (or a partial) file
        print(f"models.json: {path} skipped: {e}")
json.dump({"rows": rows}, open(sys.argv[1], "w"), indent=1)
PY
  rm -rf "$mdir"
else
  note "bench_models: skipped (no GPU or not built)"
fi
note "memcheck failures: $fails"
# Exit status: 0 only when every test passed and memcheck found nothing.
grep -q "100% tests passed" "$log/ctest.log" && [ "$fails" -eq 0 ]
