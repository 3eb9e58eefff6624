#!/usr/bin/env bash
# Peak resident memory above the bare process, ours vs PyTorch (CPU, 2 threads):
# SSD300 inference at batch 1 and an SSD300 training step at batch 4.
#   tools/measure_peak_rss.sh BUILD_DIR TORCH_PYTHON
# Each figure is the process's maximum RSS (/usr/bin/time %M, KiB) minus the maximum RSS of
# the same program doing nothing (ours: bench_models --help, with every library loaded;
# PyTorch: the interpreter after importing torch and torchvision's detection models).
# One warm-up and one timed repetition per run (the peak does not depend on the count).
set -euo pipefail
build=${1:?usage: tools/measure_peak_rss.sh BUILD_DIR TORCH_PYTHON}
py=${2:?usage: tools/measure_peak_rss.sh BUILD_DIR TORCH_PYTHON}
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
peak() { /usr/bin/time -f "%M" -o /tmp/peak_rss.$$ "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; cat /tmp/peak_rss.$$; }
ours=("$build/apps/bench_models" --device cpu --model ssd300_vgg16 --reps 1 --warmup 1)
theirs=("$py" tools/bench_torch_models.py --device cpu --model ssd300_vgg16 --reps 1 --warmup 1 --threads 2)
ours_bare=$(peak "$build/apps/bench_models" --help)
theirs_bare=$(peak "$py" -c "import torch, torchvision.models.detection; torch.set_num_threads(2)")
printf "%-22s %12s %12s %12s\n" "row" "ours_MiB" "torch_MiB" "ours/torch"
row() {
  local name=$1; shift
  local o t
  o=$(( $(peak "${ours[@]}" "$@") - ours_bare ))
  t=$(( $(peak "${theirs[@]}" "$@") - theirs_bare ))
  awk -v n="$name" -v o="$o" -v t="$t" 'BEGIN { printf "%-22s %12.1f %12.1f %12.2f\n", n, o / 1024, t / 1024, o / t }'
}
row "infer batch 1" --mode infer --infer-batch 1
row "train step batch 4" --mode train --batch 4
echo "bare: ours $((ours_bare / 1024)) MiB, torch $((theirs_bare / 1024)) MiB"
rm -f /tmp/peak_rss.$$
