#!/usr/bin/env bash
# Test oracles (never run-time dependencies of the engine or the apps): a Python venv at
# .venv-oracles with ONNX Runtime, pycocotools and numpy (tests/oracles/*.py), and Debian's
# headless Chromium for the report render test. Skips what is present; a failure (no network)
# leaves the tests that need them reporting "SKIPPED", never failing the build.
set -uo pipefail
cd "$(dirname "$0")/.."
venv=.venv-oracles
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import onnxruntime, pycocotools, numpy" 2>/dev/null; then
  echo "install_oracles: creating $venv (onnxruntime, pycocotools, numpy)"
  if ! dpkg -s python3-venv >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get install -y -qq python3-venv >/dev/null 2>&1 || true
  fi
  python3 -m venv "$venv" && "$venv/bin/pip" install -q onnxruntime pycocotools numpy \
    || echo "install_oracles: could not install the Python oracles; their tests will report SKIPPED"
else
  echo "install_oracles: $venv present"
fi
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "install_oracles: installing chromium (headless render test)"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } >/dev/null 2>&1 \
    || echo "install_oracles: could not install chromium; the render test will report SKIPPED"
fi
exit 0
