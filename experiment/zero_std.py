"""The share of zero-std groups GRPO data gives a policy (ReST-GRPO's claim, paper Fig. x2), measured on fresh samples.

Every prompt of each GRPO data file (process_gen_data --mode grpo: `basic` for naive GRPO, the filtered one
with prefix prompts for ReST-GRPO) is sampled `--n` times (TRL's num_generations) with the policy, and the
completions are judged by the GRPO reward itself (models.rewards.CodeReward, in the sandbox). A group whose
execution rewards all agree is a zero-std group: GRPO's advantages vanish on it. The samples are fresh (their
own seed salt), so the problems ReST kept on the sampling stage's rewards are not judged on those rewards again.

Reads   the GRPO data files (JSONL records {prompt, init_state, partial_state, domain, test, id}).
Writes  --output: one line per group {key, data, index, group, id, prefix_lines, rewards, zero_std} (prefix_lines:
        lines of the best program the prompt already holds, 0 for a problem's own prompt), and
        <output>.args.json; resumes by key. Prints per file its zero-std share (overall and by prefix), and
        with two files the difference first - second with a paired bootstrap interval over problems
        (evaluation.compare.paired_share_bootstrap: a problem's groups in both files move together).

    python -m experiment.zero_std --backend models/ckpts/tiny-coder --n 8 --temperature 0.7 --max_tokens 128 \
        --data naive=generate/.../temp_0.7_tokens_128_grpo_data_basic.jsonl \
        --data rest=generate/.../temp_0.7_tokens_128_grpo_data_0.05_0.9_0.5_0.95.jsonl --output zero_std.jsonl
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from contextlib import ExitStack

from data.jsonl import DataError, JsonlAppender, output_lock, read_done, read_jsonl, write_json
from experiment.common import add_generation_args, backend_from_args, problem_seed
from experiment.stage import stage_main

logger = logging.getLogger("experiment.zero_std")
RESULT_ARGS = ("data", "groups", "backend", "engine", "n", "temperature", "max_tokens", "stop", "seed", "do_not_format",
               "kwargs", "timeout")
FIELDS = ("prompt", "init_state", "partial_state", "domain", "test", "id")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", required=True, metavar="LABEL=PATH",
                        help="a GRPO data file and its label (give it once per file; the first minus the second "
                             "is the difference printed)")
    parser.add_argument("--output", required=True, help="per-prompt results (JSONL)")
    parser.add_argument("--groups", type=int, default=1,
                        help="independent groups of --n samples per prompt (each its own seed): a finer estimate of "
                             "each prompt's zero-std chance")
    parser.add_argument("--chunk_size", type=int, default=32, help="prompts per generation call")
    add_generation_args(parser, n_default=8)
    args = parser.parse_args(argv)
    files = {}
    for item in args.data:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            parser.error(f"--data {item!r}: expected LABEL=PATH")
        if label in files:
            parser.error(f"--data: label {label!r} given twice")
        files[label] = path
    args.data = files
    return args


def prefix_lines(record: dict) -> int:
    """Lines of the best program a ReST prompt holds beyond the problem's own start (0: the problem's prompt)."""
    return record["partial_state"][len(record["init_state"]):].count("\n")


def load_prompts(files: dict[str, str], groups: int = 1) -> list[dict]:
    """One item per (prompt, group), keyed label:line:group."""
    prompts = []
    for label, path in files.items():
        for line, record in read_jsonl(path):
            missing = [field for field in FIELDS if not isinstance(record.get(field), str)]
            if missing:
                raise DataError(path, line, f"field {missing[0]!r} missing or not a string: not a GRPO data record")
            prompts += [{**record, "key": f"{label}:{line}:{group}", "data": label, "index": line, "group": group}
                        for group in range(groups)]
    return prompts


def run(args: argparse.Namespace, todo: list[dict]) -> None:
    from tqdm import tqdm

    from data.registry import get_benchmark
    from models.rewards import CodeReward

    policy = backend_from_args(args)
    reward = CodeReward(timeout=args.timeout, workers=args.workers, exec_python=args.exec_python)
    try:
        with JsonlAppender(args.output) as out, tqdm(total=len(todo), unit="group", file=sys.stderr) as bar:
            for start in range(0, len(todo), args.chunk_size):
                chunk = todo[start:start + args.chunk_size]
                outputs = policy.generate(
                    [record["prompt"] for record in chunk], n=args.n, temperature=args.temperature,
                    max_tokens=args.max_tokens, seed=[problem_seed(args.seed, record["key"], "zero-std")
                                                      for record in chunk],
                    stop=args.stop or get_benchmark(chunk[0]["domain"]).stop_strings)
                texts, columns = [], defaultdict(list)
                for record, output in zip(chunk, outputs):
                    for generation in output.generations:
                        texts.append(generation.text)
                        for field in ("partial_state", "domain", "test", "id", "init_state"):
                            columns[field].append(record[field])
                scores = reward.score(texts, columns["partial_state"], columns["domain"], columns["test"],
                                      columns["id"], columns["init_state"])
                for position, record in enumerate(chunk):
                    rewards = [score.execution for score in scores[position * args.n:(position + 1) * args.n]]
                    out.write({"key": record["key"], "data": record["data"], "index": record["index"],
                               "group": record["group"], "id": record["id"], "prefix_lines": prefix_lines(record),
                               "rewards": rewards, "zero_std": max(rewards) == min(rewards)})
                    bar.update(1)
    finally:
        reward.close()


def summary(path: str, labels: list[str], seed: int = 0, max_prefix_lines: int | None = None) -> dict:
    """Per label: the zero-std share overall and by prefix length; with two labels, first - second paired
    over problems. `max_prefix_lines`: only prompts holding at most that many lines of a program."""
    from evaluation.compare import paired_share_bootstrap

    counts: dict[str, dict[str, list[int]]] = {label: defaultdict(lambda: [0, 0]) for label in labels}
    by_prefix: dict[str, dict[int, list[int]]] = {label: defaultdict(lambda: [0, 0]) for label in labels}
    for _, record in read_jsonl(path):
        if record["data"] in counts and (max_prefix_lines is None or record["prefix_lines"] <= max_prefix_lines):
            for table, key in ((counts, record["id"]), (by_prefix, record["prefix_lines"])):
                table[record["data"]][key][0] += bool(record["zero_std"])
                table[record["data"]][key][1] += 1
    out = {"shares": {}}
    for label in labels:
        zeros, groups = (sum(values[i] for values in counts[label].values()) for i in (0, 1))
        out["shares"][label] = {"zero_std": zeros / groups if groups else None, "groups": groups,
                                "by_prefix_lines": {str(k): {"zero_std": v[0] / v[1], "groups": v[1]}
                                                    for k, v in sorted(by_prefix[label].items())}}
    if len(labels) == 2:
        first, second = (counts[label] for label in labels)
        problems = sorted(set(first) | set(second))
        result = paired_share_bootstrap([first.get(p, [0, 0]) for p in problems],
                                        [second.get(p, [0, 0]) for p in problems], seed=seed)
        out["difference"] = {**result.__dict__, "a": labels[0], "b": labels[1], "unit": "problem"}
    return out


def main(argv=None) -> int:
    return stage_main(measure, parse_args(argv))


def measure(args: argparse.Namespace) -> None:
    """Sample and judge the groups not yet in `args.output`, then print the summary (one run per output:
    its lock held from before the resume read to the summary)."""
    with ExitStack() as stack:
        try:
            stack.enter_context(output_lock(args.output))
            prompts = load_prompts(args.data, args.groups)
            done = read_done(args.output, vars(args), RESULT_ARGS, key="key")
            write_json(args.output + ".args.json", vars(args))
        except OSError as exc:  # a file or folder that cannot be opened is bad input, as a malformed line is
            raise DataError(exc.filename or args.output, None, exc.strerror or str(exc)) from exc
        todo = [record for record in prompts if record["key"] not in done]
        logger.info("%d groups to sample, %d already in %s", len(todo), len(done), args.output)
        if todo:
            run(args, todo)
        print(json.dumps(summary(args.output, list(args.data), args.seed)))


if __name__ == "__main__":
    sys.exit(main())
