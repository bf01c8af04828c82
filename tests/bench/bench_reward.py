"""Benchmark: the GRPO reward stage for one batch of 64 TinyCode completions, ours vs the original's way.

Both run in this one process, which first loads torch and the tiny policy (models/ckpts/tiny-coder
when present, else a random Qwen2 of hidden 256 / 4 layers), as in a trainer, where every fork
copies a large address space:

    ours:     models.rewards.CodeReward: the whole batch in one `verify` call to one long-lived
              sandbox (started once, before timing, as in a training run; its start-up is printed);
    original: for each completion in turn, a new ProcessPoolExecutor(max_workers=8) (fork) whose
              task starts one multiprocessing.Process that runs the program and its asserts
              (as the original computes it), then the same symbol bonus and trailing penalty.

The 64 completions are 16 problems x 4 (the reference body closed by its fence, the same with
trailing text, a program that fails every assert, `return None`). None is model-written, so the
original's way may run them outside the sandbox here. Both must give the same rewards. Prints the
median of --runs timings of each, interleaved, and the ratio; then one JSON line. Target: >= 20x.

    python tests/bench/bench_reward.py [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET = 20.0
SYMBOL, PENALTY = 1e-3, 1e-6


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each, interleaved")
    parser.add_argument("--problems", type=int, default=16, help="problems (4 completions each)")
    parser.add_argument("--policy", default=str(REPO / "models" / "ckpts" / "tiny-coder"),
                        help="policy to hold in memory (a random tiny model when absent)")
    return parser.parse_args()


def load_policy(path: str, problems):
    """The policy a trainer would hold: the trained tiny coder, or a random one of its shape."""
    import torch  # noqa: F401  (loaded on purpose: the trainer's address space)

    if Path(path).is_dir():
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(path), path
    from models.tiny import build_model, build_tokenizer

    tokenizer = build_tokenizer([p.prompt + p.meta["solution"] for p in problems], vocab_size=1024)
    return build_model(tokenizer, hidden_size=256, layers=4), "random tiny Qwen2 (hidden 256, 4 layers)"


def batch(problems) -> dict[str, list]:
    """GRPO reward columns for 4 completions per problem."""
    columns = {"completions": [], "partial_state": [], "domain": [], "test": [], "id": []}
    for problem in problems:
        body = problem.meta["solution"][len(problem.init_state):]
        for completion in (body + "```", body + "```\nThat is all.", '    return "wrong"\n```', "    return None\n"):
            columns["completions"].append(completion)
            columns["partial_state"].append(problem.init_state)
            columns["domain"].append(problem.domain)
            columns["test"].append(json.dumps(problem.test))
            columns["id"].append(problem.id)
    return columns


# -- the original's way ------------------------------------------------------------------------------


def _child(program: str, tests: list[str], connection) -> None:
    namespace: dict = {}
    passed = 0
    try:
        exec(program, namespace)  # noqa: S102  (the original's way; our own fixed programs, see the docstring)
        for test in tests:
            try:
                exec(test, namespace)
                passed += 1
            except BaseException:
                pass
    except BaseException:
        pass
    connection.send(passed)


def _pool_task(program: str, tests: list[str], timeout: float) -> float:
    receive, send = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.Process(target=_child, args=(program, tests, send))
    process.start()
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join()
    passed = receive.recv() if receive.poll() else 0
    return passed / len(tests)


def original_rewards(columns: dict, timeout: float = 5.0) -> list[float]:
    from models.rewards import shape, split_at_stop

    context = multiprocessing.get_context("fork")
    rewards = []
    for completion, state, payload in zip(columns["completions"], columns["partial_state"], columns["test"]):
        valid, emitted, trailing = split_at_stop(completion, ["```"])
        with ProcessPoolExecutor(max_workers=8, mp_context=context) as pool:
            execution = pool.submit(_pool_task, state + valid, json.loads(payload)["tests"], timeout).result()
        rewards.append(shape(execution, emitted, trailing, SYMBOL, PENALTY, "").reward)
    return rewards


# -- ours --------------------------------------------------------------------------------------------


def our_rewards(reward, columns: dict) -> list[float]:
    arguments = {name: values for name, values in columns.items() if name != "completions"}
    return reward(prompts=[""] * len(columns["completions"]), completions=columns["completions"], **arguments)


def main() -> int:
    args = parse_args()
    from data.tinycode import generate
    from models.rewards import CodeReward

    train, _ = generate(seed=0, n_train=max(args.problems, 20), n_test=10)
    problems = _parse(train[: args.problems])
    policy, described = load_policy(args.policy, problems)
    columns = batch(problems)
    print(f"policy in memory: {described}, {sum(p.numel() for p in policy.parameters()) / 1e6:.1f} M parameters; "
          f"{len(columns['completions'])} completions", file=sys.stderr)
    reward = CodeReward(symbol_reward=SYMBOL, trailing_penalty=PENALTY)
    start = time.perf_counter()
    reward.sandbox  # noqa: B018  (started once, as in a training run)
    startup = time.perf_counter() - start
    ours_times, theirs_times = [], []
    for run in range(args.runs):
        start = time.perf_counter()
        ours = our_rewards(reward, columns)
        ours_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        theirs = original_rewards(columns)
        theirs_times.append(time.perf_counter() - start)
        if [round(value, 9) for value in ours] != [round(value, 9) for value in theirs]:
            print(f"rewards differ: ours {ours} original {theirs}", file=sys.stderr)
            return 1
        print(f"run {run + 1}: ours {ours_times[-1]:.3f} s, original {theirs_times[-1]:.3f} s", file=sys.stderr)
    reward.close()
    ours_median, theirs_median = statistics.median(ours_times), statistics.median(theirs_times)
    ratio = theirs_median / ours_median
    print(f"reward stage, {len(columns['completions'])} completions: ours {ours_median:.3f} s "
          f"(sandbox start-up {startup:.2f} s, once per run), original {theirs_median:.3f} s, "
          f"ratio {ratio:.1f}x (target {TARGET:.0f}x)")
    print(json.dumps({"completions": len(columns["completions"]), "ours_s": ours_median, "original_s": theirs_median,
                      "ratio": ratio, "sandbox_startup_s": startup, "policy": described,
                      "mean_reward": sum(ours) / len(ours)}))
    return 0 if ratio >= TARGET else 2


def _parse(records):
    import os
    import tempfile

    from data.jsonl import write_jsonl
    from data.registry import get_benchmark

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "train.jsonl")
        write_jsonl(path, records)
        return get_benchmark("TinyCode").parse(path)


if __name__ == "__main__":
    sys.exit(main())
