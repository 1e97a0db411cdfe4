#!/usr/bin/env bash
# Trains DeepSeek-R1-Distill-Qwen-1.5B with REAL on one node of 8 GPUs with verl 0.9.x (the paper's 1.5B recipe).
# NOT RUN ON GPUs in this project: see README, "Scaling out: verl and TRL".
#
#   bash scripts/verl/run_real_1p5b.sh [hydra overrides...]
#   e.g. bash scripts/verl/run_real_1p5b.sh workbench.method=real_bce trainer.experiment_name=verl-bce
#
# Needs: a GPU environment with verl[vllm]==0.9.1 and this project installed in it (pip install -e . --no-deps),
# the model reachable under actor_rollout_ref.model.path, and verl-format parquet files:
#   REAL_TRAIN_FILE (default: ../shared/data/train/dapo-math-17k.parquet, the Table 3 set)
#   REAL_VAL_FILE   (default: data/verl/aime.parquet, made by scripts/verl/prepare_data.py)
set -euo pipefail
REAL_REPO=$(cd "$(dirname "$0")/../.." && pwd)
export REAL_REPO
export REAL_TRAIN_FILE=${REAL_TRAIN_FILE:-${REAL_DATA_DIR:-$REAL_REPO/../shared/data}/train/dapo-math-17k.parquet}
export REAL_VAL_FILE=${REAL_VAL_FILE:-$REAL_REPO/data/verl/aime.parquet}
for f in "$REAL_TRAIN_FILE" "$REAL_VAL_FILE"; do
  [ -f "$f" ] || { echo "run_real_1p5b.sh: $f not found (see the header of this script)" >&2; exit 1; }
done
# every verl process imports the workbench trainer on `import verl`, registering trainer_mode=workbench
export VERL_USE_EXTERNAL_MODULES=training.engines.verl_trainer
export PYTHONPATH="$REAL_REPO${PYTHONPATH:+:$PYTHONPATH}"
cd "$REAL_REPO"
exec python3 -m verl.trainer.main_ppo --config-path="$REAL_REPO/scripts/verl" --config-name=real_1p5b \
  "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES=training.engines.verl_trainer" \
  "+ray_kwargs.ray_init.runtime_env.env_vars.PYTHONPATH=$PYTHONPATH" \
  "$@"
