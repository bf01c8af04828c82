"""Stage 1.2 / 2.2: turn sampled programs into training data.

--method Common (reads generate/Common/<Domain>/<slug>/temp_<T>_tokens_<M>_completions.jsonl):
  --mode grpo  ReST-GRPO data {prompt, init_state, partial_state, domain, test, id} (all strings):
               problems whose reward std (population) is below --std_accept_threshold_grpo are dropped;
               each kept problem gives its prompt, and, when its first max-reward program scores at least
               --completion_accept_threshold_grpo, prompts continued by the first j lines of that program,
               j drawn with weight alpha^(j-1) (--n_sample k: k draws; a float: ceil(L * ratio) draws;
               <= 0: the naive `basic` data, every prompt and no filter; --extract_all_lines: every j).
  --mode dpo   {prompt, chosen, rejected}: the best and the worst program of problems whose rewards differ.
  --mode sft   {prompt, completion}: every program scoring at least --completion_accept_threshold_sft.
  --mode orm   {prompt, answer, reward}: every program with its final reward (an outcome reward model's data).
  --mode quality  {prompt, answer, reward}: ReST-MCTS*'s round-0 value data: the programs of a problem merged into
               a prefix tree of shared steps (lines), each state with its quality value (experiment/quality_values.py;
               problems without a correct program give none).
--method MCTS (reads generate/MCTS/<Domain>/<slug>/time_..._thought_<no|yes>.jsonl, or --trace): value data
  {prompt, answer, reward}: every scored program, and every expanded state with its value.
  --value_targets quality (a `sample_mcts --algorithm star` trace): every state of the tree with its quality value;
  with --mode sft, the policy data {prompt, completion} instead: correct end leaves whose value in the search is at
  least --value_threshold and whose solution has at least --len_threshold characters.
Records come in problem-id order ("X/2" before "X/10"), whatever the order of the input's lines.
Writes per domain next to the input, and with --do_aggregate the concatenation under
generate/{Common|MCTS}/All/<slug>/; each with <output>.args.json.

    python -m experiment.process_gen_data --domain code --method Common --mode grpo \
        --backend Qwen/Qwen2.5-Coder-7B-Instruct --temperature 0.7 --max_tokens 1024 \
        --std_accept_threshold_grpo 0.05 --completion_accept_threshold_grpo 0.9 --n_sample 0.5 --alpha 0.95 \
        --do_aggregate
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import random
import sys
from typing import Sequence

import numpy as np

from data.jsonl import DataError, read_unique, write_json, write_jsonl
from data.records import Problem, id_order
from data.registry import domains, get_benchmark
from experiment import paths
from experiment.common import add_search_args, int_or_float, local_model_path, problem_seed
from experiment.quality_values import policy_leaves, prefix_tree, value_rows
from experiment.stage import stage_main
from prompts import format_prompt

logger = logging.getLogger("experiment.process_gen_data")
# `--domain code`: the paper's training domains, in the original's order
CODE_DOMAINS = ("BigCodeBench", "DS1000", "APPS")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domain", default="code",
                        help="'code' (BigCodeBench, DS1000, APPS), one domain, or a comma-separated list")
    parser.add_argument("--backend", default="gpt-4o-mini", help="the sampling run's model (selects the files)")
    parser.add_argument("--method", default="Common", choices=("Common", "MCTS"))
    parser.add_argument("--mode", default="grpo", choices=("grpo", "dpo", "sft", "orm", "quality"),
                        help="Common: every mode (orm: every program with its final reward, for an outcome reward "
                             "model; quality: ReST-MCTS* value targets on the prefix tree of the programs); "
                             "MCTS: sft with --value_targets quality, value data otherwise")
    add_grpo_data_args(parser)
    parser.add_argument("--completion_accept_threshold_sft", type=float, default=0.9,
                        help="SFT keeps programs scoring at least this")
    parser.add_argument("--do_aggregate", action="store_true", help="also write the concatenation under All/")
    parser.add_argument("--seed", type=int, default=0, help="seed of the prefix draws")
    mcts = add_search_args(parser, "MCTS file selectors (must match the sample_mcts run)")
    mcts.add_argument("--use_thought", action="store_true",
                      help="read the thought_yes trace of a `sample_mcts --use_thought` run (thoughts add no rows)")
    mcts.add_argument("--value_targets", default="tree", choices=("tree", "mc", "quality"),
                      help="tree: expanded states with their tree values; mc: line prefixes with their "
                           "Monte-Carlo values (a `sample_mcts --value_targets mc` trace); quality: every state of "
                           "a `sample_mcts --algorithm star` trace with its ReST-MCTS* quality value")
    mcts.add_argument("--mc_rollouts", type=int, default=4, help="the trace's rollouts per prefix (mc only)")
    mcts.add_argument("--trace", default=None,
                      help="the trace file to read (one domain; default: the sample_mcts path of these flags)")
    mcts.add_argument("--value_threshold", type=float, default=0.2,
                      help="policy data (--value_targets quality --mode sft): lowest value of a kept solution")
    mcts.add_argument("--len_threshold", type=int, default=50,
                      help="policy data (--value_targets quality --mode sft): fewest characters of a kept solution")
    args = parser.parse_args(argv)
    if args.value_targets != "mc":
        args.mc_rollouts = 0
    if args.method == "MCTS" and args.mode == "sft" and args.value_targets != "quality":
        parser.error("--method MCTS --mode sft needs --value_targets quality (a star trace)")
    if not 0 < args.alpha < 1:
        parser.error("--alpha must be in (0, 1)")
    if isinstance(args.n_sample, float) and args.n_sample > 1 and not args.extract_all_lines:
        parser.error("--n_sample as a ratio must be in (0, 1]")
    return args


def add_grpo_data_args(parser: argparse.ArgumentParser) -> None:
    """The flags that select a sampling run's files and name its GRPO data (shared with collect_grpo_data)."""
    parser.add_argument("--temperature", type=float, default=0.7, help="the sampling run's temperature")
    parser.add_argument("--max_tokens", type=int, default=1024, help="the sampling run's max_tokens")
    parser.add_argument("--std_accept_threshold_grpo", type=float, default=0.05,
                        help="drop problems whose reward std is below this")
    parser.add_argument("--completion_accept_threshold_grpo", type=float, default=0.9,
                        help="build prefixes only from a best program scoring at least this")
    parser.add_argument("--n_sample", type=int_or_float, default=0.5,
                        help="prefixes per kept problem: int k, float ratio in (0, 1] of its lines, <= 0 basic")
    parser.add_argument("--extract_all_lines", action="store_true", help="keep every prefix (mode all)")
    parser.add_argument("--alpha", type=float, default=0.95, help="prefix length j drawn with weight alpha^(j-1)")


