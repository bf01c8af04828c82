#!/usr/bin/env bash
# The paper's full recipe on GPU machines, from the README's own commands, chained with the paths each
# step really writes. Run from the repository root after `make install` (plus `pip install -e .[vllm]`):
#   bash runs/paper_pipeline.sh
# Every stage resumes by problem id, so a killed run picks up where it stopped when started again.
# Settings first; the paper's values.
set -euo pipefail

MODEL=${MODEL:-"Qwen/Qwen2.5-Coder-7B-Instruct"}   # round 0 policy (a hub id or a local path)
NAME=${NAME:-"Qwen2.5-Coder-7B-Instruct"}           # checkpoint folder name under models/ckpts/grpo and rms/ckpts
ROUNDS=${ROUNDS:-2}                                 # ReST-GRPO rounds (the paper reports two)
T=0.7; M=1024; N=5                                  # sampling: temperature, max tokens, samples per problem
STD=0.05; ACCEPT=0.9; N_SAMPLE=0.5; ALPHA=0.95      # ReST-GRPO data: std filter, best-program bar, prefixes
# MCTS for value targets. The original README samples with --num_decision 5 but processes and trains on a
# decision_3 file (process_gen_data's default): one setting is used for all three steps here.
ITER=100; NUM_SAMPLE=5; NUM_DECISION=5; EXP=0.2; EPS=0.1
# VM-MCTS decoding (the README's evaluation settings)
EVAL_ITER=15; EVAL_DECISION=5; EVAL_EXP=0.1; EVAL_EPS=0.1; EVAL_SAMPLE=5
# One node of GPUS GPUs (8 x 80 GB for the paper's 7B policies). Sampling, MCTS and evaluation pick vLLM's
# layout themselves: the smallest tensor-parallel size that divides the model's heads and fits (1 for a 7B
# model: Qwen2.5-7B's 28 heads refuse tp 8), and one engine per remaining GPU group (data parallel: 8
# engines, each on its own GPU, the prompts of every call split between them). With a reward/value model
# the RM gets the last GPU and the policy the other 7; on one GPU they share it (vLLM's memory fraction
# lowered by the RM's size). VLLM_FLAGS pins the layout instead, e.g. "--vllm_tensor_parallel_size 2".
GPUS=${GPUS:-8}
VLLM_FLAGS=${VLLM_FLAGS:-""}
# GRPO: 2 prompts x 8 generations per device and step on 8 GPUs is 2 prompt groups per optimizer step;
# --prompts_per_step 2 keeps that on any GPU count (the accumulation becomes 16 / (GPUS x 2)).
PROMPTS_PER_STEP=2

slug() { echo "${1//\//--}"; }                      # the output-path form of a model id or path
exec_python() {                                     # BigCodeBench and DS-1000 programs need their libraries
  case "$1" in
    BigCodeBench) echo "--exec_python .venv-bigcodebench/bin/python" ;;
    DS1000) echo "--exec_python .venv-ds1000/bin/python" ;;
    *) echo "" ;;
  esac
}
# GRPO trains on the aggregated data of all three domains: each domain's programs in its interpreter
GRPO_EXEC_PYTHON="--exec_python BigCodeBench=.venv-bigcodebench/bin/python DS1000=.venv-ds1000/bin/python"

# 0. Data and the execution environments of BigCodeBench and DS-1000 (once).
python -m data.prepare --domain all                 # data/<Domain>/...; APPS also test_500.jsonl
[ -x .venv-bigcodebench/bin/python ] || python -m data.build_env --domain BigCodeBench
[ -x .venv-ds1000/bin/python ] || python -m data.build_env --domain DS1000

