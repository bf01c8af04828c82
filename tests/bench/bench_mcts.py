"""Benchmark: the batched MCTS (experiment/mcts_batch.py) vs the same code run one problem and one node
at a time (the original's way: `max_active=1, leaves_per_tree=1`), at the same iteration budget, on
TinyCode test problems with the tiny policy on CPU and the real sandbox.

Prints, per mode and run: policy calls, prompts, generated tokens, expansions, programs run, wall
time and wall time per expansion; then the ratio sequential/batched of wall time per expansion and
one JSON line. Target: batched >= 3x faster per expansion.

The policy is models/ckpts/tiny-coder when present (the trained tiny policy), else a tiny random
Qwen2 built on the spot (its samples run to --max_tokens: the figures say so).

    python tests/bench/bench_mcts.py [--problems 16] [--iteration_limit 4] [--num_sample 4] [--runs 1]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET = 3.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default=str(REPO / "models" / "ckpts" / "tiny-coder"),
                        help="policy directory (a random tiny model when absent)")
    parser.add_argument("--problems", type=int, default=16, help="TinyCode test problems searched")
    parser.add_argument("--iteration_limit", type=int, default=4, help="MCTS iterations per problem")
    parser.add_argument("--num_sample", type=int, default=4, help="completions per expansion")
    parser.add_argument("--num_decision", type=int, default=3, help="visible children per node")
    parser.add_argument("--max_tokens", type=int, default=96, help="max new tokens per completion")
    parser.add_argument("--leaves_per_tree", type=int, default=2, help="batched mode: leaves per tree per round")
    parser.add_argument("--batch_size", type=int, default=None, help="hf engine: rows per batch (default: its own)")
    parser.add_argument("--workers", type=int, default=2, help="sandbox workers")
    parser.add_argument("--runs", type=int, default=1, help="runs of each mode (alternating)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def policy_path(args: argparse.Namespace, scratch: str) -> tuple[str, str]:
    if os.path.exists(os.path.join(args.policy, "config.json")):
        return args.policy, "trained"
    from data.tinycode import generate
    from models.tiny import build_model, build_tokenizer

    train, _ = generate(seed=0, n_train=200, n_test=0)
    tokenizer = build_tokenizer([record["prompt"] + record["solution"] for record in train], vocab_size=400)
    build_model(tokenizer, hidden_size=64, layers=2).save_pretrained(scratch)
    tokenizer.save_pretrained(scratch)
    return scratch, f"random (no {args.policy})"


def load_problems(count: int, scratch: str):
    from data.registry import get_benchmark
    from data.tinycode import write

    directory = REPO / "data" / "TinyCode"
    if not (directory / "test.jsonl").exists():
        directory = Path(scratch) / "TinyCode"
        write(str(directory), seed=0, n_train=10, n_test=max(count, 16))
    return get_benchmark("TinyCode").load(str(directory), "test.jsonl")[:count]


def search_once(problems, backend, sandbox, args, batched: bool) -> dict:
    from data.registry import get_benchmark
    from evaluation.judging import verify
    from experiment.mcts_batch import SearchConfig, run_searches
    from prompts import format_prompt, get_stop_strings

    benchmark = get_benchmark("TinyCode")
    config = SearchConfig(domain="TinyCode", num_sample=args.num_sample, num_decision=args.num_decision,
                          iteration_limit=args.iteration_limit, max_tokens=args.max_tokens,
                          stop=get_stop_strings("TinyCode"), seed=args.seed,
                          seed_per_prompt=backend.batches_seeded_prompts,
                          max_active=len(problems) if batched else 1,
                          leaves_per_tree=args.leaves_per_tree if batched else 1)
    stats = Counter()
    started = time.perf_counter()
    run_searches(problems, backend, config,
                 lambda problem, state: format_prompt(problem, backend.tokenizer, state=state),
                 evaluate=lambda items: [[v.reward for v in group] for group in verify(sandbox, benchmark, items)],
                 stats=stats)
    wall = time.perf_counter() - started
    return {"mode": "batched" if batched else "sequential", "policy_calls": stats["policy_calls"],
            "prompts": stats["prompts"], "generated_tokens": stats["generated_tokens"],
            "expansions": stats["expansions"], "programs_run": stats["programs_scored"], "wall_s": round(wall, 2),
            "wall_per_expansion_s": round(wall / max(1, stats["expansions"]), 3)}


def main() -> int:
    from models.training import configure_logging

    configure_logging(logging.WARNING)
    args = parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from evaluation.sandbox import Sandbox
    from models.generation import build_backend

    with tempfile.TemporaryDirectory() as scratch:
        path, kind = policy_path(args, os.path.join(scratch, "policy"))
        problems = load_problems(args.problems, scratch)
        backend = build_backend(path, engine="hf", device="cpu", batch_size=args.batch_size)
        print(f"policy: {kind} ({path}); {len(problems)} problems, iteration_limit {args.iteration_limit}, "
              f"num_sample {args.num_sample}, max_tokens {args.max_tokens}, hf batch_size {args.batch_size}")
        rows = []
        with Sandbox(workers=args.workers) as sandbox:
            search_once(problems[:1], backend, sandbox, args, batched=False)  # warm-up: first-call costs
            for _ in range(args.runs):
                for batched in (False, True):
                    row = search_once(problems, backend, sandbox, args, batched)
                    rows.append(row)
                    print("  ".join(f"{key}={value}" for key, value in row.items()))
    per_expansion = {mode: statistics.median(row["wall_per_expansion_s"] for row in rows if row["mode"] == mode)
                     for mode in ("sequential", "batched")}
    ratio = per_expansion["sequential"] / per_expansion["batched"]
    print(f"wall time per expansion: sequential {per_expansion['sequential']:.3f}s, batched "
          f"{per_expansion['batched']:.3f}s: {ratio:.1f}x (target {TARGET}x) {'OK' if ratio >= TARGET else 'MISSED'}")
    print(json.dumps({"policy": kind, "runs": rows, "speedup_per_expansion": round(ratio, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
