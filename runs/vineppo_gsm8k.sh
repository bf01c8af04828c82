#!/usr/bin/env bash
# VinePPO on GSM8K on one 8-GPU node, with VinePPO's own settings (Kazemnejad et al., 2024), and its two
# baselines (PPO with a critic, GRPO) on the same data. Run from the repository root after `make install`
# and `pip install -e .[vllm]`:
#   bash runs/vineppo_gsm8k.sh                 # SFT start, then VinePPO, then evaluation
#   ARMS="vine critic grpo" bash runs/vineppo_gsm8k.sh
# Not run by this repository's tests: written from the scripts' own flags, checked on CPU at toy size
# (config/vineppo_demo.json runs the same training command). Settings first.
set -euo pipefail

# The start: VinePPO starts RL from an SFT checkpoint. Either their published one (a hub id; MODEL_IS_SFT=1),
# e.g. realtreetune/deepseekmath-7b-sft-GSM8K or realtreetune/rho-1b-sft-GSM8K, or a base model that is
# fine-tuned here on GSM8K's train solutions (MODEL_IS_SFT=0).
MODEL=${MODEL:-"realtreetune/deepseekmath-7b-sft-GSM8K"}
MODEL_IS_SFT=${MODEL_IS_SFT:-1}
NAME=${NAME:-"deepseekmath-7b"}            # folder name under models/ckpts/{sft,vineppo}
GPUS=${GPUS:-8}
ARMS=${ARMS:-"vine"}                       # any of: vine critic grpo (one training each)
SEED=${SEED:-2746318213}                   # the seed of VinePPO's README (APP_SEED)
# VinePPO's iteration: 64 problems x 8 solutions, temperature 0.6, top_p 0.9, up to 1,024 new tokens; K = 9
# rollouts per state, states up to step 24; PPO clip 0.2, 2 epochs over the episodes in mini-batches of 64,
# lr 1e-6 with 3% warm-up, gradient clip 1, KL beta 1e-4. These are models/train_vineppo.py's defaults and
# are written out here so that the command says what it runs.
PROMPTS=64; GENERATIONS=8; T=0.6; TOP_P=0.9; M=1024; K=9; MAX_VALUE_STEPS=24
EPOCHS=2; MINI_BATCH=64; LR=1e-6; WARMUP=0.03; BETA=1e-4; CLIP=0.2
ITERATIONS=${ITERATIONS:-1000}             # policy iterations; set it to the horizon you compare against
SAVE_EVERY=${SAVE_EVERY:-50}               # iterations between checkpoints (each evaluated below)
PER_DEVICE=${PER_DEVICE:-4}                # episodes per GPU per forward/backward; 64 / (GPUS x PER_DEVICE) accumulation
# Rollouts (episodes and VinePPO's MC rollouts) on TRL's vLLM inside each training process (colocate): vLLM
# takes this share of each GPU beside the policy, the reference model and ZeRO-2's optimizer shards.
VLLM=(--use_vllm --vllm_mode colocate --vllm_gpu_memory_utilization 0.35)

slug() { echo "${1//\//--}"; }
per_iteration=$(( EPOCHS * PROMPTS * GENERATIONS / MINI_BATCH ))   # optimizer steps per iteration (16)

# 0. GSM8K's official files -> data/GSM8K/{train,test}.jsonl
python -m data.prepare --domain GSM8K

# 1. The SFT start (skipped for a published SFT checkpoint): GSM8K's train solutions, in the policy's chat
#    format, 3 epochs. The prompts are the ones RL and evaluation use (experiment.grpo_prompts formats both).
policy="$MODEL"
if [ "$MODEL_IS_SFT" = 0 ]; then
  python -m experiment.grpo_prompts --domain GSM8K --file train.jsonl --backend "$MODEL" --mode sft
  policy="models/ckpts/sft/$NAME"
  accelerate launch --config_file config/accelerate/multi_gpu.yaml --num_processes "$GPUS" \
    models/train.py "$MODEL" "$policy" "generate/Common/GSM8K/$(slug "$MODEL")/sft_data_train.jsonl" --mode sft \
    --deepspeed_config config/zero2_config.json --epochs 3 --lr 1e-5 --batch_size_per_device 8 \
    --save_strategy no --report_to wandb --seed "$SEED"
fi

# 2. RL data: one GRPO record per GSM8K train problem, formatted for the policy (no sampling first)
python -m experiment.grpo_prompts --domain GSM8K --file train.jsonl --backend "$policy"
data="generate/Common/GSM8K/$(slug "$policy")/grpo_data_train.jsonl"

# 3. The trainings: the same episodes per iteration in every arm; only the advantage differs
for arm in $ARMS; do
  save_dir="models/ckpts/vineppo/$NAME/$arm"
  accelerate launch --config_file config/accelerate/multi_gpu.yaml --num_processes "$GPUS" \
    models/train_vineppo.py "$policy" "$save_dir" "$data" --advantage "$arm" \
    --mc_rollouts "$K" --max_value_steps "$MAX_VALUE_STEPS" \
    --prompts_per_iteration "$PROMPTS" --num_generations "$GENERATIONS" --mini_batch_size "$MINI_BATCH" \
    --batch_size_per_device "$PER_DEVICE" --num_iterations "$EPOCHS" --epsilon "$CLIP" \
    --temperature "$T" --top_p "$TOP_P" --max_completion_length "$M" --max_prompt_length 1024 \
    --lr "$LR" --warmup_steps "$WARMUP" --max_grad_norm 1.0 --beta "$BETA" \
    --max_steps $(( ITERATIONS * per_iteration )) --save_steps $(( SAVE_EVERY * per_iteration )) \
    --deepspeed_config config/zero2_config.json --bf16 true "${VLLM[@]}" \
    --logging_steps 1 --report_to wandb --seed "$SEED"
done

# 4. Test accuracy (greedy pass@1 on GSM8K's 1,319 test problems) of the start and of every checkpoint;
#    compare two arms' files with `python -m evaluation.compare A_results.jsonl B_results.jsonl`.
python -m evaluation.eval --domain GSM8K --backend "$policy" --temperature 0 --n 1 --max_tokens "$M"
for arm in $ARMS; do
  for checkpoint in models/ckpts/vineppo/"$NAME"/"$arm"/checkpoint-*; do
    python -m evaluation.eval --domain GSM8K --backend "$checkpoint" --temperature 0 --n 1 --max_tokens "$M"
  done
done
