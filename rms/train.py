"""Train a value model on MCTS value targets.

Reads a rewards JSONL of `{prompt, answer, reward}` (written by `python -m experiment.process_gen_data
--method MCTS`), trains one of the in-house classes of `rms/value_models.py` on it and writes:

    SAVE_DIR/best/                 the best model by eval loss (save_pretrained, tokenizer, value_model.json)
    SAVE_DIR/test_results.jsonl    [{"model": SAVE_DIR/best, "result": {eval_loss, eval_mse, eval_accuracy, ...}}]
    SAVE_DIR/train.args.json       the arguments of this run
    SAVE_DIR/checkpoint-*/         (transformers classes) or SAVE_DIR/epoch*/ (standard_scalar)

`transformers_scalar` / `transformers_prob` train with the HF Trainer, under DeepSpeed when a config is given
(ZeRO-3 by default); `standard_scalar` trains with a plain loop (`--paradigm common`) or one process per GPU
(`--paradigm pytorch_ddp`). The eval set is `--test_pth` or a seeded split of the training file.

    deepspeed rms/train.py Qwen/Qwen2.5-Coder-7B-Instruct rms/ckpts/Qwen2.5-Coder-7B-Instruct/1 \\
        generate/MCTS/All/.../..._rewards.jsonl transformers_scalar --max_length 2048 \\
        --deepspeed_config rms/config/zero3_config.json --lr 1e-7 --epochs 2 --save_steps 0.5 --batch_size_per_device 1
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random

from data.jsonl import DataError, read_jsonl, write_json, write_jsonl
from models.gpu_plan import visible_gpus
from models.training import configure_logging, exit_with_status
from rms.value_models import IN_HOUSE_CLASSES, INPUT_FORMAT, METADATA_FILE

logger = logging.getLogger(__name__)

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config")
TRANSFORMERS_CLASSES = ("transformers_scalar", "transformers_prob")


def int_or_float(text: str) -> int | float:
    """`1` is an int (steps), `0.5` a float (a fraction of the run), as the original parses --save_steps."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("backend", help="base LM (HF id or directory) the value model starts from")
    add("save_dir", help="output directory; the best model goes to SAVE_DIR/best")
    add("train_pth", help="rewards JSONL with prompt, answer, reward")
    add("rm_class", nargs="?", choices=IN_HOUSE_CLASSES, help="value model class (also accepted as --rm_class)")
    add("--rm_class", dest="rm_class_flag", choices=IN_HOUSE_CLASSES, help="same as the positional RM_CLASS")
    add("--test_pth", help="held-out rewards JSONL used as the eval set (default: a seeded split of train_pth)")
    add("--state_pth", help="standard_scalar only: a state_dict (torch.save) to start from")
    add("--rm_type", default="prm", choices=["prm", "orm"], help="how MCTS uses the model (stored with it)")
    add("--paradigm", choices=["transformers_deepspeed", "common", "pytorch_ddp"],
        help="training loop; default transformers_deepspeed for transformers_*, common for standard_scalar")
    add("--deepspeed_config", default="rms/config/zero3_config.json",
        help="DeepSpeed JSON for the transformers classes ('none': plain Trainer); a relative path that does not "
             "exist here is looked up beside this script")
    add("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
        help="training precision (auto: bf16 on a GPU that supports it, else fp32)")
    add("--max_length", type=int, default=1024, help="max tokens per input; longer inputs lose their beginning")
    add("--lr", type=float, default=1e-7, help="learning rate")
    add("--lr_scheduler_type", default="constant", help="HF scheduler name (the original's is effectively constant)")
    add("--epochs", type=float, default=1, help="training epochs")
    add("--max_steps", type=int, default=-1, help="stop after this many optimizer steps (-1: by epochs)")
    add("--save_steps", type=int_or_float, default=0.25,
        help="eval and save every N steps, or every fraction of the run when below 1")
    add("--save_every", type=int, default=1, help="standard_scalar: save and evaluate every N epochs")
    add("--save_only_model", action="store_true", help="checkpoints without optimizer state (not with DeepSpeed)")
    add("--weight_decay", type=float, default=0.0, help="AdamW weight decay")
    add("--batch_size_per_device", type=int, default=4, help="per-device train and eval batch size")
    add("--gradient_accumulation_steps", type=int, default=1, help="gradient accumulation steps")
    add("--test_tol", type=float, default=0.05, help="a prediction within this of the target counts as accurate")
    add("--loss_weight_factor", type=float, default=0.5, help="transformers_prob: weight w of class 1, in [0, 1]")
    add("--min_rw", type=float, default=0.0, help="lowest value; targets below are an error, predictions clip")
    add("--max_rw", type=float, default=1.0, help="highest value; targets above are an error, predictions clip")
    add("--eval_fraction", type=float, default=0.05, help="share of train_pth held out when no --test_pth")
    add("--min_eval_rows", type=int, default=100, help="at least this many held-out rows (at most half the data)")
    add("--num_processes", type=int, default=0, help="pytorch_ddp: processes (0: one per GPU, else 2 on CPU)")
    add("--seed", type=int, default=42, help="seed of the split, the shuffling and the new head")
    add("--report_to", default="wandb", help="wandb, tensorboard or none (wandb goes offline without a key)")
    add("--logging_steps", type=int, default=10, help="log the training loss every N steps")
    add("--local_rank", type=int, default=-1, help="set by the deepspeed launcher")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rm_class and args.rm_class_flag and args.rm_class != args.rm_class_flag:
        parser.error(f"rm_class given twice: {args.rm_class} and --rm_class {args.rm_class_flag}")
    args.rm_class = args.rm_class or args.rm_class_flag
    del args.rm_class_flag
    if not args.rm_class:
        parser.error("rm_class is required (positional or --rm_class)")
    standard = args.rm_class == "standard_scalar"
    args.paradigm = args.paradigm or ("common" if standard else "transformers_deepspeed")
    if standard != (args.paradigm in ("common", "pytorch_ddp")):
        parser.error(f"--paradigm {args.paradigm} does not train {args.rm_class} "
                     "(standard_scalar: common or pytorch_ddp; transformers_*: transformers_deepspeed)")
    if standard and args.precision == "fp16":
        parser.error("standard_scalar trains in bf16 or fp32 (fp16 would need loss scaling)")
    if not 0 <= args.loss_weight_factor <= 1:
        parser.error(f"--loss_weight_factor must be in [0, 1], got {args.loss_weight_factor}")
    if args.min_rw >= args.max_rw:
        parser.error(f"--min_rw {args.min_rw} must be below --max_rw {args.max_rw}")
    for flag, path in (("train_pth", args.train_pth), ("--test_pth", args.test_pth), ("--state_pth", args.state_pth)):
        if path and not os.path.isfile(path):
            parser.error(f"{flag} not found: {path}")
    args.deepspeed_config = find_deepspeed_config(parser, args.deepspeed_config)
    if args.deepspeed_config and args.save_only_model:
        parser.error("--save_only_model cannot be combined with DeepSpeed (the best checkpoint is reloaded at the end)")
    return args


