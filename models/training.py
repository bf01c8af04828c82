"""What the policy trainers (`models/train_grpo.py`, `models/train.py`) share: a command line made of
the original script's flags plus every field of the TRL config (with its own type), the training
data check, prompt truncation, precision from the model's dtype, the wandb fallback, and the
arguments file written next to the output."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from typing import Any, Sequence

from data.jsonl import DataError, read_jsonl, write_json
from models.gpu_plan import visible_gpus

logger = logging.getLogger(__name__)

# The original's flag names for TRL/transformers fields: flag -> (config field, type, help)
ALIASES = {
    "--lr": ("learning_rate", float, "learning rate (= --learning_rate)"),
    "--epochs": ("num_train_epochs", float, "training epochs (= --num_train_epochs)"),
    "--batch_size_per_device": ("per_device_train_batch_size", int,
                                "prompts x generations per device and step (= --per_device_train_batch_size)"),
    "--deepspeed_config": ("deepspeed", str, "DeepSpeed JSON config, e.g. config/zero2_config.json (= --deepspeed)"),
}


def build_parser(config_class: type, description: str, defaults: dict[str, Any]):
    """An `HfArgumentParser` over `config_class` (every field a flag of its own type, e.g.
    `--beta 0.04 --loss_type dapo`), with the positional MODEL SAVE_DIR TRAIN_JSONL, the original's
    aliases and the original's defaults."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(config_class, description=description, allow_abbrev=False,
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("model", help="policy: a Hugging Face model id or a local folder")
    parser.add_argument("save_dir", help="where the trained model goes, e.g. models/ckpts/grpo/<name>/<round>")
    parser.add_argument("train_pth", help="training data JSONL (written by experiment.process_gen_data)")
    for flag, (field, kind, help_text) in ALIASES.items():
        parser.add_argument(flag, dest=field, type=kind, help=help_text)
    parser.set_defaults(**defaults)
    return parser


def split_namespace(config_class: type, namespace: argparse.Namespace):
    """(config, script arguments): the config built from its own fields, the rest as a namespace.
    Precision follows the model's dtype unless --bf16/--fp16 were given (as the original did);
    TRL's own default would turn bf16 on even for a float32 model on CPU. GPUs that torch cannot use
    raise CudaUnusableError unless --use_cpu asks for the CPU (the Trainer would use the CPU unasked)."""
    values = vars(namespace).copy()
    names = {field.name for field in dataclasses.fields(config_class) if field.init}
    config_values = {name: values.pop(name) for name in list(values) if name in names}
    if not config_values.get("use_cpu"):
        visible_gpus()
    if config_values.get("bf16") is None and config_values.get("fp16") is None:
        config_values["bf16"], config_values["fp16"] = precision_of(values["model"])
    config_values["bf16"] = bool(config_values.get("bf16"))
    config_values["fp16"] = bool(config_values.get("fp16"))
    config_values["output_dir"] = values["save_dir"]
    if config_values.get("deepspeed"):
        single_process_environment()
        accelerator_config = configure_cpu_deepspeed(config_values["deepspeed"])
        if accelerator_config and "accelerator_config" in names:
            config_values["accelerator_config"] = {**(config_values.get("accelerator_config") or {}),
                                                   **accelerator_config}
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1 and not visible_gpus() > 0:
        # several processes on CPU (`accelerate launch --multi_gpu`, torchrun): without use_cpu accelerate finds
        # no backend and counts one process; with it, gloo and every process
        config_values["use_cpu"] = True
    if "model_init_kwargs" in names:
        config_values["model_init_kwargs"] = model_init_kwargs(config_values)
    return config_class(**config_values), argparse.Namespace(**values)


def model_init_kwargs(config_values: dict) -> dict:
    """TRL loads a model given by name in float32 unless told (61 GB of host memory per process for a
    7B model, the reference model again with --beta > 0). Under DeepSpeed with bf16/fp16 the policy
    loads in that precision (DeepSpeed keeps the float32 master weights in its optimizer); without
    DeepSpeed mixed precision needs float32 weights. An explicit `--model_init_kwargs '{"dtype": ...}'` wins.

    >>> model_init_kwargs({"deepspeed": "config/zero2_config.json", "bf16": True})
    {'dtype': 'bfloat16'}
    >>> model_init_kwargs({"bf16": True, "model_init_kwargs": {"dtype": "float16"}})
    {'dtype': 'float16'}
    """
    given = config_values.get("model_init_kwargs") or {}
    if isinstance(given, str):
        given = json.loads(given)
    kwargs = dict(given)
    mixed = "bfloat16" if config_values.get("bf16") else "float16" if config_values.get("fp16") else None
    kwargs.setdefault("dtype", mixed if mixed and config_values.get("deepspeed") else "float32")
    return kwargs


def configure_cpu_deepspeed(deepspeed) -> dict | None:
    """The `accelerator_config` that makes a multi-process DeepSpeed run on CPU count its processes.

    On CPU accelerate finds no backend for a DeepSpeed launch (`LOCAL_RANK` set, no GPU), takes its
    "no backend, no distributed training" branch and counts one process, while DeepSpeed counts them
    all: the Trainer then fills `train_batch_size` for one process and DeepSpeed stops with
    "train_batch_size is not equal to micro_batch_per_gpu * gradient_acc_step * world_size 4 != 4 * 1 * 2".
    With a GPU accelerate picks nccl and counts every process (8 on an 8-GPU node), so nothing is done
    there. Here the state is set up with gloo first and the Trainer told to use it."""
    if not deepspeed or visible_gpus() > 0 or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    state = PartialState(backend="gloo")
    logger.info("DeepSpeed on CPU: %d processes over gloo", state.num_processes)
    return {"use_configured_state": True}


