#!/usr/bin/env bash
# Train the value model (README stage 2.3). Run from the repository root:
#     bash rms/train.sh
# Settings come from the environment (BACKEND, SAVE_DIR, TRAIN_PTH, MASTER_PORT); extra flags are appended
# and win, e.g.
#     BACKEND=models/ckpts/grpo/tiny/1 TRAIN_PTH=... bash rms/train.sh --max_steps 10 --report_to none
set -euo pipefail

# The default TRAIN_PTH is the file README steps 2.1 (sample_mcts --num_decision 5) and 2.2
# (process_gen_data --num_decision 5 --do_aggregate) write.
BACKEND=${BACKEND:-Qwen/Qwen2.5-Coder-7B-Instruct}
SAVE_DIR=${SAVE_DIR:-rms/ckpts/$(basename "$BACKEND")/1}
TRAIN_PTH=${TRAIN_PTH:-generate/MCTS/All/${BACKEND//\//--}/time_None_iter_100_sample_5_decision_5_exp_0.2_eps_0.1_temp_0.7_tokens_1024_thought_no_domains_BigCodeBench_DS1000_APPS_rewards.jsonl}

deepspeed --master_port "${MASTER_PORT:-29500}" rms/train.py \
  "$BACKEND" \
  "$SAVE_DIR" \
  "$TRAIN_PTH" \
  transformers_scalar \
  --max_length 2048 \
  --deepspeed_config rms/config/zero3_config.json \
  --lr 1e-7 \
  --epochs 2 \
  --save_steps 0.5 \
  --batch_size_per_device 1 \
  "$@"
