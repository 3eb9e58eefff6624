#!/usr/bin/env bash
# CTest "coco_results_pycocotools": ssd_eval's COCO AP on a COCO results file written by
# ssd_detect equals pycocotools' (tests/oracles/coco_results_check.py), to 1e-4.
#   coco_results_oracle.sh SSD_DATA SSD_TRAIN SSD_DETECT SSD_EVAL REPO_ROOT
# A generated COCO set (ssd_data synth --format coco), a tiny_ssd trained for 80 iterations (short warmup, no augmentation: AP50 about 0.5)
# on it (fixed default seed), ssd_detect on every image with --coco-gt the trainval file (the
# 8 test images are unmatched, so they are left out: pycocotools refuses ids outside the GT).
# The python: $ENGINE_ORACLE_PYTHON, else REPO_ROOT/.venv-oracles/bin/python; without it or
# without pycocotools this prints "skipped: ..." and exits 77 (the test's SKIP_RETURN_CODE).
set -euo pipefail
[ $# -eq 5 ] || { echo "usage: $0 SSD_DATA SSD_TRAIN SSD_DETECT SSD_EVAL REPO_ROOT" >&2; exit 2; }
ssd_data=$1 ssd_train=$2 ssd_detect=$3 ssd_eval=$4 root=$5
py=${ENGINE_ORACLE_PYTHON:-$root/.venv-oracles/bin/python}
if [ ! -x "$py" ]; then
  echo "skipped: no oracle python at $py (set ENGINE_ORACLE_PYTHON, or create the venv with scripts/install_oracles.sh)"
  exit 77
fi
if ! "$py" -c "import pycocotools.cocoeval, numpy" 2>/dev/null; then
  echo "skipped: $py has no pycocotools (pip install pycocotools)"
  exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/coco_oracle.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
run() {  # a step; its output only when it fails
  if ! "$@" >"$tmp/step.log" 2>&1; then
    cat "$tmp/step.log"
    echo "FAILED: $*"
    exit 1
  fi
}
run "$ssd_data" synth --format coco --out "$tmp/data" --n 48 --val 8 --seed 5 --size 96x96
run "$ssd_train" --arch tiny_ssd --data "$tmp/data/instances_trainval.json" --input-size 96 --batch 16 --iters 80 \
  --warmup 10 --no-augment --eval-every 0 --out "$tmp/run" --workers 1
gt=$tmp/data/instances_trainval.json
run "$ssd_detect" --weights "$tmp/run/last.safetensors" --input "$tmp/data" --out "$tmp/det" \
  --coco-results "$tmp/results.json" --coco-gt "$gt"
grep -q "8 of 56 images have no entry" "$tmp/step.log" || { cat "$tmp/step.log"; echo "FAILED: no unmatched-images line"; exit 1; }
"$ssd_eval" --gt "$gt" --det "$tmp/results.json" --json >"$tmp/eval.json"
"$py" "$root/tests/oracles/coco_results_check.py" --gt "$gt" --results "$tmp/results.json" \
  --expect "$tmp/eval.json" --tol 1e-4 --min-ap50 0.1
