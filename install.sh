#!/usr/bin/env bash
# Installs the workbench into ./.venv (created if missing).
#
#   bash install.sh            # the workbench, the trainer and the app
#   bash install.sh test       # ... plus the test tools (pytest, hypothesis, ruff, selenium, Debian's chromium)
#   bash install.sh trl        # any extra of pyproject.toml: test, vllm, trl, verl
#
# torch: on a machine without an NVIDIA GPU, torch==2.13.0 is installed first. On this project's machines pip
# takes that version's CPU build from the local wheel folder; elsewhere set TORCH_INDEX_URL (for example
# https://download.pytorch.org/whl/cpu) to get a CPU build. With a GPU, pip resolves torch as usual (CUDA build).
# A torch that is already installed is kept.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "install.sh: needs Python >= 3.11 (set PYTHON=...)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check)

if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "install.sh: NVIDIA GPU found; torch comes from pyproject's range (CUDA build)"
  else
    echo "install.sh: no GPU; installing torch==${TORCH_VERSION:-2.13.0} (CPU build where available)"
    "${PIP[@]}" install -q "torch==${TORCH_VERSION:-2.13.0}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  fi
fi

extras=$(IFS=,; echo "$*")
"${PIP[@]}" install -q -e ".${extras:+[$extras]}"

# The browser test drives Debian's chromium; install it where we can (root on Debian), else the test says why it skips.
if [[ ",$extras," == *",test,"* ]] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: installing Debian's chromium and chromium-driver for the browser test"
    (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }) \
      || echo "install.sh: could not install chromium; the browser test will be skipped" >&2
  fi
fi
echo "install.sh: done (.venv)"
