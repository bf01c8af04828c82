"""`python -m experiment.sample_mcts --algorithm star`: ReST-MCTS*'s search (experiment/mcts_star_batch.py) with a
policy and a value model, every answer-giving leaf judged (math: graded; code: run by the hardened judge), one
trace per problem for value targets and policy data (`process_gen_data --value_targets quality`).

Reads   the domain's data file (data/<Domain>/..., or --directory/--file) and the value model (--rm_backend).
Writes  generate/MCTS_STAR/<Domain>/<slug>/star_<mode>_time_<TL>_iter_<IT>_branch_<B>_exp_<C>_roll_<R>_gate_<G>
        _inf_<I>_alpha_<A>_depth_<D>_temp_<T>_tokens_<M>.jsonl (`.shard-<i>-of-<N>` with shards), one line per
        problem: {id, prompt, init_state, test, algorithm, mode, star_tree [{id, parent, step, depth, V, visits,
        terminal, gives_answer, reward}], answer, answer_node, answer_value, stopped_at_gate, iterations,
        expansions, samples, token_usage}, and <output>.args.json. Resumes by id; refuses other result-changing
        arguments.

    python -m experiment.sample_mcts --algorithm star --domain TinyMath --backend models/ckpts/tiny-math \\
        --rm_backend rms/ckpts/tiny-math-value --mode generate --max_tokens 64

`--mode generate` (the default here) takes the authors' data-generation settings, `--mode evaluate` their
evaluation ones; explicit flags win. `--max_tokens` bounds one step (a line).
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
    backend_from_args,
    check_run_args,
    local_model_path,
    plan_devices,
    search_batching,
    stop_strings,
)
from experiment.mcts_star_batch import StarConfig, run_star_searches

logger = logging.getLogger("experiment.sample_mcts")
STAR_RESULT_ARGS = (*GENERATION_RESULT_ARGS, "algorithm", "mode", "time_limit", "iteration_limit", "branch",
                    "exploration_constant", "roll_forward_steps", "end_gate", "inf", "alpha", "max_depth",
                    "rm_backend", "rm_class", "max_length", "timeout")


def add_value_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("value model (--algorithm star)")
    group.add_argument("--rm_backend", default=None, help="value model: a folder (a run dir with best/) or a hub id")
    group.add_argument("--rm_class", default="transformers_scalar", help="its class (rms/value_models.py)")
    group.add_argument("--rm_device", default=None, help="its device (default: as evaluation.eval places it)")
    group.add_argument("--max_length", type=int, default=2048, help="value model input tokens")


def star_output_path(args: argparse.Namespace) -> str:
    path = args.output or paths.mcts_star_path(args.domain, args.backend, **star_settings(args))
    return paths.shard_path(path, args.shard_id, args.num_shards)


def star_settings(args: argparse.Namespace) -> dict:
    """The settings that name a trace file (`paths.mcts_star_name`)."""
    return {name: getattr(args, name) for name in ("mode", "time_limit", "iteration_limit", "branch",
                                                   "exploration_constant", "roll_forward_steps", "end_gate", "inf",
                                                   "alpha", "max_depth", "temperature", "max_tokens")}


def star_config(args: argparse.Namespace, backend=None, stop: list[str] | None = None) -> StarConfig:
    """The search the flags describe (a ValueError names a setting no search can run with)."""
    max_active = search_batching(backend, args.max_active, args.branch)[0] if backend is not None \
        else (args.max_active or 1)
    return StarConfig(
        domain=args.domain, kind=get_benchmark(args.domain).kind, mode=args.mode, branch=args.branch,
        exploration_constant=args.exploration_constant, roll_forward_steps=args.roll_forward_steps,
        end_gate=args.end_gate, inf=args.inf, alpha=args.alpha, iteration_limit=args.iteration_limit,
        time_limit=args.time_limit, max_depth=args.max_depth, temperature=args.temperature,
        max_tokens=args.max_tokens, stop=stop, max_active=max_active, seed=args.seed,
        seed_per_prompt=getattr(backend, "batches_seeded_prompts", True))


def check_star_settings(args: argparse.Namespace) -> None:
    """One-line errors before any model is loaded."""
    check_run_args(args)
    if not args.rm_backend:
        raise DataError("--rm_backend", None, "--algorithm star needs a value model")
    if args.max_active is not None and args.max_active < 1:
        raise DataError("--max_active", None, f"must be at least 1, got {args.max_active}")
    star_config(args)


def load_models(args: argparse.Namespace):
    """(policy backend, value model), placed as evaluation places a policy and a reward model."""
    from rms.value_models import load_value_model, resolve_checkpoint

    rm_path = resolve_checkpoint(local_model_path(args.rm_backend))
    placement = plan_devices(args, rm_path)  # the policy first: vLLM starts before this process touches CUDA
    backend = backend_from_args(args, placement)
    value_model = load_value_model(rm_path, args.rm_class, rm_type="prm", device=placement.rm_device,
                                   max_length=args.max_length)
    return backend, value_model


def run_star(args: argparse.Namespace, problems: list, output: str, sandbox: Sandbox) -> Counter:
    """Search `problems` into `output`; answer-giving leaves judged by the hardened judge in `sandbox` (code)
    or graded (math)."""
    from tqdm import tqdm

    from prompts import format_prompt

    benchmark = get_benchmark(args.domain)
    backend, value_model = load_models(args)
    tokenizer = getattr(backend, "tokenizer", None)
    config = star_config(args, backend, stop_strings(args))
    statuses, stats = Counter(), Counter()

    def make_prompt(problem, state: str) -> str:
        if args.do_not_format:
            return problem.prompt + state
        return format_prompt(problem, tokenizer, state=state, **args.kwargs)

    def evaluate(items):
        verdicts = verify(sandbox, benchmark, items, args.timeout, hardened=True)  # value targets: hardened
        statuses.update(verdict.status for group in verdicts for verdict in group)
        return [[verdict.reward for verdict in group] for group in verdicts]

    with JsonlAppender(output) as out, tqdm(total=len(problems), unit="problem", file=sys.stderr) as bar:
        def on_done(result) -> None:
            out.write(result.record)
            bar.update(1)
            bar.set_postfix(expansions=stats["expansions"], passed=statuses["passed"])

        run_star_searches(problems, backend, config, make_prompt, value_model.score, evaluate=evaluate,
                          on_done=on_done, stats=stats)
    logger.info("policy calls %d, prompts %d, generated tokens %d, values %d, leaves judged %s",
                stats["policy_calls"], stats["prompts"], stats["generated_tokens"], stats["values"], dict(statuses))
    return stats