# Stage 1: ReST-GRPO, round r trains on samples of round r-1's policy.
policy="$MODEL"
for round in $(seq 1 "$ROUNDS"); do
  # 1.1 sample N programs per training problem, verified as they come
  for domain in BigCodeBench DS1000 APPS; do
    # shellcheck disable=SC2046
    python -m experiment.sample --domain "$domain" --backend "$policy" --n "$N" --temperature "$T" \
      --max_tokens "$M" $VLLM_FLAGS $(exec_python "$domain")
  done
  # 1.2 ReST-GRPO data: std filter + prefixes of each kept problem's best program, aggregated over domains
  python -m experiment.process_gen_data --domain code --method Common --mode grpo --backend "$policy" \
    --temperature "$T" --max_tokens "$M" --std_accept_threshold_grpo "$STD" \
    --completion_accept_threshold_grpo "$ACCEPT" --n_sample "$N_SAMPLE" --alpha "$ALPHA" --do_aggregate
  data="generate/Common/All/$(slug "$policy")/temp_${T}_tokens_${M}_grpo_data_${STD}_${ACCEPT}_${N_SAMPLE}_${ALPHA}.jsonl"
  # 1.3 one GRPO round: one process per GPU, DeepSpeed ZeRO-2, the policy in bf16 (see models/run_grpo.sh)
  save_dir="models/ckpts/grpo/$NAME/$round"
  # shellcheck disable=SC2086
  accelerate launch --config_file config/accelerate/multi_gpu.yaml --num_processes "$GPUS" \
    models/train_grpo.py "$policy" "$save_dir" "$data" \
    --max_prompt_length 1024 --max_completion_length "$M" --num_generations 8 --log_completions \
    --deepspeed_config config/zero2_config.json --lr 1e-7 --epochs 1 --save_steps 0.5 \
    --batch_size_per_device 2 --prompts_per_step "$PROMPTS_PER_STEP" --symbol_reward 1e-3 \
    --trailing_penalty 1e-6 --beta 0.04 --loss_type bnpo --scale_rewards group --report_to wandb \
    $GRPO_EXEC_PYTHON
  policy="$save_dir"
done

# Stage 2: the value model, trained on MCTS traces of the final policy (the one it will guide).
for domain in BigCodeBench DS1000 APPS; do
  # shellcheck disable=SC2046
  python -m experiment.sample_mcts --domain "$domain" --backend "$policy" --iteration_limit "$ITER" \
    --num_sample "$NUM_SAMPLE" --num_decision "$NUM_DECISION" --exploration_constant "$EXP" --eps "$EPS" \
    --temperature "$T" --max_tokens "$M" $VLLM_FLAGS $(exec_python "$domain")
done
python -m experiment.process_gen_data --domain code --method MCTS --backend "$policy" --temperature "$T" \
  --max_tokens "$M" --iteration_limit "$ITER" --num_sample "$NUM_SAMPLE" --num_decision "$NUM_DECISION" \
  --exploration_constant "$EXP" --eps "$EPS" --do_aggregate
values="generate/MCTS/All/$(slug "$policy")/time_None_iter_${ITER}_sample_${NUM_SAMPLE}_decision_${NUM_DECISION}_exp_${EXP}_eps_${EPS}_temp_${T}_tokens_${M}_thought_no_domains_BigCodeBench_DS1000_APPS_rewards.jsonl"
value_model="rms/ckpts/$NAME/1"                     # the best model lands in $value_model/best
deepspeed --num_gpus "$GPUS" rms/train.py "$policy" "$value_model" "$values" transformers_scalar --max_length 2048 \
  --deepspeed_config rms/config/zero3_config.json --lr 1e-7 --epochs 2 --save_steps 0.5 --batch_size_per_device 1

# Evaluation: the trained policy alone (pass@1), and with VM-MCTS, on every benchmark of the paper's tables.
for domain in HumanEval HumanEvalPlus MBPP MBPPPlus APPS BigCodeBench; do
  # shellcheck disable=SC2046
  python -m evaluation.eval --method Common --domain "$domain" --backend "$policy" --n 1 \
    --temperature "$T" --max_tokens "$M" $VLLM_FLAGS $(exec_python "$domain")
  # shellcheck disable=SC2046
  python -m evaluation.eval --method MCTS --domain "$domain" --backend "$policy" --rm_backend "$value_model" \
    --rm_class transformers_scalar --rm_type prm --max_length 2048 --iteration_limit "$EVAL_ITER" \
    --num_decision "$EVAL_DECISION" --exploration_constant "$EVAL_EXP" --eps "$EVAL_EPS" --n 1 \
    --num_sample "$EVAL_SAMPLE" --temperature "$T" --max_tokens "$M" $VLLM_FLAGS $(exec_python "$domain")
done
# Results: output/<domain>_results/{Common,MCTS}/<policy slug>/*_results.jsonl (pass@1 with its interval).