def domain_list(text: str) -> list[str]:
    names = list(CODE_DOMAINS) if text == "code" else [name for name in text.split(",") if name]
    unknown = [name for name in names if name not in domains()]
    if unknown:
        raise DataError("--domain", None, f"unknown domain {unknown[0]!r} (known: code, {', '.join(domains())})")
    return names


# -- the formulas (the original's and the paper's) -----------------------------------------------------------

def prefix_weights(num_lines: int, alpha: float) -> list[float]:
    """w_j = alpha^(j-1) for j = 1..L, so p(j) = (1 - alpha) alpha^(j-1) / (1 - alpha^L)."""
    return [alpha ** (j - 1) for j in range(1, num_lines + 1)]


def draw_prefix_lengths(num_lines: int, n_sample: int | float, alpha: float, rng: random.Random,
                        extract_all_lines: bool = False) -> list[int]:
    """Prefix lengths j for one best program of L lines: every j (all), k draws (int n_sample), or
    ceil(L * n_sample) draws (ratio), with replacement."""
    if num_lines == 0:
        return []
    if extract_all_lines:
        return list(range(1, num_lines + 1))
    count = n_sample if isinstance(n_sample, int) else math.ceil(num_lines * n_sample)
    return rng.choices(range(1, num_lines + 1), weights=prefix_weights(num_lines, alpha), k=count)


def best_completion(completions: Sequence[dict]) -> dict:
    """The first completion of maximum reward."""
    return max(completions, key=lambda completion: completion["reward"])


def line_prefix(sample: str, j: int) -> str:
    """The first j lines of the (right-stripped) sample, each ending with a newline."""
    return "".join(line + "\n" for line in sample.rstrip().split("\n")[:j])


def grpo_records(item: dict, domain: str, args: argparse.Namespace) -> list[dict]:
    result = item.get("result") or {}
    completions = result.get("completions") or []
    test = item["test"] if isinstance(item["test"], str) else json.dumps(item["test"])
    base = {"prompt": result["formatted_prompt"], "init_state": item["init_state"],
            "partial_state": item["init_state"], "domain": domain, "test": test, "id": str(item["id"])}
    if args.n_sample <= 0 and not args.extract_all_lines:
        return [base]
    if float(np.std([completion["reward"] for completion in completions])) < args.std_accept_threshold_grpo:
        return []
    records = [base]
    best = best_completion(completions)
    if best["reward"] < args.completion_accept_threshold_grpo:
        return records
    sample = best["formatted_sample"]
    rng = random.Random(problem_seed(args.seed, str(item["id"]), "prefix"))
    for j in draw_prefix_lengths(len(sample.rstrip().split("\n")), args.n_sample, args.alpha, rng,
                                 args.extract_all_lines):
        partial = line_prefix(sample, j)
        records.append({**base, "prompt": base["prompt"] + partial, "partial_state": item["init_state"] + partial})
    return records


