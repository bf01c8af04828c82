#!/usr/bin/env bash
# ReST-MCTS* self-training on GSM8K on one 8-GPU node: experiment.rest_mcts chains the stage commands
# round by round (experiment/rest_mcts.py says what each round does). Run from the repository root after
# `make install` and `pip install -e .[vllm]`:
#   bash runs/rest_mcts_gsm8k.sh
# Everything resumes: a finished round is skipped, the search and the sampling resume by problem id, the
# policy SFT from its last checkpoint. Settings first; the authors' values where they give them.
set -euo pipefail

REPO=$(pwd)
MODEL=${MODEL:-"meta-llama/Meta-Llama-3-8B-Instruct"}  # base policy (a hub id in the local cache, or a folder)
WORK=${WORK:-"output/rest_mcts_gsm8k"}                 # round_<r>/ folders: data, policy/, value/
ROUNDS=${ROUNDS:-2}                                    # self-training rounds after round 0 (the paper reports 2)
INIT=${INIT:-last}                                     # last: round r starts from round r-1's models; base: ReST-EM
GPUS=${GPUS:-8}
N=${N:-8}                                              # round 0: solutions per problem for the value model's D_V0

# The value targets and the policy data filter: the authors' thresholds (value >= 0.2, >= 50 characters).
VALUE_THRESHOLD=0.2; LEN_THRESHOLD=50

# Search: MCTS* in the authors' generate mode (40 iterations, c 0.5, 1 roll-forward step, end_gate 0.8, inf 0.9,
# branch 3). The policy runs on vLLM on the first 7 GPUs (one engine per GPU, data parallel); the value model
# gets the 8th to itself (sample_mcts places them: the reward model on the last visible GPU).
SEARCH_ARGS="--branch 3 --max_tokens 256 --max_depth 16 --temperature 0.7 --engine vllm"

# Policy SFT on the accepted solutions: all GPUs under accelerate with DeepSpeed ZeRO-2 (absolute paths: every
# stage runs in its round's folder). The authors train policies with MAmmoTH's defaults: lr 2e-5, 3 epochs.
SFT_LAUNCHER="accelerate launch --multi_gpu --num_processes $GPUS -m"
SFT_ARGS="--deepspeed $REPO/config/zero2_config.json --learning_rate 2e-5 --num_train_epochs 3 \
  --per_device_train_batch_size 4 --gradient_accumulation_steps 1 --bf16 true --max_length 2048"

# Value model: a scalar head on the policy's backbone, ZeRO-3 on all GPUs; the authors' Mistral settings
# (lr 3e-6, 2-3 epochs, batch 3).
VALUE_LAUNCHER="deepspeed --num_gpus $GPUS --module"
VALUE_ARGS="--deepspeed_config $REPO/rms/config/zero3_config.json --lr 3e-6 --epochs 2 \
  --batch_size_per_device 3 --max_length 2048 --save_steps 0.5"

# 0. GSM8K (data/GSM8K/train.jsonl, test.jsonl), once.
[ -f data/GSM8K/train.jsonl ] || python -m data.prepare --domain GSM8K

# 1. Round 0 (the base policy's samples as prefix trees -> the first value model), then ROUNDS rounds of
#    search -> value and policy data -> SFT policy and value model.
python -m experiment.rest_mcts --rounds "$ROUNDS" --init "$INIT" --work "$WORK" \
  --domain GSM8K --file train.jsonl --backend "$MODEL" --n "$N" --temperature 0.7 --max_tokens 512 \
  --value_threshold "$VALUE_THRESHOLD" --len_threshold "$LEN_THRESHOLD" \
  --sample_args "--engine vllm" --search_args "$SEARCH_ARGS" \
  --sft_launcher "$SFT_LAUNCHER" --sft_args "$SFT_ARGS" \
  --value_launcher "$VALUE_LAUNCHER" --value_args "$VALUE_ARGS" --report_to wandb

# 2. The last round's models, evaluated with MCTS* on the test split (round_<R>/round.json names them).
last="$WORK/round_$ROUNDS/round.json"
policy=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['policy'])" "$last")
value_model=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['value_model'])" "$last")
python -m evaluation.eval --method MCTS_STAR --domain GSM8K --backend "$policy" --rm_backend "$value_model" \
  --rm_class transformers_scalar --n 1
