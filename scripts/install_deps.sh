#!/usr/bin/env bash
# Installs the Debian packages the project builds with (skips the ones already present).
set -euo pipefail
pkgs=(cmake g++ make catch2 nlohmann-json3-dev libstb-dev libjpeg62-turbo-dev libpng-dev libcli11-dev libpugixml-dev libopenblas-dev
      openmpi-bin libopenmpi-dev libonnx-dev libprotobuf-dev)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "install_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
