"""Policy baselines, as the original trains them, on TRL's trainers: ReST-EM style SFT and ReST-DPO.

Reads the files `experiment.process_gen_data` writes:
  --mode sft  `{prompt, completion}` (accepted programs, closed with their end marker) -> SFTTrainer,
              loss on the completion only (TRL appends the end-of-turn token);
  --mode dpo  `{prompt, chosen, rejected}` (best and worst program of a problem) -> DPOTrainer
              (the reference model is a frozen copy of MODEL).
Prompts are used verbatim (chat template and open assistant turn included). Writes the model to
SAVE_DIR with `save_pretrained` (checkpoints in SAVE_DIR/checkpoint-*, arguments in
SAVE_DIR.args.json; with --test_pth, evaluation metrics in SAVE_DIR/test_results.jsonl).

    python models/train.py MODEL models/ckpts/sft/<name>/<round> SFT_DATA.jsonl --mode sft --lr 2e-5

(also under `accelerate launch`, with --deepspeed_config config/zero2_config.json). Every field of
SFTConfig / DPOConfig is a flag (e.g. `--beta 0.1 --loss_type sigmoid` for DPO). Naive GRPO is
models/train_grpo.py on the `basic` data; DAPO is `--loss_type dapo --epsilon_high 0.28` there.
"""
from __future__ import annotations

import argparse
import json
import logging

from data.jsonl import DataError, JsonlAppender
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

logger = logging.getLogger("models.train")

FIELDS = {"sft": ("prompt", "completion"), "dpo": ("prompt", "chosen", "rejected")}
# The original script's defaults where they differ from TRL's
DEFAULTS = {"learning_rate": 2e-5, "num_train_epochs": 1.0, "save_steps": 0.5, "per_device_train_batch_size": 4,
            "report_to": "wandb", "max_length": 2048, "bf16": None, "fp16": None}


def config_class(mode: str):
    from trl import DPOConfig, SFTConfig

    return {"sft": SFTConfig, "dpo": DPOConfig}[mode]


def build_arguments(mode: str):
    parser = build_parser(config_class(mode), __doc__.split("\n")[0], DEFAULTS)
    group = parser.add_argument_group("baselines")
    group.add_argument("--mode", choices=tuple(FIELDS), default="sft", help="which baseline")
    group.add_argument("--test_pth", default=None, help="held-out JSONL of the same kind, evaluated every save")
    group.add_argument("--max_seq_length", dest="max_length", type=int, help="(= --max_length) tokens per example")
    group.add_argument("--max_prompt_length", type=int, default=1024,
                       help="prompts longer than this many tokens are cut from the left (<= 0: never)")
    group.add_argument("--max_completion_length", type=int, default=1024,
                       help="completions longer than this many tokens are cut from the right (<= 0: never)")
    return parser


def read_mode(argv: list[str] | None) -> str:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--mode", choices=tuple(FIELDS), default="sft")
    return parser.parse_known_args(argv)[0].mode


def load_dataset(path: str, mode: str, tokenizer, max_prompt_length: int, max_completion_length: int):
    from datasets import Dataset

    records = load_records(path, FIELDS[mode])
    prompts = truncate_left([record["prompt"] for record in records], tokenizer, max_prompt_length)
    for record, prompt in zip(records, prompts):
        record["prompt"] = prompt
        for name in FIELDS[mode][1:]:
            record[name] = truncate_right(record[name], tokenizer, max_completion_length)
    logger.info("%d %s records from %s", len(records), mode, path)
    return Dataset.from_list(records)


def truncate_right(text: str, tokenizer, max_length: int) -> str:
    if not max_length or max_length <= 0:
        return text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_length else tokenizer.decode(ids[:max_length])


def build_trainer(mode: str, config, model: str, tokenizer, train, test):
    from trl import DPOTrainer, SFTTrainer

    if mode == "sft":
        return SFTTrainer(model=model, args=config, train_dataset=train, eval_dataset=test,
                          processing_class=tokenizer)
    return DPOTrainer(model=model, args=config, train_dataset=train, eval_dataset=test, processing_class=tokenizer)


def main(argv: list[str] | None = None) -> int:
    from transformers import AutoTokenizer

    configure_logging()
    mode = read_mode(argv)
    try:
        config, script = split_namespace(config_class(mode), build_arguments(mode).parse_args(argv))
    except ValueError as exc:  # settings the trainer's config rejects
        raise DataError("arguments", None, str(exc)) from None
    if script.test_pth:
        config.eval_strategy, config.eval_steps, config.do_eval = "steps", config.save_steps, True
    prepare_report_to(config.report_to)
    resume = resolve_checkpoint(config.resume_from_checkpoint, script.save_dir)
    tokenizer = AutoTokenizer.from_pretrained(script.model, padding_side="left")
    lengths = (script.max_prompt_length, script.max_completion_length)
    train = load_dataset(script.train_pth, mode, tokenizer, *lengths)
    test = load_dataset(script.test_pth, mode, tokenizer, *lengths) if script.test_pth else None
    trainer = build_trainer(mode, config, script.model, tokenizer, train, test)
    write_arguments(script.save_dir, script, config)
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(script.save_dir)  # save_pretrained of the model and its tokenizer
    if test is not None:
        metrics = trainer.evaluate()
        if is_main_process():
            with JsonlAppender(f"{script.save_dir}/test_results.jsonl") as results:
                results.write(json.loads(json.dumps(metrics, default=float)))
    if is_main_process():
        trainer.save_state()
        logger.info("%s model saved to %s", mode, script.save_dir)
    return 0


if __name__ == "__main__":
    exit_with_status(main)
