#!/usr/bin/env bash
# Installs the workbench into ./.venv (created if missing).
#
#   bash install.sh            # the workbench, the trainer and the app
#   bash install.sh test       # ... plus the test tools (pytest, hypothesis, ruff, selenium, Debian's chromium)
#   bash install.sh trl        # any extra of pyproject.toml: test, trackers, vllm, trl, verl
#   bash install.sh engines    # only the engines' CPU test environments .venv-verl and .venv-trl (see below)
#
# `test` also builds .venv-verl and .venv-trl, the environments in which tests/engines runs verl's and TRL's own
# code (each engine pins its own transformers). They hold the CPU torch, the engine and the few packages its
# imports need; the project itself runs there from the source tree (PYTHONPATH), it is not installed there.
#
# torch: on a machine without an NVIDIA GPU, torch==2.13.0 is installed first. On this project's machines pip
# takes that version's CPU build from the local wheel folder; elsewhere set TORCH_INDEX_URL (for example
# https://download.pytorch.org/whl/cpu) to get a CPU build. With a GPU, pip resolves torch as usual (CUDA build).
# A torch that is already installed is kept.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "install.sh: needs Python >= 3.11 (set PYTHON=...)" >&2; exit 1; }

# The engines' CPU test environments. Versions are pinned to the releases the adapters were written against.
VERL_ENV=(verl==0.9.1 "transformers>=5.5.3,<5.11,!=5.6.0" tensordict==0.10.0 hydra-core ray codetiming datasets pillow peft
  TransferQueue==0.1.11 cachetools fastapi uvicorn torchdata numpy pandas pyarrow pytest pytest-timeout tensorboard
  "math-verify[antlr4_9_3]>=0.7")  # hydra pins antlr4 4.9: the grader's math-verify takes the matching parser
TRL_ENV=(trl==1.16.0 numpy pandas pyarrow pytest pytest-timeout "math-verify[antlr4_13_2]>=0.7"
  tensorboard)  # tensorboard: the trackers checks (tests/training/engines/*_checks.py) read event files back

cpu_torch() {  # $1: a venv's python. Installs the CPU torch first where there is no GPU (never a CUDA build here).
  local py=$1
  "$py" -c 'import torch' 2>/dev/null && return 0
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "install.sh: NVIDIA GPU found; torch comes from pyproject's range (CUDA build)"
  else
    echo "install.sh: no GPU; installing torch==${TORCH_VERSION:-2.13.0} (CPU build where available) into ${py%/bin/python}"
    "$py" -m pip --disable-pip-version-check install -q "torch==${TORCH_VERSION:-2.13.0}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  fi
}

engine_env() {  # $1: verl or trl. Builds .venv-$1 for tests/engines; the engine's own pins win over the core's.
  local name=$1 dir=.venv-$1 py=.venv-$1/bin/python start=$SECONDS
  [ -x "$py" ] || "$PYTHON" -m venv "$dir"
  cpu_torch "$py"
  local pip=("$py" -m pip --disable-pip-version-check install -q)
  if [ "$name" = verl ]; then
    # verl's own requirements pull extras (wandb, tensorboard, ...) that its code does not import on a CPU:
    # install verl without them and add what its core algorithms, data path and V1 trainer import.
    "${pip[@]}" "${VERL_ENV[@]:1}"
    "${pip[@]}" --no-deps "${VERL_ENV[0]}"
  else
    "${pip[@]}" "${TRL_ENV[@]}"
  fi
  "$py" -c 'import torch; assert "+cpu" in torch.__version__ or torch.cuda.is_available(), torch.__version__' \
    || { echo "install.sh: $dir holds a CUDA torch on a machine without GPU" >&2; exit 1; }
  echo "install.sh: $dir ready ($((SECONDS - start)) s)"
}

if [ "${1:-}" = engines ]; then
  engine_env verl && engine_env trl
  exit 0
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
cpu_torch .venv/bin/python

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
if [[ ",$extras," == *",test,"* ]]; then
  engine_env verl
  engine_env trl
fi
echo "install.sh: done (.venv${extras:+ with $extras})"
