"""Benchmark: VinePPO's Monte Carlo values of one iteration's states on the hf engine, every unique
prefix in one batched call (each prefix prefilled once, its K rollouts sharing its cache) against one
prefix at a time, in the same run with the same seeds; prints the wall seconds of each and the ratio.

The episodes are TinyCode reference solutions (one per problem, `--problems` of them) cut into lines,
so an iteration holds `problems x (lines)` states; the model is the tiny policy at
models/ckpts/tiny-coder when present, else a random model of its shape (hidden 256, 4 layers). The
rewards are not judged (a constant 0 scorer): this measures rollouts, the estimator's cost.

    OMP_NUM_THREADS=1 python tests/bench/bench_vine_values.py --problems 16 --mc_rollouts 9
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "models/ckpts/tiny-coder"),
                        help="model folder; a random model of the tiny policy's shape when it does not exist")
    parser.add_argument("--problems", type=int, default=16, help="episodes in the iteration (one per problem)")
    parser.add_argument("--mc_rollouts", type=int, default=9, help="K: rollouts per state")
    parser.add_argument("--max_tokens", type=int, default=48, help="completion budget of an episode")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")),
                        help="torch threads")
    return parser.parse_args()


def load_model(path: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from data.tinycode import generate
    from models.tiny import build_model, build_tokenizer

    if os.path.isdir(path):
        return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    train, _ = generate(seed=0, n_train=200, n_test=0)
    tokenizer = build_tokenizer([r["prompt"] + r["solution"] for r in train], vocab_size=512)
    return build_model(tokenizer, hidden_size=256, layers=4).eval(), tokenizer


def episodes_of(tokenizer, count: int, max_tokens: int):
    from data.tinycode import generate
    from models.vine import Episode, split_steps

    train, _ = generate(seed=1, n_train=count, n_test=0)
    episodes = []
    for record in train[:count]:
        prompt = tokenizer(record["prompt"], add_special_tokens=False)["input_ids"]
        completion = tokenizer(record["solution"], add_special_tokens=False)["input_ids"][:max_tokens]
        ends = split_steps(completion, lambda token: tokenizer.decode([token]))
        episodes.append(Episode(prompt, completion, 0.0, ends, str(len(episodes))))
    return episodes


def main() -> None:
    import torch

    from models.generation import end_token_ids
    from models.vine import hf_rollouts, vine_advantages

    args = parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    episodes = episodes_of(tokenizer, args.problems, args.max_tokens)
    generate = hf_rollouts(model, tokenizer, end_token_ids(tokenizer, model), temperature=0.6, top_p=0.9)

    def score(owners, completions):
        return [0.0] * len(completions)

    def one_at_a_time(prefix_ids, n, budgets):
        return [generate([prefix], n, [budget])[0] for prefix, budget in zip(prefix_ids, budgets)]

    timings, states = {}, None
    for name, engine in (("batched", generate), ("one_at_a_time", one_at_a_time)):
        torch.manual_seed(0)
        start = time.perf_counter()
        result = vine_advantages(episodes, engine, score, args.mc_rollouts, 24, args.max_tokens)
        timings[name] = time.perf_counter() - start
        states = result.stats
    ratio = timings["one_at_a_time"] / timings["batched"]
    print(f"{int(states['unique_states'])} unique states x K={args.mc_rollouts}: batched {timings['batched']:.2f} s, "
          f"one prefix at a time {timings['one_at_a_time']:.2f} s, ratio {ratio:.1f}x")
    print(json.dumps({"unique_states": states["unique_states"], "mc_rollouts": args.mc_rollouts,
                      "batched_s": round(timings["batched"], 3), "one_at_a_time_s": round(timings["one_at_a_time"], 3),
                      "ratio": round(ratio, 2)}))


if __name__ == "__main__":
    main()
