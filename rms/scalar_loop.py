"""`standard_scalar` training for `rms/train.py`: a plain loop (`--paradigm common`) or one process per device
under torch DDP (`--paradigm pytorch_ddp`: one per GPU with nccl; on a CPU machine `--num_processes`, default 2,
with gloo). Every `--save_every` epochs (and after the last) rank 0 saves `SAVE_DIR/epoch<e>/` and evaluates it
on the eval set; the epoch with the lowest eval MSE is copied to `SAVE_DIR/best`."""
from __future__ import annotations

import logging
import math
import os
import shutil

import torch
from torch.utils.data import DataLoader

from models.training import configure_logging
from rms.trainer import ValueCollator, ValueRows, free_port, value_metrics
from rms.value_models import StandardScalarModel, model_outputs, prepare_tokenizer

logger = logging.getLogger(__name__)


def train_standard_scalar(args, train_rows: list[dict], eval_rows: list[dict]) -> tuple[str | None, dict]:
    if args.paradigm == "common":
        return run(0, 1, args, train_rows, eval_rows)
    import torch.multiprocessing as mp

    world_size = args.num_processes or torch.cuda.device_count() or 2
    results = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_ddp_worker, args=(world_size, free_port(), args, train_rows, eval_rows, results), nprocs=world_size,
             join=True)
    return results.get()


def _ddp_worker(rank, world_size, port, args, train_rows, eval_rows, results) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    configure_logging(rank=rank)  # a spawned worker: $RANK is not set, the rank is its argument
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", rank=rank, world_size=world_size)
    try:
        result = run(rank, world_size, args, train_rows, eval_rows)
        if rank == 0:
            results.put(result)
    finally:
        dist.destroy_process_group()


def load_model(args, device):
    from transformers import AutoTokenizer

    torch.manual_seed(args.seed)  # the new head's initialisation, identical on every rank
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(args.backend))
    model = StandardScalarModel.from_pretrained(args.backend, dtype=torch.float32, head_required=False)
    if args.state_pth:
        model.load_state_dict(torch.load(args.state_pth, map_location="cpu", weights_only=True))
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device).train(), tokenizer


def run(rank: int, world_size: int, args, train_rows, eval_rows) -> tuple[str | None, dict]:
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data.distributed import DistributedSampler
    from tqdm import tqdm

    device = torch.device(f"cuda:{rank}" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_model(args, device)
    trained = DistributedDataParallel(model, device_ids=[rank] if device.type == "cuda" else None) \
        if world_size > 1 else model
    collator = ValueCollator(tokenizer, args.max_length)
    dataset = ValueRows(train_rows)
    sampler = DistributedSampler(dataset, world_size, rank, shuffle=True, seed=args.seed) if world_size > 1 else None
    loader = DataLoader(dataset, batch_size=args.batch_size_per_device, shuffle=sampler is None, sampler=sampler,
                        collate_fn=collator, generator=torch.Generator().manual_seed(args.seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    epochs, step, saved = math.ceil(args.epochs), 0, []
    for epoch in range(1, epochs + 1):
        if sampler is not None:
            sampler.set_epoch(epoch)
        for index, batch in enumerate(tqdm(loader, desc=f"epoch {epoch}", disable=rank != 0)):
            batch = {key: value.to(device) for key, value in batch.items()}
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                outputs = model_outputs("standard_scalar", trained, batch)
            loss = torch.nn.functional.mse_loss(outputs.float(), batch["labels"]) / args.gradient_accumulation_steps
            loss.backward()
            if (index + 1) % args.gradient_accumulation_steps == 0:
                optimizer.step()
                optimizer.zero_grad()
                step += 1
                if rank == 0 and step % args.logging_steps == 0:
                    logger.info("step %d: loss %.5f", step, loss.item() * args.gradient_accumulation_steps)
            if 0 < args.max_steps <= step:
                break
        last = epoch == epochs or 0 < args.max_steps <= step
        if epoch % args.save_every == 0 or last:
            if rank == 0:
                saved.append(save_and_evaluate(model, tokenizer, collator, args, eval_rows, epoch, device))
            if world_size > 1:
                torch.distributed.barrier()
        if last:
            break
    if rank != 0:
        return None, {}
    metrics, directory = min(saved, key=lambda item: item[0]["eval_loss"])
    best_dir = os.path.join(args.save_dir, "best")
    shutil.rmtree(best_dir, ignore_errors=True)
    shutil.copytree(directory, best_dir)
    return best_dir, metrics


def save_and_evaluate(model, tokenizer, collator, args, eval_rows, epoch, device) -> tuple[dict, str]:
    directory = os.path.join(args.save_dir, f"epoch{epoch}")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    metrics = evaluate(model, collator, args, eval_rows, device)
    metrics["epoch"] = epoch
    logger.info("epoch %d: %s", epoch, metrics)
    return metrics, directory


def evaluate(model, collator, args, rows, device) -> dict:
    """eval_loss is the MSE of the raw outputs (what training lowers); eval_mse and eval_accuracy clip first."""
    model.eval()
    values = []
    with torch.inference_mode():
        for start in range(0, len(rows), args.batch_size_per_device):
            chunk = ValueRows(rows[start:start + args.batch_size_per_device])
            batch = collator([chunk[index] for index in range(len(chunk))])
            batch = {key: value.to(device) for key, value in batch.items()}
            values.extend(model_outputs("standard_scalar", model, batch).tolist())
    model.train()
    labels = [row["reward"] for row in rows]
    raw = value_metrics(values, labels, -math.inf, math.inf, args.test_tol)
    clipped = value_metrics(values, labels, args.min_rw, args.max_rw, args.test_tol)
    return {"eval_loss": raw["mse"], "eval_mse": clipped["mse"], "eval_accuracy": clipped["accuracy"]}
