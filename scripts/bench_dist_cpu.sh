#!/usr/bin/env bash
# Scaling of data-parallel training on the CPU (docs/distributed.md): tiny_ssd at input 128,
# global batch 16, 60 iterations, on the demo's synthetic data, as
#   1 process, 2 OpenMP threads (how this 2-core machine trains by default)
#   1 process, 1 thread          (one core's worth: the baseline of one rank)
#   2 ranks x 1 thread, batch 8 each, without and with --sync-bn
# Prints images per second (of the global batch, iterations 11-60) and the last loss.
# Usage: bash scripts/bench_dist_cpu.sh [BUILD_DIR]   (needs mpirun; builds nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
train="$PWD/$build/apps/ssd_train"
[ -x "$train" ] || { echo "bench_dist_cpu: $train not found (build the ssd_train target)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "bench_dist_cpu: mpirun not found (scripts/install_deps.sh)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=PASSIVE
export OMPI_MCA_btl_vader_single_copy_mechanism=none
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PWD/$build/apps/ssd_data" synth --out "$work/data" --n 400 --val 0 --seed 1 >/dev/null
args=(--arch tiny_ssd --data "$work/data" --input-size 128 --iters 60 --log-every 10 --lr 0.05 --seed 1 --save-every 0)
report() {  # name, run folder
  python3 - "$1" "$2/metrics.jsonl" <<'EOF'
import json, sys
lines = [j for j in map(json.loads, open(sys.argv[2])) if 'img_per_s' in j]
ips = [j['img_per_s'] for j in lines[1:]]
print(f"| {sys.argv[1]} | {sum(ips) / len(ips):.1f} | {lines[-1]['loss']:.3f} |")
EOF
}
echo "| run | img/s | loss at 60 |"
echo "|---|---|---|"
OMP_NUM_THREADS=2 "$train" "${args[@]}" --batch 16 --workers 2 --out "$work/a" >/dev/null
report "1 process, 2 threads, batch 16" "$work/a"
OMP_NUM_THREADS=1 "$train" "${args[@]}" --batch 16 --workers 1 --out "$work/b" >/dev/null
report "1 process, 1 thread, batch 16" "$work/b"
mpirun -np 2 --bind-to none -x OMP_NUM_THREADS=1 "$train" "${args[@]}" --batch 8 --workers 1 --out "$work/c" >/dev/null
report "2 ranks x 1 thread, batch 8 each" "$work/c"
mpirun -np 2 --bind-to none -x OMP_NUM_THREADS=1 "$train" "${args[@]}" --batch 8 --workers 1 --sync-bn --out "$work/d" >/dev/null
report "2 ranks x 1 thread, batch 8 each, --sync-bn" "$work/d"