def error_line(message: str) -> None:
    """`error: message` on stderr in one write, so the lines of several ranks never run together
    (launchers run python unbuffered: print would write the text and the newline apart)."""
    os.write(2, f"error: {message}\n".encode())


def exit_with_status(main) -> None:
    """A training script's `__main__`: exit with `main()`'s code, bad data or settings as one error line
    and exit 2, a sandbox or CUDA that cannot run as one line and exit 1 (as the stages say them)."""
    from evaluation.sandbox import SandboxError
    from models.errors import CudaUnusableError

    try:
        status = main()
        close_process_group()
        sys.exit(status)
    except DataError as exc:  # bad training data or settings: one line naming the file, line and field
        error_line(str(exc))
        sys.exit(2)
    except (SandboxError, CudaUnusableError) as exc:
        error_line(str(exc))
        sys.exit(1)


def close_process_group() -> None:
    """Destroy the default process group, if this process joined one, before the interpreter exits: left
    to finalization, gloo's worker threads can abort the process ("terminate called without an active
    exception", exit 250) after every file is written, which a launcher reports as a failed rank."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def single_process_environment() -> None:
    """Outside a distributed launcher (plain `python`, or `accelerate launch` with no config),
    DeepSpeed would look for MPI to find its rank; a lone process is rank 0 of 1 on localhost."""
    if "RANK" in os.environ or "OMPI_COMM_WORLD_RANK" in os.environ:
        return
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})


def precision_of(model: str) -> tuple[bool, bool]:
    """(bf16, fp16) for the dtype in the model's config (float32 or unknown: neither)."""
    from transformers import AutoConfig

    dtype = str(getattr(AutoConfig.from_pretrained(model), "dtype", None) or "")
    return "bfloat16" in dtype, "float16" in dtype and "bfloat16" not in dtype


def load_records(path: str, fields: Sequence[str]) -> list[dict]:
    """The records of a training JSONL, each holding `fields` as strings (else DataError
    "file:line: ..."); extra fields are dropped."""
    if not os.path.exists(path):
        raise DataError(path, None, "training data not found")
    records = []
    for line, record in read_jsonl(path):
        for name in fields:
            if name not in record:
                raise DataError(path, line, f"missing field {name!r}")
            if not isinstance(record[name], str):
                raise DataError(path, line, f"field {name!r} must be a string, got {type(record[name]).__name__}")
        records.append({name: record[name] for name in fields})
    if not records:
        raise DataError(path, None, "no training records")
    return records


def truncate_left(texts: list[str], tokenizer, max_length: int | None) -> list[str]:
    """`texts` cut from the left to at most `max_length` tokens (the original's prompt truncation,
    which TRL >= 1.0 no longer does); the count of cut texts is logged."""
    if not max_length or max_length <= 0:
        return texts
    result, cut = [], 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > max_length:
            text, cut = tokenizer.decode(ids[-max_length:]), cut + 1
        result.append(text)
    if cut:
        logger.warning("%d of %d prompts longer than %d tokens were cut from the left", cut, len(texts), max_length)
    return result


def prepare_report_to(report_to: list[str]) -> None:
    """wandb without a login runs offline (one notice) instead of stopping to ask for a key."""
    if "wandb" not in report_to or os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return
    netrc = os.path.join(os.path.expanduser("~"), ".netrc")
    if os.path.exists(netrc) and "api.wandb.ai" in open(netrc, encoding="utf-8").read():
        return
    os.environ["WANDB_MODE"] = "offline"
    logger.warning("wandb: not logged in, logging offline to ./wandb (sync later with `wandb sync`)")


def resolve_checkpoint(value: str | None, save_dir: str) -> str | bool | None:
    """--resume_from_checkpoint: a checkpoint folder, or `last`/`true` for the newest under save_dir."""
    if value is None or value.lower() in ("", "false", "none"):
        return None
    if value.lower() in ("last", "true"):
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(save_dir) if os.path.isdir(save_dir) else None
        if last is None:
            raise SystemExit(f"--resume_from_checkpoint {value}: no checkpoint-* folder in {save_dir}")
        return last
    if not os.path.isdir(value):
        raise SystemExit(f"--resume_from_checkpoint: {value} is not a folder")
    return value


def is_main_process(rank: int | None = None) -> bool:
    """Whether this is rank 0: `rank` when given (a spawned worker knows its own), else $RANK (set by
    accelerate, deepspeed and torchrun; absent, as in every single-process run, means 0)."""
    return (int(os.environ.get("RANK", "0")) if rank is None else rank) == 0


def write_arguments(save_dir: str, script: argparse.Namespace, config) -> None:
    """`<save_dir>.args.json`: the script's arguments and the full config (main process only)."""
    if not is_main_process():
        return
    record = {"script": vars(script), "config": json.loads(config.to_json_string())}
    write_json(save_dir.rstrip("/") + ".args.json", record)


def configure_logging(level: int = logging.INFO, rank: int | None = None) -> None:
    """The one logging setup of every script (stages through `experiment.stage`, trainers, benchmarks):
    records at `level` and above on stderr, one format; on a rank other than 0 (`is_main_process`) only
    warnings and errors, so that N training processes do not print every line N times."""
    logging.basicConfig(level=level if is_main_process(rank) else max(level, logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