def find_deepspeed_config(parser, path: str | None) -> str | None:
    if not path or path.lower() == "none":
        return None
    if os.path.exists(path):
        return os.path.abspath(path)
    beside = os.path.join(CONFIG_DIR, os.path.basename(path))
    if not os.path.isabs(path) and os.path.exists(beside):
        return beside
    parser.error(f"--deepspeed_config not found: {path}")


def read_value_data(path: str, min_rw: float, max_rw: float) -> list[dict]:
    """Rows {prompt, answer, reward}; a missing field or a reward outside [min_rw, max_rw] is an error."""
    rows = []
    for line, record in read_jsonl(path):
        for field, kind in (("prompt", str), ("answer", str), ("reward", (int, float))):
            if not isinstance(record.get(field), kind) or isinstance(record.get(field), bool):
                raise DataError(path, line, f"field '{field}' missing or not a {getattr(kind, '__name__', 'number')}")
        if not min_rw <= record["reward"] <= max_rw:
            raise DataError(path, line, f"reward {record['reward']} outside [{min_rw}, {max_rw}]")
        rows.append({"prompt": record["prompt"], "answer": record["answer"], "reward": float(record["reward"])})
    if not rows:
        raise DataError(path, None, "no value rows")
    return rows


def split_rows(rows: list[dict], eval_fraction: float, min_eval_rows: int, seed: int) -> tuple[list, list]:
    """A seeded held-out split by problem (rows with the same prompt stay on one side, so that
    near-duplicate programs of one problem never sit on both): whole problems are held out until
    they hold max(eval_fraction of the rows, min_eval_rows) rows, never more than half the rows."""
    size = max(math.ceil(len(rows) * eval_fraction), min_eval_rows)
    problems: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        problems.setdefault(row["prompt"], []).append(index)
    if len(problems) < 2:
        raise ValueError(f"{len(rows)} value rows of {len(problems)} problem(s) are too few to hold out an eval "
                         "set by problem; pass --test_pth")
    order = sorted(problems)
    random.Random(seed).shuffle(order)
    held: list[int] = []
    for prompt in order[:-1]:  # at least one problem stays in training
        if len(held) >= size or (held and len(held) + len(problems[prompt]) > len(rows) // 2):
            break
        held += problems[prompt]
    chosen = set(held)
    return [row for index, row in enumerate(rows) if index not in chosen], [rows[index] for index in sorted(held)]


def resolve_precision(precision: str) -> str:
    import torch

    if precision != "auto":
        return precision
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def configure_reporting(report_to: str) -> str:
    """wandb without credentials writes an offline run instead of failing at the first log."""
    if report_to == "wandb" and not os.environ.get("WANDB_API_KEY") and "WANDB_MODE" not in os.environ:
        os.environ["WANDB_MODE"] = "offline"
        logger.info("no WANDB_API_KEY: wandb logs offline")
    return report_to


def write_results(args, best_dir: str, metrics: dict) -> None:
    write_jsonl(os.path.join(args.save_dir, "test_results.jsonl"), [{"model": best_dir, "result": metrics}])
    write_json(os.path.join(best_dir, METADATA_FILE),
               {"rm_class": args.rm_class, "rm_type": args.rm_type, "max_length": args.max_length,
                "input_format": INPUT_FORMAT, "base": args.backend})
    logger.info("best model in %s: %s", best_dir, json.dumps(metrics))


def main(argv=None) -> dict:
    """Train and save; raises CudaUnusableError (before any work) when NVML sees GPUs that torch cannot use,
    rather than training on the CPU unasked (CUDA_VISIBLE_DEVICES= asks for the CPU)."""
    args = parse_args(argv)
    visible_gpus()
    os.makedirs(args.save_dir, exist_ok=True)
    args.precision = resolve_precision(args.precision)
    write_json(os.path.join(args.save_dir, "train.args.json"), vars(args))
    train_rows = read_value_data(args.train_pth, args.min_rw, args.max_rw)
    if args.test_pth:
        eval_rows = read_value_data(args.test_pth, args.min_rw, args.max_rw)
    else:
        train_rows, eval_rows = split_rows(train_rows, args.eval_fraction, args.min_eval_rows, args.seed)
    logger.info("%d training rows, %d eval rows", len(train_rows), len(eval_rows))
    configure_reporting(args.report_to)
    if args.rm_class in TRANSFORMERS_CLASSES:
        from rms.trainer import train_transformers

        best_dir, metrics = train_transformers(args, train_rows, eval_rows)
    else:
        from rms.scalar_loop import train_standard_scalar

        best_dir, metrics = train_standard_scalar(args, train_rows, eval_rows)
    if best_dir is not None:  # only the main process writes
        write_results(args, best_dir, metrics)
    return metrics


def cli() -> int:
    main()
    return 0


if __name__ == "__main__":
    configure_logging()  # warnings only on ranks other than 0
    exit_with_status(cli)  # bad data: one line, exit 2; CUDA that cannot run: one line, exit 1 (on every rank)
