"""Stage 2.1: search the code space with MCTS over lines, scoring the sampled programs in the sandbox,
and record every tree (terminal and intermediate rewards) for value-model training.

Reads   the domain's data file (data/<Domain>/..., or --directory/--file).
Writes  generate/MCTS/<Domain>/<slug>/time_<TL>_iter_<IT>_sample_<NS>_decision_<ND>_exp_<C>_eps_<EPS>
        _temp_<T>_tokens_<M>_thought_<no|yes>.jsonl (`_mc_<K>` with --value_targets mc; `.shard-<i>-of-<N>`
        with shards), one line per problem:
        {id, prompt, init_state, test, completions [{completion, reward}],
         rewards [{state, reward, terminal, expanded, visible, visits}], tree [nodes, each with its thought],
         token_usage,
         iterations, expansions, answer, mc_rewards [{state, reward, rollouts, rewards}] (mc only)}
        and <output>.args.json. Resumes by id; refuses to resume with arguments that change results.

    python -m experiment.sample_mcts --domain TinyCode --file test.jsonl --backend models/ckpts/tiny-coder \
        --iteration_limit 10 --num_sample 4 --num_decision 3 --max_tokens 256

Trees of `--max_active` problems are searched at once and their expansions batched into one policy
call per round (experiment/mcts_batch.py); with vLLM or a server they take turns in two cohorts, one
generating while the sandbox judges the other's programs; `--leaves_per_tree` > 1 also batches several leaves of one
tree (virtual loss). A kill loses at most the trees in flight. Shards: `--num_shards N --shard_id i`,
then `python -m experiment.merge_shards <output without the shard suffix> --num_shards N`.
Value data: `python -m experiment.process_gen_data --method MCTS` with the same MCTS flags.
`--algorithm star` runs ReST-MCTS*'s MCTS* instead (value-model guided, step by step; experiment/sample_star.py).

`--use_thought` (the original's two-stage expansion): each expansion first samples `--num_sample`
thoughts ("Let's think step by step about how to continue:", `--max_thought_tokens`, `--stop_think`),
then one action per thought; each child stores the thought that proposed it (`tree[].thought`).
Monte-Carlo rollouts (`--value_targets mc`) sample programs directly, without thoughts.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter

from data.jsonl import DataError, JsonlAppender
from data.registry import get_benchmark
from evaluation.judging import verify
from evaluation.sandbox import Sandbox
from experiment import paths
from experiment.common import (
    GENERATION_RESULT_ARGS,
    SEARCH_RESULT_ARGS,
    add_generation_args,
    add_problem_args,
    add_search_args,
    backend_from_args,
    check_run_args,
    idx_list,
    search_batching,
    stop_strings,
    str_list,
)
from experiment.mcts_batch import SearchConfig, run_searches
from experiment.mcts_star_batch import add_star_args, fill_mode_settings
from experiment.sample_star import (
    STAR_RESULT_ARGS,
    add_value_model_args,
    check_star_settings,
    run_star,
    star_output_path,
)
from experiment.stage import run_stage
from prompts import format_for_act, format_for_think, format_prompt

logger = logging.getLogger("experiment.sample_mcts")
# arguments that change what a line holds: a resumed run must match the earlier one in all of them
RESULT_ARGS = (*GENERATION_RESULT_ARGS, *SEARCH_RESULT_ARGS, "low_b", "timeout", "use_thought", "stop_think",
               "max_thought_tokens", "value_targets", "mc_rollouts", "leaves_per_tree")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_problem_args(parser)
    add_generation_args(parser)
    parser.add_argument("--algorithm", default="line", choices=("line", "star"),
                        help="line: the MCTS over lines with verifier rollouts; star: ReST-MCTS*'s MCTS* guided by a "
                             "value model (--rm_backend; experiment/sample_star.py)")
    mcts = add_search_args(parser)
    add_star_args(parser, mode="generate")
    add_value_model_args(parser)
    mcts.add_argument("--use_thought", action="store_true",
                      help="two-stage expansion: num_sample thoughts, then one action per thought")
    mcts.add_argument("--stop_think", type=str_list, default=None,
                      help="comma-separated stop strings of thoughts (with --use_thought; default none)")
    mcts.add_argument("--max_thought_tokens", type=int, default=128, help="thought length (with --use_thought)")
    mcts.add_argument("--value_targets", default="tree", choices=("tree", "mc"),
                      help="mc: also estimate each line prefix of the sampled programs by --mc_rollouts rollouts")
    mcts.add_argument("--mc_rollouts", type=int, default=4, help="rollouts per line prefix (--value_targets mc)")
    mcts.add_argument("--max_active", type=int, default=None,
                      help="problems searched at once, batched together (default: two cohorts of at least 256 "
                           "sequences per vLLM engine per round, one judged while the other generates; 16 trees "
                           "in one cohort with the hf engine)")
    mcts.add_argument("--leaves_per_tree", type=int, default=1,
                      help="expansions of one tree per round (virtual loss); 1: the original's search")
    parser.add_argument("--output", default=None, help="output file (default: the original's path)")
    args = parser.parse_args(argv)
    args.idx_list = idx_list(args.idx_list)
    if args.algorithm == "star":
        fill_mode_settings(args)
    else:  # the line search's own defaults (add_star_args left them None)
        args.iteration_limit = 100 if args.iteration_limit is None else args.iteration_limit
        args.exploration_constant = 0.2 if args.exploration_constant is None else args.exploration_constant
    if args.value_targets == "tree":
        args.mc_rollouts = 0
    return args


def check_settings(args: argparse.Namespace) -> None:
    """One-line errors for settings no search can run with."""
    check_run_args(args)
    for name in ("num_sample", "num_decision", "max_active", "leaves_per_tree"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise DataError(f"--{name}", None, f"must be at least 1, got {getattr(args, name)}")
    if not args.iteration_limit and args.time_limit is None:
        raise DataError("--iteration_limit", None, "0 (no limit) needs a --time_limit")
    if args.value_targets == "mc" and args.mc_rollouts < 1:
        raise DataError("--mc_rollouts", None, "must be at least 1 with --value_targets mc")
    if args.use_thought and args.do_not_format:
        raise DataError("--use_thought", None, "thought prompts are chat-formatted: drop --do_not_format")
    if args.use_thought and args.max_thought_tokens < 1:
        raise DataError("--max_thought_tokens", None, f"must be at least 1, got {args.max_thought_tokens}")


def output_path(args: argparse.Namespace) -> str:
    path = args.output or paths.mcts_path(
        args.domain, args.backend, time_limit=args.time_limit, iteration_limit=args.iteration_limit,
        num_sample=args.num_sample, num_decision=args.num_decision, exploration_constant=args.exploration_constant,
        eps=args.eps, temperature=args.temperature, max_tokens=args.max_tokens, use_thought=args.use_thought,
        mc_rollouts=args.mc_rollouts)
    return paths.shard_path(path, args.shard_id, args.num_shards)


def search_config(args: argparse.Namespace, backend) -> SearchConfig:
    max_active, cohorts = search_batching(backend, args.max_active, args.num_sample * args.leaves_per_tree)
    return SearchConfig(
        domain=args.domain, num_sample=args.num_sample, num_decision=args.num_decision,
        exploration_constant=args.exploration_constant, eps=args.eps, iteration_limit=args.iteration_limit,
        time_limit=args.time_limit, temperature=args.temperature, max_tokens=args.max_tokens,
        stop=stop_strings(args), leaves_per_tree=args.leaves_per_tree, max_active=max_active, cohorts=cohorts,
        mc_rollouts=args.mc_rollouts, seed=args.seed, use_thought=args.use_thought,
        max_thought_tokens=args.max_thought_tokens, stop_think=args.stop_think,
        # a backend that samples prompt by prompt under per-prompt seeds gets one seed per call: batches
        seed_per_prompt=backend.batches_seeded_prompts)


def run(args: argparse.Namespace, problems: list, output: str, sandbox: Sandbox) -> Counter:
    """Search `problems` into `output`, the programs scored in `sandbox` (the stage's, where the
    environment check ran)."""
    from tqdm import tqdm

    benchmark = get_benchmark(args.domain)
    backend = backend_from_args(args)
    tokenizer = getattr(backend, "tokenizer", None)
    config = search_config(args, backend)
    statuses, stats = Counter(), Counter()

    def make_prompt(problem, state: str) -> str:
        if args.do_not_format:  # the raw problem text continued by the code so far
            return problem.prompt + state
        return format_prompt(problem, tokenizer, state=state, **args.kwargs)

    thought_prompts = (lambda problem, state: format_for_think(problem, tokenizer, state, **args.kwargs),
                       lambda problem, state, thought: format_for_act(problem, tokenizer, state, thought,
                                                                      **args.kwargs))

    with JsonlAppender(output) as out, tqdm(total=len(problems), unit="problem", file=sys.stderr) as bar:
        def evaluate(items):
            verdicts = verify(sandbox, benchmark, items, args.timeout, hardened=True)  # value targets: hardened
            statuses.update(verdict.status for group in verdicts for verdict in group)
            return [[verdict.reward + args.low_b for verdict in group] for group in verdicts]

        def on_done(result) -> None:
            out.write(result.record)
            bar.update(1)
            bar.set_postfix(expansions=stats["expansions"], programs=stats["programs_scored"],
                            passed=statuses["passed"])

        run_searches(problems, backend, config, make_prompt, evaluate=evaluate, on_done=on_done, stats=stats,
                     thought_prompts=thought_prompts if args.use_thought else None)
    logger.info("policy calls %d, prompts %d, generated tokens %d, programs run %d (%s)", stats["policy_calls"],
                stats["prompts"], stats["generated_tokens"], stats["programs_scored"], dict(statuses))
    return stats


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.algorithm == "star":
        return run_stage(args, star_output_path(args), STAR_RESULT_ARGS, check_star_settings, run_star)
    return run_stage(args, output_path(args), RESULT_ARGS, check_settings, run)


if __name__ == "__main__":
    sys.exit(main())