def dpo_records(item: dict, domain: str, args: argparse.Namespace) -> list[dict]:
    result = item.get("result") or {}
    ranked = sorted(result.get("completions") or [], key=lambda completion: completion["reward"])
    if not ranked or ranked[0]["reward"] >= ranked[-1]["reward"]:
        return []
    close = get_benchmark(domain).close_sample
    prompt = result["formatted_prompt"]
    return [{"prompt": prompt, "chosen": close(prompt, ranked[-1]["formatted_sample"]),
             "rejected": close(prompt, ranked[0]["formatted_sample"])}]


def sft_records(item: dict, domain: str, args: argparse.Namespace) -> list[dict]:
    result = item.get("result") or {}
    close = get_benchmark(domain).close_sample
    prompt = result.get("formatted_prompt", "")
    return [{"prompt": prompt, "completion": close(prompt, completion["formatted_sample"])}
            for completion in result.get("completions") or []
            if completion["reward"] >= args.completion_accept_threshold_sft]


def orm_records(item: dict, domain: str, args: argparse.Namespace) -> list[dict]:
    """An outcome reward model's data: every whole program with its final reward (value-data records,
    the raw problem text as prompt), to set beside the value model trained on MCTS states."""
    # whole programs end with one newline, as the MCTS programs and states a value model sees do
    return [{"prompt": item["prompt"], "answer": completion["formatted_completion"].rstrip() + "\n",
             "reward": completion["reward"]}
            for completion in (item.get("result") or {}).get("completions") or []]


def value_records(item: dict, domain: str, args: argparse.Namespace) -> list[dict]:
    """The original's value rows: every scored program, and every expanded state (the root included) with
    its value; with --value_targets mc, every line prefix with its Monte-Carlo value instead of the expanded
    states."""
    records = [{"prompt": item["prompt"], "answer": entry["completion"], "reward": entry["reward"]}
               for entry in item.get("completions") or []]
    if args.value_targets == "mc":
        states = item["mc_rewards"]
    else:
        states = [entry for entry in item.get("rewards") or [] if entry.get("expanded")]
    records += [{"prompt": item["prompt"], "answer": entry["state"], "reward": entry["reward"]} for entry in states]
    return records


def quality_records(item: dict, domain: str, args: argparse.Namespace) -> list[dict]:
    """ReST-MCTS*'s round-0 value data: the programs of one problem merged into a prefix tree of shared steps
    (lines), every state of it with its quality value; none for a problem without a correct program."""
    completions = (item.get("result") or {}).get("completions") or []
    tree = prefix_tree([(completion["formatted_sample"], completion["reward"]) for completion in completions])
    return value_rows(tree, item["prompt"], item["init_state"])


def star_value_records(item: dict, domain: str, args: argparse.Namespace) -> list[dict]:
    """Every state of a star trace's tree with its quality value (none without a correct leaf)."""
    return value_rows(item["star_tree"], item["prompt"], item["init_state"])


def star_policy_records(item: dict, domain: str, args: argparse.Namespace) -> list[dict]:
    """ReST-MCTS*'s policy data: the correct solutions of a star trace that pass --value_threshold and
    --len_threshold, each after the policy's prompt at the root of the search."""
    solutions = policy_leaves(item["star_tree"], args.value_threshold, args.len_threshold)
    if not solutions:
        return []
    prompt = root_prompt(item, domain, args.backend)
    close = get_benchmark(domain).close_sample
    return [{"prompt": prompt, "completion": close(prompt, solution)} for solution in solutions]


def root_prompt(item: dict, domain: str, backend: str) -> str:
    """The trace's `formatted_prompt`, or (a trace without one) the prompt the search started from, rebuilt
    with the tokenizer of the policy `backend` (a local folder or a cached hub id)."""
    if item.get("formatted_prompt"):
        return item["formatted_prompt"]
    problem = Problem(id=str(item["id"]), domain=domain, prompt=item["prompt"], init_state=item["init_state"],
                      test=item["test"])
    return format_prompt(problem, policy_tokenizer(local_model_path(backend)))


@functools.lru_cache(maxsize=4)
def policy_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


MODES = {"grpo": grpo_records, "dpo": dpo_records, "sft": sft_records, "orm": orm_records,
         "quality": quality_records}


def record_builder(args: argparse.Namespace):
    """The function that turns one input line into records, for these flags."""
    if args.method == "Common":
        return MODES[args.mode]
    if args.value_targets == "quality":
        return star_policy_records if args.mode == "sft" else star_value_records
    return value_records


# -- files ---------------------------------------------------------------------------------------------------

