#!/usr/bin/env bash
# APMPO on verl 0.9.1, the paper's math setup (arXiv 2605.04066): see apmpo_math.yaml
# (512 responses per step = 64 prompts x 8, trained as 4 updates of 128).
#
# Usage (from the repository root, on the Ray head node):
#   MATH_TRAIN=/data/math_train.jsonl EVAL_DIR=/data/eval bash examples/verl/run_apmpo_math.sh [hydra overrides...]
#
#   MATH_TRAIN  MATH training problems (JSONL/JSON/Parquet/CSV with problem + answer columns)
#   EVAL_DIR    folder with <name>/test.jsonl for math500 aime24 aime25 amc23 minerva_math olympiadbench
#               (any subset; missing ones are skipped with a message)
#   DATA_DIR    where the verl parquet files go (default: data/verl)
#   NNODES, GPUS_PER_NODE  cluster shape (default 1 x 8); start Ray on every node first for NNODES > 1
#
# Any extra argument is a hydra override, e.g. actor_rollout_ref.model.path=/models/Qwen2.5-Math-1.5B
# or, for the baselines on the same data: actor_rollout_ref.actor.policy_loss.loss_mode=vanilla
# trainer.v1.trainer_mode=sync (GRPO with the same seq-mean-token-mean aggregation).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${MATH_TRAIN:?set MATH_TRAIN to the MATH training file}"
: "${EVAL_DIR:?set EVAL_DIR to the folder holding <benchmark>/test.jsonl}"
DATA_DIR="${DATA_DIR:-data/verl}"
NNODES="${NNODES:-1}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
PYTHON="${PYTHON:-python}"

eval_args=()
val_files=()
for name in math500 aime24 aime25 amc23 minerva_math olympiadbench; do
  if [[ -f "$EVAL_DIR/$name/test.jsonl" ]]; then
    eval_args+=(--eval "$name=$EVAL_DIR/$name/test.jsonl")
    val_files+=("$DATA_DIR/$name.parquet")
  else
    echo "skipping $name: no $EVAL_DIR/$name/test.jsonl" >&2
  fi
done
if [[ ${#val_files[@]} -eq 0 ]]; then
  echo "no evaluation set found under $EVAL_DIR" >&2
  exit 2
fi

"$PYTHON" "$HERE/prepare_data.py" --out "$DATA_DIR" --train "math_train=$MATH_TRAIN" "${eval_args[@]}"

REWARD_FILE="$("$PYTHON" -c 'import apmpo.integrations.verl_reward as m; print(m.__file__)')"
VAL_LIST="[$(IFS=,; echo "${val_files[*]}")]"

# The driver process imports the plug-in too (the Ray workers get it from ray_kwargs in the YAML).
export VERL_USE_EXTERNAL_MODULES=apmpo.integrations.verl

exec "$PYTHON" -m verl.trainer.main_ppo \
  --config-path="$HERE" --config-name=apmpo_math \
  data.train_files="$DATA_DIR/math_train.parquet" \
  data.val_files="$VAL_LIST" \
  reward.custom_reward_function.path="$REWARD_FILE" \
  trainer.nnodes="$NNODES" \
  trainer.n_gpus_per_node="$GPUS_PER_NODE" \
  "$@"
