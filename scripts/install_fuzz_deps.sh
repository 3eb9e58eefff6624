#!/usr/bin/env bash
# Installs what the fuzz and sanitizer build needs on top of scripts/install_deps.sh: clang,
# its libFuzzer and sanitizer runtimes, and clang's OpenMP (skips the packages present).
# Called by scripts/fuzz.sh and scripts/test_sanitize.sh only, so the normal build never
# pulls in clang.
set -euo pipefail
pkgs=(clang libclang-rt-dev libomp-dev)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_fuzz_deps: all packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "install_fuzz_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
