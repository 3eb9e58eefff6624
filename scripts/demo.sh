#!/usr/bin/env bash
# From a fresh machine, no downloads: install the Debian packages, build, generate a
# synthetic VOC-style dataset (400 training + 100 held-out images), train tiny_ssd on the
# CPU for a few minutes, run ssd_detect on the held-out images and print their mAP with
# ssd_eval. Extra arguments go to ssd_train (e.g. --device cuda, --iters 300).
# Everything is written under out/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/configure.sh build
cmake --build build -j"$(nproc)"

data=out/synth
run=out/tiny_ssd
if [ ! -f "$data/ImageSets/Main/test.txt" ]; then
  ./build/apps/ssd_data synth --out "$data" --n 400 --val 100 --seed 1
fi
./build/apps/ssd_train --arch tiny_ssd --data "$data" --val "$data" --input-size 128 --batch 16 \
  --iters 1000 --steps 700,900 --eval-every 250 --out "$run" "$@"

# A list file's relative entries are read relative to the list's folder: write absolute paths.
sed "s|^|$PWD/$data/JPEGImages/|; s|\$|.jpg|" "$data/ImageSets/Main/test.txt" > out/test_images.txt
./build/apps/ssd_detect --weights "$run/last.safetensors" --input @out/test_images.txt --out out/detect | tail -n 2
./build/apps/ssd_eval --gt "$data" --det out/detect/detections.json