def files(args: argparse.Namespace, domain: str) -> tuple[str, str]:
    """(input path, output name) for one domain."""
    if args.method == "MCTS":
        source = args.trace or os.path.join(paths.mcts_dir(domain, args.backend), trace_name(args))
        return source, mcts_output_name(args, os.path.basename(source))
    source = paths.completions_path(domain, args.backend, args.temperature, args.max_tokens)
    if args.mode == "grpo":
        name = paths.grpo_data_name(args.temperature, args.max_tokens, args.std_accept_threshold_grpo,
                                    args.completion_accept_threshold_grpo, args.n_sample, args.alpha,
                                    args.extract_all_lines)
    elif args.mode == "dpo":
        name = paths.dpo_data_name(args.temperature, args.max_tokens)
    elif args.mode == "sft":
        name = paths.sft_data_name(args.temperature, args.max_tokens)
    elif args.mode == "quality":
        name = paths.quality_data_name(args.temperature, args.max_tokens)
    else:
        name = paths.orm_data_name(args.temperature, args.max_tokens)
    return source, name


def trace_name(args: argparse.Namespace) -> str:
    """The name sample_mcts gives the trace of these flags."""
    if args.value_targets == "quality":
        raise DataError("--trace", None, "give the star trace to read: the path `sample_mcts --algorithm star` "
                        "printed (generate/MCTS_STAR/<Domain>/<slug>/star_...jsonl)")
    return paths.mcts_name(args.time_limit, args.iteration_limit, args.num_sample, args.num_decision,
                           args.exploration_constant, args.eps, args.temperature, args.max_tokens,
                           args.use_thought, args.mc_rollouts)


def mcts_output_name(args: argparse.Namespace, trace: str, aggregated_domains: list[str] | None = None) -> str:
    """Value data `<trace stem>_rewards.jsonl`, or policy data `<trace stem>_sft_data_<value>_<len>.jsonl`."""
    if args.mode == "sft" and args.value_targets == "quality":
        return paths.policy_data_name(trace, args.value_threshold, args.len_threshold, aggregated_domains)
    return paths.value_data_name(trace, aggregated_domains)


def process_domain(args: argparse.Namespace, domain: str) -> tuple[list[dict], dict] | None:
    source, name = files(args, domain)
    if not os.path.exists(source) or os.path.getsize(source) == 0:
        logger.warning("%s: no input at %s, skipped", domain, source)
        return None
    build = record_builder(args)
    records, stats = [], {"problems": 0, "skipped_empty": 0, "kept_problems": 0}
    # in problem order, not the file's (lines are written as problems finish): the same data, in the same order,
    # whatever the timing of the run that sampled them (GRPO's and the reward models' batches follow it)
    # one line per problem id: a file two runs appended to (each problem twice) is refused, not double-weighted
    for line, item in sorted(read_unique(source), key=lambda pair: id_order(pair[1]["id"])):
        stats["problems"] += 1
        if args.method == "Common" and not item.get("result"):
            stats["skipped_empty"] += 1
            continue
        try:
            made = build(item, domain, args)
        except (KeyError, TypeError) as exc:
            raise DataError(source, line, f"field {exc}: missing or malformed") from None
        stats["kept_problems"] += bool(made)
        records += made
    output = os.path.join(os.path.dirname(source), name)
    write_jsonl(output, records)
    write_json(output + ".args.json", {**vars(args), "input": source, "domain_processed": domain})
    stats["records"] = len(records)
    logger.info("%s: %d records from %d problems (%d kept) -> %s", domain, len(records), stats["problems"],
                stats["kept_problems"], output)
    return records, {"output": output, **stats}


def main(argv=None) -> int:
    return stage_main(process, parse_args(argv))


def process(args: argparse.Namespace) -> None:
    """Each domain's file, then with --do_aggregate their merged file; prints the summary line."""
    names = domain_list(args.domain)
    if args.trace and len(names) != 1:
        raise DataError("--trace", None, f"reads one domain's trace, not {len(names)} domains")
    results = {domain: process_domain(args, domain) for domain in names}
    summary = {domain: result[1] for domain, result in results.items() if result is not None}
    if args.do_aggregate:
        method_dir = paths.mcts_dir if args.method == "MCTS" else paths.common_dir
        name = files(args, names[0])[1]
        if args.method == "MCTS":
            name = mcts_output_name(args, os.path.basename(files(args, names[0])[0]), names)
        output = os.path.join(method_dir(paths.AGGREGATE, args.backend), name)
        merged = [record for result in results.values() if result is not None for record in result[0]]
        write_jsonl(output, merged)
        write_json(output + ".args.json", {**vars(args), "domains": names})
        summary[paths.AGGREGATE] = {"output": output, "records": len(merged)}
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
