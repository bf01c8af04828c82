"""VinePPO policy training beside GRPO, on TRL: the same data files, launch, DeepSpeed configs, reward,
logging and resume as models/train_grpo.py; only the advantage estimator differs between its arms.

Reads a GRPO data JSONL (`experiment.process_gen_data --mode grpo`, or a math domain's records with the
same fields), samples `--prompts_per_iteration` problems x `--num_generations` solutions per iteration,
gives every token an advantage (`--advantage vine`: Monte Carlo values of the steps inside each
solution from `--mc_rollouts` rollouts; `critic`: PPO's learned value head, GAE gamma = lambda = 1;
`grpo`: TRL's group advantages) and updates the policy with PPO's clipped loss for `--num_iterations`
epochs in mini-batches of `--mini_batch_size` episodes. Writes the policy to SAVE_DIR (checkpoints in
SAVE_DIR/checkpoint-*, the reward log in SAVE_DIR/rewards.jsonl, the arguments in SAVE_DIR.args.json);
per-iteration metrics (vine/value_mean, vine/rollout_tokens, vine/rollout_seconds, advantages/raw_*,
critic/*) go to the trainer log and --report_to.

    accelerate launch models/train_vineppo.py MODEL models/ckpts/vineppo/<name>/<round> GRPO_DATA.jsonl \
        --deepspeed_config config/zero2_config.json --advantage vine --mc_rollouts 9 --report_to wandb

VinePPO's settings are the defaults: 64 problems x 8 solutions per iteration, temperature 0.6, top_p
0.9, 1,024 tokens, K = 9 rollouts, values up to step 24, PPO clip 0.2, 2 epochs, mini-batch 64, lr 1e-6
with 3% warm-up, gradient clip 1, KL beta 1e-4 (k3, clipped to [0, 10]). Every other GRPOConfig field
is a flag of its own type, as in train_grpo.py. Rollouts run on the hf engine here, on TRL's vLLM with
`--use_vllm` (colocate or server).
"""
from __future__ import annotations

import logging
import os

from data.jsonl import DataError
from evaluation.env_check import check_interpreters, parse_exec_python
from models.train_grpo import build_arguments as grpo_arguments
from models.train_grpo import build_reward, check_environment, load_dataset, stop_callbacks
from models.training import (
    configure_logging,
    exit_with_status,
    is_main_process,
    prepare_report_to,
    resolve_checkpoint,
    split_namespace,
    write_arguments,
)

logger = logging.getLogger("models.train_vineppo")

# VinePPO's settings where they differ from train_grpo.py's defaults
DEFAULTS = {"temperature": 0.6, "top_p": 0.9, "max_completion_length": 1024, "num_generations": 8,
            "learning_rate": 1e-6, "warmup_steps": 0.03, "max_grad_norm": 1.0, "epsilon": 0.2, "num_iterations": 2,
            "beta": 1e-4, "per_device_train_batch_size": 8}


def build_arguments():
    parser = grpo_arguments()
    parser.description = __doc__.split("\n")[0]
    parser.set_defaults(**DEFAULTS)
    group = parser.add_argument_group("VinePPO")
    group.add_argument("--advantage", choices=("vine", "grpo", "critic"), default="vine",
                       help="vine: Monte Carlo step values; critic: a learned value head (PPO); grpo: TRL's groups")
    group.add_argument("--mc_rollouts", type=int, default=9, help="K: rollouts per state for its value")
    group.add_argument("--max_value_steps", type=int, default=24,
                       help="states after this many steps take V_i = r_i + V_{i+1} instead of rollouts")
    group.add_argument("--prompts_per_iteration", type=int, default=64,
                       help="problems per iteration (x --num_generations episodes: sets --generation_batch_size)")
    group.add_argument("--mini_batch_size", type=int, default=64,
                       help="episodes per optimizer step over all processes (sets --gradient_accumulation_steps)")
    group.add_argument("--rollout_batch_size", type=int, default=None,
                       help="rollout rows decoded together on the hf engine (default 256 on CPU, 4096 on GPU)")
    group.add_argument("--critic_lr", type=float, default=1e-3, help="learning rate of the critic arm's value head")
    return parser


def plan_iteration(namespace, processes: int) -> None:
    """Set the generation batch (one iteration) and the accumulation (one mini-batch); DataError names
    the flags that fix sizes that do not divide."""
    per_pass = processes * namespace.per_device_train_batch_size
    episodes = namespace.prompts_per_iteration * namespace.num_generations
    if namespace.mini_batch_size % per_pass:
        raise DataError("--mini_batch_size", None, f"{namespace.mini_batch_size} episodes is not a multiple of "
                        f"{processes} process(es) x {namespace.per_device_train_batch_size} per device")
    if episodes % namespace.mini_batch_size:
        raise DataError("--prompts_per_iteration", None, f"{namespace.prompts_per_iteration} x "
                        f"{namespace.num_generations} episodes is not a multiple of --mini_batch_size "
                        f"{namespace.mini_batch_size}")
    namespace.gradient_accumulation_steps = namespace.mini_batch_size // per_pass
    namespace.generation_batch_size = episodes
    namespace.steps_per_generation = None


def main(argv: list[str] | None = None) -> int:
    from transformers import AutoTokenizer
    from trl import GRPOConfig

    from models.vine_trainer import EpisodeReward, VineTrainer, is_math

    configure_logging()
    namespace = build_arguments().parse_args(argv)
    plan_iteration(namespace, int(os.environ.get("WORLD_SIZE", "1")))
    try:
        config, script = split_namespace(GRPOConfig, namespace)
    except ValueError as exc:
        raise DataError("arguments", None, str(exc)) from None
    prepare_report_to(config.report_to)
    resume = resolve_checkpoint(config.resume_from_checkpoint, script.save_dir)
    tokenizer = AutoTokenizer.from_pretrained(script.model, padding_side="left")
    dataset = load_dataset(script.train_pth, tokenizer, script.max_prompt_length)
    code = dataset.filter(lambda record: not is_math(record["domain"]))  # math is graded without the sandbox
    code_reward = None
    if len(code):
        exec_python = parse_exec_python(script.exec_python)
        check_interpreters(exec_python)
        code_reward = build_reward(script, exec_python)
        check_environment(code, code_reward, script.skip_env_check)
    reward = EpisodeReward(code_reward, config.max_completion_length)
    trainer = VineTrainer(model=script.model, episode_reward=reward, args=config, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=stop_callbacks(script.stop_after_steps),
                          advantage=script.advantage, mc_rollouts=script.mc_rollouts,
                          max_value_steps=script.max_value_steps, rollout_batch_size=script.rollout_batch_size,
                          critic_lr=script.critic_lr)
    write_arguments(script.save_dir, script, config)
    try:
        trainer.train(resume_from_checkpoint=resume)
    finally:
        if code_reward is not None:
            code_reward.close()
    trainer.save_model(script.save_dir)
    if is_main_process():
        trainer.save_state()
        logger.info("policy saved to %s", script.save_dir)
    return 0


if __name__ == "__main__":
    exit_with_status(main)
