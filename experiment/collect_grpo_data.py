"""Rewrite ReST-GRPO data as problems to sample again, to measure the reward spread of its prompts.

Reads   generate/Common/<Domain>/<slug>/<grpo data name> (the process_gen_data output; same flags).
Writes  <grpo data stem>_prompts.jsonl beside it: one problem per GRPO record, in our problem-record form
        {id, domain, prompt, init_state, test, meta} that every benchmark reader accepts, with the partial
        prompt as `prompt`, `partial_state` as `init_state`, and `<id>#<k>` as id; and <output>.args.json.

    python -m experiment.collect_grpo_data --domains TinyCode --backend models/ckpts/tiny-coder \
        --temperature 0.7 --max_tokens 256 --n_sample 0.5
    python -m experiment.sample --domain TinyCode --directory generate/Common/TinyCode/models--ckpts--tiny-coder \
        --file temp_0.7_tokens_256_grpo_data_0.05_0.9_0.5_0.95_prompts.jsonl --do_not_format \
        --backend models/ckpts/tiny-coder --temperature 0.7 --max_tokens 256
    python -m experiment.get_reward_data --domain TinyCode --backend models/ckpts/tiny-coder \
        --temperature 0.7 --max_tokens 256 --do_not_format

(The original wrote each domain's own reader layout and cut `_all` to `_a` with rstrip('.jsonl').)
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from data.jsonl import DataError, read_jsonl, require, write_json, write_jsonl
from experiment import paths
from experiment.process_gen_data import CODE_DOMAINS, add_grpo_data_args, domain_list

GRPO_FIELDS = ("prompt", "init_state", "partial_state", "domain", "test", "id")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", default=",".join(CODE_DOMAINS), help="comma-separated domains")
    parser.add_argument("--backend", default="gpt-4o-mini", help="the sampling run's model (selects the files)")
    add_grpo_data_args(parser)
    return parser.parse_args(argv)


def problems_of(path: str) -> list[dict]:
    problems, counts = [], {}
    for line, record in read_jsonl(path):
        require(record, GRPO_FIELDS, path, line)
        count = counts[record["id"]] = counts.get(record["id"], -1) + 1
        problems.append({"id": f"{record['id']}#{count}", "domain": record["domain"], "prompt": record["prompt"],
                         "init_state": record["partial_state"], "test": json.loads(record["test"]),
                         "meta": {"source_id": record["id"]}})
    return problems


def main(argv=None) -> int:
    args = parse_args(argv)
    name = paths.grpo_data_name(args.temperature, args.max_tokens, args.std_accept_threshold_grpo,
                                args.completion_accept_threshold_grpo, args.n_sample, args.alpha,
                                args.extract_all_lines)
    try:
        for domain in domain_list(args.domains):
            source = os.path.join(paths.common_dir(domain, args.backend), name)
            if not os.path.exists(source):
                print(f"{domain}: no GRPO data at {source}, skipped", file=sys.stderr)
                continue
            problems = problems_of(source)
            output = os.path.join(os.path.dirname(source), paths.prompts_name(name))
            write_jsonl(output, problems)
            write_json(output + ".args.json", {**vars(args), "input": source})
            print(f"{domain}: {len(problems)} prompts -> {output}")
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
