"""The HF Trainer path of `rms/train.py` (transformers_scalar, transformers_prob), and what both training
paths share: the dataset of formatted texts, the collator and the held-out metrics."""
from __future__ import annotations

import json
import logging
import os
import socket
from functools import partial

import numpy as np
import torch

from rms.value_models import (
    encode,
    format_input,
    load_backbone,
    model_outputs,
    outputs_to_values,
    prepare_tokenizer,
    value_loss,
)

logger = logging.getLogger(__name__)


class ValueRows(torch.utils.data.Dataset):
    """Rows {prompt, answer, reward} as {text, labels}; tokenization happens per batch in the collator."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        return {"text": format_input(row["prompt"], row["answer"]), "labels": row["reward"]}


class ValueCollator:
    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, items: list[dict]) -> dict:
        batch = encode(self.tokenizer, [item["text"] for item in items], self.max_length)
        batch["labels"] = torch.tensor([item["labels"] for item in items], dtype=torch.float32)
        return batch


def value_metrics(values, labels, min_rw: float, max_rw: float, tol: float) -> dict:
    """MSE and accuracy (|clip(value) - target| < tol) of predicted values against targets.

    >>> value_metrics([0.5, 1.2], [0.5, 0.9], 0.0, 1.0, 0.05)
    {'mse': 0.005, 'accuracy': 0.5}
    """
    errors = np.abs(np.clip(np.asarray(values, dtype=np.float64), min_rw, max_rw) - np.asarray(labels))
    return {"mse": round(float((errors ** 2).mean()), 12), "accuracy": float((errors < tol).mean())}


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a launcher's rendezvous (DDP here, deepspeed/accelerate in
    runs/gpu_check.py)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def deepspeed_dict(path: str, args) -> dict:
    """The DeepSpeed JSON with every field that is not "auto" among lr, weight decay, accumulation and
    micro batch overwritten by the command line ("auto" ones the Trainer fills the same way)."""
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    overrides = {"gradient_accumulation_steps": args.gradient_accumulation_steps,
                 "train_micro_batch_size_per_gpu": args.batch_size_per_device}
    for key, value in overrides.items():
        if key in config and config[key] != "auto":
            config[key] = value
    params = config.get("optimizer", {}).get("params", {})
    for key, value in (("lr", args.lr), ("weight_decay", args.weight_decay)):
        if key in params and params[key] != "auto":
            params[key] = value
    return config


class ValueTrainer:
    """Builds a transformers.Trainer whose loss is the value loss of the class (imported lazily)."""

    @staticmethod
    def make(rm_class: str, loss_weight_factor: float, **kwargs):
        from transformers import Trainer

        class _ValueTrainer(Trainer):
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                outputs = model_outputs(rm_class, model, inputs)
                loss = value_loss(rm_class, outputs, inputs["labels"], loss_weight_factor)
                return (loss, {"values": outputs_to_values(rm_class, outputs)}) if return_outputs else loss

        trainer = _ValueTrainer(**kwargs)
        trainer.model_accepts_loss_kwargs = False  # our loss is a batch mean: the Trainer scales accumulation
        return trainer


def training_arguments(args, deepspeed):
    from transformers import TrainingArguments

    from models.training import configure_cpu_deepspeed

    # gloo only for a distributed CPU run: a backend alone makes accelerate expect a process group
    backend = "nccl" if torch.cuda.is_available() else ("gloo" if "LOCAL_RANK" in os.environ else None)
    accelerator_config = configure_cpu_deepspeed(deepspeed)
    return TrainingArguments(
        accelerator_config=accelerator_config,
        output_dir=args.save_dir, do_train=True, do_eval=True, seed=args.seed, data_seed=args.seed,
        per_device_train_batch_size=args.batch_size_per_device, per_device_eval_batch_size=args.batch_size_per_device,
        num_train_epochs=args.epochs, max_steps=args.max_steps, learning_rate=args.lr,
        lr_scheduler_type=args.lr_scheduler_type, weight_decay=args.weight_decay,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        eval_strategy="steps", save_strategy="steps", eval_steps=args.save_steps, save_steps=args.save_steps,
        save_only_model=args.save_only_model, load_best_model_at_end=True, metric_for_best_model="eval_loss",
        greater_is_better=False, deepspeed=deepspeed, bf16=args.precision == "bf16", fp16=args.precision == "fp16",
        ddp_backend=backend, remove_unused_columns=False, label_names=["labels"],
        report_to=args.report_to, logging_steps=args.logging_steps, gradient_checkpointing=False)


def train_transformers(args, train_rows: list[dict], eval_rows: list[dict]) -> tuple[str | None, dict]:
    """Train, reload the best checkpoint, evaluate it and save it to SAVE_DIR/best. Returns (best dir, eval
    metrics) on the main process and (None, metrics) on the others."""
    from transformers import AutoTokenizer

    deepspeed = None
    if args.deepspeed_config:
        if "LOCAL_RANK" not in os.environ:  # plain `python rms/train.py`: one process, as the launcher sets it up
            os.environ.update(LOCAL_RANK="0", RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                              MASTER_PORT=str(free_port()))
        deepspeed = deepspeed_dict(args.deepspeed_config, args)
    # TrainingArguments first: under ZeRO-3 the model is then partitioned while it loads (zero.Init)
    training_args = training_arguments(args, deepspeed)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(args.backend))
    torch.manual_seed(args.seed)  # the new head's initialisation
    model = load_backbone(args.rm_class, args.backend, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    trainer = ValueTrainer.make(
        args.rm_class, args.loss_weight_factor, model=model, args=training_args,
        train_dataset=ValueRows(train_rows), eval_dataset=ValueRows(eval_rows),
        data_collator=ValueCollator(tokenizer, args.max_length), processing_class=tokenizer,
        compute_metrics=partial(_eval_prediction_metrics, args=args))
    if trainer.is_deepspeed_enabled:
        logger.info("DeepSpeed ZeRO stage %d", trainer.accelerator.state.deepspeed_plugin.zero_stage)
    trainer.train()
    metrics = trainer.evaluate()
    best_dir = os.path.join(args.save_dir, "best")
    trainer.save_model(best_dir)  # a collective under ZeRO-3: every rank takes part
    if not trainer.is_world_process_zero():
        return None, metrics
    tokenizer.save_pretrained(best_dir)
    return best_dir, metrics


def _eval_prediction_metrics(prediction, args) -> dict:
    return value_metrics(prediction.predictions, prediction.label_ids, args.min_rw, args.max_rw, args.test_tol)
