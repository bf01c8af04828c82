"""GRPO (or SFT) data straight from a problem file: one record per problem, no sampling first, for trainers
that sample on-policy from the start (VinePPO, and GRPO on a whole split as VinePPO's baseline), and for the
supervised start they need (`--mode sft`: the reference solution as the completion, e.g. GSM8K's).

Reads   data/<Domain>/<file> (or --directory) through the benchmark's reader, the chosen --idx_list.
Writes  generate/Common/<Domain>/<slug>/grpo_data_<file stem>.jsonl: records `{prompt, init_state,
        partial_state, domain, test, id}` as `process_gen_data --mode grpo` writes them (the prompt holds
        --backend's chat template and the open assistant turn; `test` is the JSON text of the payload),
        and its .args.json; models/train_vineppo.py and models/train_grpo.py read it.
        With --mode sft: sft_data_<file stem>.jsonl, records `{prompt, completion}` (the benchmark's reference
        solution, closed as its samples are) for `models/train.py --mode sft`.

    python -m experiment.grpo_prompts --domain TinyMath --file train.jsonl --backend models/ckpts/tiny-math
    python -m experiment.grpo_prompts --domain GSM8K --file train.jsonl --backend MODEL --mode sft
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from data.jsonl import DataError, write_json, write_jsonl
from experiment import paths
from experiment.common import add_problem_args, idx_list, select_problems


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_problem_args(parser, domain="TinyMath")
    parser.add_argument("--backend", required=True, help="the policy to train: its tokenizer formats the prompts")
    parser.add_argument("--mode", choices=("grpo", "sft"), default="grpo",
                        help="grpo: prompts to sample on-policy; sft: prompts with their reference solutions")
    parser.add_argument("--output", default=None, help="output file (default: the path above)")
    return parser.parse_args(argv)


def grpo_record(problem, prompt: str) -> dict:
    """The GRPO data record of `problem` whose formatted prompt is `prompt`.

    >>> from data.records import Problem
    >>> grpo_record(Problem("p/1", "TinyMath", "2 + 2?", "", {"answer": "4"}, {}), "<q>")["test"]
    '{"answer": "4"}'
    """
    return {"prompt": prompt, "init_state": problem.init_state, "partial_state": problem.init_state,
            "domain": problem.domain, "test": json.dumps(problem.test), "id": problem.id}


def main(argv=None) -> int:
    from transformers import AutoTokenizer

    from data.registry import get_benchmark
    from prompts import format_prompt

    args = parse_args(argv)
    try:
        problems = select_problems(get_benchmark(args.domain).load(args.directory, args.file),
                                   idx_list(args.idx_list), args.num_shards, args.shard_id)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tokenizer = AutoTokenizer.from_pretrained(args.backend)
    name = paths.problem_grpo_data_name(args.file)
    output = args.output or os.path.join(paths.common_dir(args.domain, args.backend),
                                         name if args.mode == "grpo" else name.replace("grpo_data_", "sft_data_", 1))
    benchmark = get_benchmark(args.domain)
    prompts = [format_prompt(problem, tokenizer) for problem in problems]
    if args.mode == "grpo":
        records = [grpo_record(problem, prompt) for problem, prompt in zip(problems, prompts)]
    else:
        records = [{"prompt": prompt, "completion": benchmark.close_sample(prompt, benchmark.reference_program(problem)[
            len(problem.init_state):])} for problem, prompt in zip(problems, prompts)]
    write_jsonl(output, records)
    write_json(output + ".args.json", vars(args))
    print(f"{len(records)} {args.mode.upper()} records -> {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
