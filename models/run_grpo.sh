#!/usr/bin/env bash
# ReST-GRPO training (stage 1.3), the README's command. Run from the repository root:
#   bash models/run_grpo.sh
# Settings are the variables below; override any of them from the environment, e.g.
#   MODEL=models/ckpts/tiny-coder NAME=tiny-coder DATA=... ACCELERATE_CONFIG=config/accelerate/cpu_deepspeed.yaml \
#   REPORT_TO=none bash models/run_grpo.sh
# One 8-GPU node: ACCELERATE_CONFIG=config/accelerate/multi_gpu.yaml NUM_PROCESSES=8 bash models/run_grpo.sh
# Extra GRPOConfig flags go after the script's arguments: bash models/run_grpo.sh --beta 0.04 --loss_type bnpo
set -euo pipefail

MODEL=${MODEL:-"Qwen/Qwen2.5-Coder-7B-Instruct"}
NAME=${NAME:-"Qwen2.5-Coder-7B-Instruct"}                 # checkpoints: models/ckpts/grpo/$NAME/$ROUND
ROUND=${ROUND:-1}
DATA=${DATA:-"generate/Common/All/Qwen--Qwen2.5-Coder-7B-Instruct/temp_0.7_tokens_1024_grpo_data_0.05_0.9_0.5_0.95.jsonl"}
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-""}                 # e.g. config/accelerate/multi_gpu.yaml; empty: accelerate's default
DEEPSPEED_CONFIG=${DEEPSPEED_CONFIG:-"config/zero2_config.json"}
MAX_PROMPT_LENGTH=${MAX_PROMPT_LENGTH:-1024}
MAX_COMPLETION_LENGTH=${MAX_COMPLETION_LENGTH:-1024}
NUM_GENERATIONS=${NUM_GENERATIONS:-8}
LR=${LR:-1e-7}
EPOCHS=${EPOCHS:-1}
SAVE_STEPS=${SAVE_STEPS:-0.5}
BATCH_SIZE_PER_DEVICE=${BATCH_SIZE_PER_DEVICE:-2}
# Prompt groups per optimizer step over all processes: 2 is the README's 8 GPUs x 2 per device / 8 generations,
# kept on 1, 2 or 4 GPUs by a larger accumulation (8, 4, 2). Empty: GRADIENT_ACCUMULATION_STEPS as given.
PROMPTS_PER_STEP=${PROMPTS_PER_STEP:-2}
GRADIENT_ACCUMULATION_STEPS=${GRADIENT_ACCUMULATION_STEPS:-1}
NUM_PROCESSES=${NUM_PROCESSES:-""}                         # e.g. 8 (one per GPU); empty: the accelerate config's
SYMBOL_REWARD=${SYMBOL_REWARD:-1e-3}
TRAILING_PENALTY=${TRAILING_PENALTY:-1e-6}
REPORT_TO=${REPORT_TO:-wandb}
# The paper trained with TRL 0.18.2, whose defaults differ from TRL 1.16's (beta 0 and the dapo loss):
# PAPER_DEFAULTS=1 passes the old ones explicitly.
PAPER_DEFAULTS=${PAPER_DEFAULTS:-1}

paper_flags=()
if [ "$PAPER_DEFAULTS" = "1" ]; then
  paper_flags=(--beta 0.04 --loss_type bnpo --scale_rewards group --epsilon 0.2)
fi
launch=(accelerate launch)
if [ -n "$ACCELERATE_CONFIG" ]; then
  launch+=(--config_file "$ACCELERATE_CONFIG")
fi
if [ -n "$NUM_PROCESSES" ]; then
  launch+=(--num_processes "$NUM_PROCESSES")
fi
batch_flags=(--gradient_accumulation_steps "$GRADIENT_ACCUMULATION_STEPS")
if [ -n "$PROMPTS_PER_STEP" ]; then
  batch_flags=(--prompts_per_step "$PROMPTS_PER_STEP")
fi

"${launch[@]}" models/train_grpo.py \
  "$MODEL" \
  "models/ckpts/grpo/$NAME/$ROUND" \
  "$DATA" \
  --max_prompt_length "$MAX_PROMPT_LENGTH" \
  --max_completion_length "$MAX_COMPLETION_LENGTH" \
  --num_generations "$NUM_GENERATIONS" \
  --log_completions \
  --deepspeed_config "$DEEPSPEED_CONFIG" \
  --lr "$LR" \
  --epochs "$EPOCHS" \
  --save_steps "$SAVE_STEPS" \
  --batch_size_per_device "$BATCH_SIZE_PER_DEVICE" \
  "${batch_flags[@]}" \
  --symbol_reward "$SYMBOL_REWARD" \
  --trailing_penalty "$TRAILING_PENALTY" \
  --report_to "$REPORT_TO" \
  "${paper_flags[@]}" \
  "$@"
