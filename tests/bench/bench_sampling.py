"""Benchmark: the sampling stage's generation on CPU, the hf engine's old path against its new one, on
the trained tiny policy, 64 TinyCode test problems, n = 8, 128 new tokens, the domain's stop strings.

- old: `decoder="generate"` (transformers `generate`) with per-prompt seeds, which samples prompt by
  prompt, as `experiment.sample` did (chunks of one problem);
- new: `decoder="loop"` (models/decoding.py), chunks of 32 problems as `experiment.sample` now sends.

Both draw with each problem's seed (`problem_seed(seed, id)`), after one warm-up call each. Tokens are
the completion tokens the engine reports; each figure is the median of `--runs` (alternating), per
second of wall clock and per second of this process's CPU time (which a loaded machine disturbs
less). Prints one line per run, then last one JSON line {"old_tokens_per_s", "new_tokens_per_s",
"ratio", ...} (wall clock; the CPU-time figures beside them).
Target: ratio >= 5. Run it on a quiet machine (`uptime`): five processes on two cores halve both.

    OMP_NUM_THREADS=1 python tests/bench/bench_sampling.py [--problems 64] [--n 8] [--max_tokens 128] [--runs 1]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET = 5.0
CHUNK = 32  # problems per call of experiment.sample with an engine that batches per-prompt seeds


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default=str(REPO / "models" / "ckpts" / "tiny-coder"), help="policy directory")
    parser.add_argument("--data", default=str(REPO / "data" / "TinyCode"), help="TinyCode directory (test.jsonl)")
    parser.add_argument("--problems", type=int, default=64, help="TinyCode test problems")
    parser.add_argument("--n", type=int, default=8, help="samples per problem")
    parser.add_argument("--max_tokens", type=int, default=128, help="max new tokens per sample")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature")
    parser.add_argument("--batch_size", type=int, default=256, help="new path: rows per decoding batch")
    parser.add_argument("--runs", type=int, default=1, help="timed runs of each path (alternating)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def sample_all(backend, prompts, seeds, args, chunk: int) -> tuple[int, float, float]:
    """Completion tokens, wall seconds and this process's CPU seconds of sampling every prompt."""
    from prompts import get_stop_strings

    started, cpu_started, tokens = time.perf_counter(), time.process_time(), 0
    for start in range(0, len(prompts), chunk):
        outputs = backend.generate(prompts[start:start + chunk], n=args.n, temperature=args.temperature,
                                   max_tokens=args.max_tokens, stop=get_stop_strings("TinyCode"),
                                   seed=seeds[start:start + chunk])
        tokens += sum(g.completion_tokens for output in outputs for g in output.generations)
    return tokens, time.perf_counter() - started, time.process_time() - cpu_started


def main() -> int:
    from models.training import configure_logging

    configure_logging(logging.WARNING)
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from data.registry import get_benchmark
    from experiment.common import problem_seed
    from models.generation import HFBackend
    from prompts import format_prompt

    if not os.path.exists(os.path.join(args.policy, "config.json")):
        raise SystemExit(f"{args.policy}: no trained policy (python -m models.tiny trains it)")
    problems = get_benchmark("TinyCode").load(args.data, "test.jsonl")[:args.problems]
    old = HFBackend(args.policy, device="cpu", decoder="generate", batch_size=16)
    new = HFBackend(args.policy, device="cpu", decoder="loop", batch_size=args.batch_size,
                    tokenizer=old.tokenizer, model_object=old.model)
    prompts = [format_prompt(problem, old.tokenizer) for problem in problems]
    seeds = [problem_seed(args.seed, problem.id) for problem in problems]
    paths = {"old": (old, 1), "new": (new, CHUNK)}
    for backend, chunk in paths.values():
        sample_all(backend, prompts[:chunk], seeds[:chunk], args, chunk)  # warm-up
    rates = {(name, clock): [] for name in paths for clock in ("wall", "cpu")}
    for _ in range(args.runs):
        for name, (backend, chunk) in paths.items():
            tokens, wall, cpu = sample_all(backend, prompts, seeds, args, chunk)
            rates[name, "wall"].append(tokens / wall)
            rates[name, "cpu"].append(tokens / cpu)
            print(f"{name}: {len(prompts)} problems x {args.n}, {tokens} tokens in {wall:.2f}s: "
                  f"{tokens / wall:.0f} tokens/s ({cpu:.2f}s of CPU time: {tokens / cpu:.0f} tokens per CPU second)")
    rate = {key: statistics.median(values) for key, values in rates.items()}
    ratio, cpu_ratio = rate["new", "wall"] / rate["old", "wall"], rate["new", "cpu"] / rate["old", "cpu"]
    # on a loaded machine the wall-clock figures depend on how much of a core each run got; the CPU
    # time of this process does not (much)
    print(f"new/old: {ratio:.1f}x wall clock, {cpu_ratio:.1f}x CPU time (target {TARGET}x) "
          f"{'OK' if ratio >= TARGET else 'MISSED'}; load average {os.getloadavg()[0]:.2f}")
    print(json.dumps({"old_tokens_per_s": round(rate["old", "wall"]), "new_tokens_per_s": round(rate["new", "wall"]),
                      "ratio": round(ratio, 2), "old_tokens_per_cpu_s": round(rate["old", "cpu"]),
                      "new_tokens_per_cpu_s": round(rate["new", "cpu"]), "cpu_ratio": round(cpu_ratio, 2),
                      "problems": len(prompts), "n": args.n, "max_tokens": args.max_tokens,
                      "load_average": round(os.getloadavg()[0], 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
