"""Evaluate a policy on a benchmark: plain sampling, best-of-N with a reward/value model, or
value-model-guided tree search (VM-MCTS; ORM-MCTS with --rm_type orm).

Reads   the domain's data (APPS: data/APPS/test_500.jsonl unless --file says otherwise).
Writes  under output/<domain>_results/<Common|MCTS>/<policy slug>/ (lower-case domain):
          ..._completions.jsonl  {id, init_succeeded, completions [program], samples, token_usage}
          ..._verified.jsonl     the evaluation.verify record {id, rewards, statuses, tests, errors, times}
          ..._results.jsonl      one record: n_problems, n_load_failed, average_acc, strict_acc,
                                 strict_acc_ci95, pass@k, samples and tokens per problem, statuses
        the reward model's slug, class and type in the names (runs with other RMs never collide), and
        <file>.args.json beside each. Resumes by id at both phases. A problem that cannot be judged (a
        test payload that does not parse) or whose generation fails counts as a failure; an engine that
        fails (a vLLM replica that dies, hangs or errors) stops the run (exit 1), nothing written for its call.

    python -m evaluation.eval --method Common --domain TinyCode --backend models/ckpts/tiny-coder --n 4
    python -m evaluation.eval --method SC --domain TinyMath --backend models/ckpts/tiny-math --num_sample 8 \
        [--vote weighted --rm_backend rms/ckpts/tiny-math-value]
    python -m evaluation.eval --method MCTS_STAR --domain TinyMath --backend models/ckpts/tiny-math \
        --rm_backend rms/ckpts/tiny-math-value [--vote weighted] [--mode evaluate --iteration_limit 100 ...]
    python -m evaluation.eval --method MCTS --domain APPS --backend Qwen/Qwen2.5-Coder-7B-Instruct \
        --rm_backend rms/ckpts/vm/1 --rm_class transformers_scalar --rm_type prm \
        --iteration_limit 15 --num_sample 5 --num_decision 5 --exploration_constant 0.1 --eps 0.1

SC (self-consistency): `--n` answers per problem, each the vote over `--num_sample` samples: a majority over
final answers, or with `--vote weighted` votes weighted by the value model's score of each complete solution
(evaluation/voting.py: math answers are equal as numbers, programs as normalized text). MCTS_STAR: `--n` MCTS*
searches per problem (experiment/mcts_star_batch.py, `--mode evaluate` settings unless given), the answer the
answer-giving leaf of highest value, or with `--vote weighted` the value-weighted vote over those leaves. Every
results row reports `completion_tokens_per_problem` (generated tokens) beside `tokens_per_problem`.

Shards: run each `--num_shards N --shard_id i`, merge the completions files with
`python -m experiment.merge_shards <completions path> --num_shards N`, then run the same command
without the shard flags: it finds every answer and verifies and scores them all.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
from collections import Counter
from contextlib import ExitStack

from data.jsonl import JsonlAppender, output_lock, read_done, write_json, write_jsonl
from data.records import Problem
from data.registry import get_benchmark
from evaluation.baselines import self_consistency, star_answers
from evaluation.metrics import STRICT_THRESHOLD, pass_at_k, summarize
from evaluation.sandbox import Sandbox
from evaluation.verify import BackgroundVerifier, verify_arguments, verify_file
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
    items_per_call,
    local_model_path,
    plan_devices,
    plan_run,
    problem_seed,
    search_batching,
    stop_strings,
)
from experiment.mcts_star_batch import add_star_args, fill_mode_settings
from experiment.stage import checked_sandbox, stage_main
from models.errors import EngineError
from prompts import format_prompt, formatted_completion

logger = logging.getLogger("evaluation.eval")
RESULT_ARGS = (*GENERATION_RESULT_ARGS, *SEARCH_RESULT_ARGS, "method", "n", "rm_backend", "rm_class", "rm_type",
               "max_length")
STAR_ARGS = ("vote", "mode", "branch", "roll_forward_steps", "end_gate", "inf", "alpha", "max_depth")
PASS_KS = (1, 2, 5, 10, 20, 50, 100)
VOTES = {"SC": ("majority", "weighted"), "MCTS_STAR": ("best", "weighted")}  # the first: the default


def result_args(method: str) -> tuple[str, ...]:
    """The arguments a resumed run must share with the earlier one (the voting methods' settings besides)."""
    return (*RESULT_ARGS, *STAR_ARGS) if method in VOTES else RESULT_ARGS


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="Common", choices=("Common", "MCTS", "SC", "MCTS_STAR"),
                        help="Common: samples (best-of-num_sample with --rm_backend); MCTS: VM-MCTS over lines; SC: "
                             "self-consistency over num_sample samples; MCTS_STAR: ReST-MCTS*'s search")
    parser.add_argument("--vote", default=None, choices=("majority", "weighted", "best"),
                        help="SC: majority (default) or weighted by the value model; MCTS_STAR: best (the leaf of "
                             "highest value, default) or weighted (value-weighted vote over answer-giving leaves)")
    add_problem_args(parser, domain="APPS")
    add_generation_args(parser, n_default=1)
    parser.add_argument("--rm_backend", default=None,
                        help="value/reward model: a folder (a run dir with best/ works) or a Hugging Face model id")
    parser.add_argument("--rm_class", default="transformers_scalar",
                        help="transformers_scalar, transformers_prob, standard_scalar (ours); skywork, intern, "
                             "generalizable (ORMs), qwen, rlhflow (PRMs)")
    parser.add_argument("--rm_type", default="prm", choices=("prm", "orm"),
                        help="MCTS: prm = VM-MCTS (the model values every new node), orm = ORM-MCTS")
    parser.add_argument("--max_length", type=int, default=2048, help="reward model input tokens")
    add_search_args(parser, "MCTS (and best-of-N's --num_sample)", iteration_limit=15, exploration_constant=0.1)
    add_star_args(parser, mode="evaluate")
    parser.add_argument("--policy_device", default=None,
                        help="policy device: hf engine (default cuda when visible); vLLM: cuda:K puts it on GPU K only")
    parser.add_argument("--rm_device", default=None,
                        help="reward model device (default: hf engine, the policy's; vLLM, the placement rule below)")
    parser.add_argument("--max_active", type=int, default=None,
                        help="MCTS: problems searched at once (default: two cohorts of at least 256 sequences per "
                             "vLLM engine per round; 16 with the hf engine)")
    parser.add_argument("--chunk_size", type=int, default=None,
                        help="Common: problems per generation call (default: at least 256 sequences per vLLM "
                             "engine; 16 with the hf engine); each chunk is judged while the next is sampled")
    parser.add_argument("--flexible_answers", action="store_true",
                        help="math domains: also take a final answer given as \\boxed{X} or 'The answer is X' "
                             "(evaluation only; training rewards never do)")
    parser.add_argument("--output_dir", default=None, help="default output/<domain>_results/<method>/<slug>")
    args = parser.parse_args(argv)
    args.idx_list = idx_list(args.idx_list)
    args.device = args.policy_device or args.device
    if args.method == "MCTS_STAR":
        fill_mode_settings(args)
    else:  # the line MCTS's defaults (add_star_args left them None)
        args.iteration_limit = 15 if args.iteration_limit is None else args.iteration_limit
        args.exploration_constant = 0.1 if args.exploration_constant is None else args.exploration_constant
    if args.method in VOTES:
        args.vote = args.vote or VOTES[args.method][0]
        if args.vote not in VOTES[args.method]:
            parser.error(f"--method {args.method} votes by {' or '.join(VOTES[args.method])}, not {args.vote}")
    elif args.vote:
        parser.error(f"--vote is for --method SC or MCTS_STAR, not {args.method}")
    if args.method in ("MCTS", "MCTS_STAR") and not args.rm_backend or args.vote == "weighted" and not args.rm_backend:
        parser.error(f"--method {args.method} needs --rm_backend (the value model, or an ORM with --rm_type orm)")
    return args


def output_paths(args: argparse.Namespace) -> dict[str, str]:
    directory = args.output_dir or paths.eval_dir(args.domain, args.method, args.backend)
    names = ("mode", "time_limit", "iteration_limit", "branch", "exploration_constant", "roll_forward_steps",
             "end_gate", "inf", "alpha", "max_depth") if args.method == "MCTS_STAR" else \
        ("time_limit", "iteration_limit", "num_decision", "exploration_constant", "eps")
    search = {name: getattr(args, name) for name in names}
    return {kind: paths.shard_path(os.path.join(directory, paths.eval_name(
        kind, args.temperature, args.max_tokens, args.n, args.method, args.rm_backend, args.rm_class, args.rm_type,
        args.num_sample, search, args.vote)), args.shard_id, args.num_shards)
        for kind in ("completions", "verified", "results")}


# -- answers ----------------------------------------------------------------------------------------------

def programs_of(problem: Problem, output) -> list[str]:
    return [formatted_completion(problem.domain, problem.init_state, g.text) for g in output.generations]


def usage(output, n: int) -> Counter:
    return Counter(prompt=output.prompt_tokens * n, completion=sum(g.completion_tokens for g in output.generations))


class Answerer:
    """Produces each problem's `n` answers with the method the flags name."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        rm_path = None
        if args.rm_backend:
            from rms.value_models import resolve_checkpoint

            rm_path = resolve_checkpoint(local_model_path(args.rm_backend))  # a hub id: its cached snapshot
        # the policy first: vLLM starts its engine process before this process touches CUDA
        placement = plan_devices(args, rm_path)
        self.policy = backend_from_args(args, placement)
        self.tokenizer = getattr(self.policy, "tokenizer", None)
        self.stop = stop_strings(args)
        self.scorer = None
        if rm_path:
            from rms.value_models import load_value_model

            self.scorer = load_value_model(rm_path, args.rm_class, rm_type=args.rm_type, device=placement.rm_device,
                                           max_length=args.max_length)

    def prompt(self, problem: Problem, state: str | None = None) -> str:
        return format_prompt(problem, self.tokenizer, state=state, do_not_format=self.args.do_not_format,
                             **self.args.kwargs)

    def sample(self, problems: list[Problem], n: int, salt: str):
        return self.policy.generate([self.prompt(problem) for problem in problems], n=n,
                                    temperature=self.args.temperature, max_tokens=self.args.max_tokens,
                                    stop=self.stop, seed=[problem_seed(self.args.seed, p.id, salt) for p in problems])

    def common(self, problems: list[Problem]) -> list[dict]:
        """n samples per problem; with a reward model, n rounds of best-of-num_sample."""
        if self.scorer is None:
            return [{"completions": programs_of(problem, output), "samples": self.args.n,
                     "token_usage": usage(output, self.args.n)}
                    for problem, output in zip(problems, self.sample(problems, self.args.n, "answers"))]
        answers = [{"completions": [], "samples": 0, "token_usage": Counter()} for _ in problems]
        for round_index in range(self.args.n):
            outputs = self.sample(problems, self.args.num_sample, f"best-of-n-{round_index}")
            for problem, output, answer in zip(problems, outputs, answers):
                programs = programs_of(problem, output)
                # scored as the reward model was trained: whole programs end with one newline
                scores = self.scorer.score([problem.prompt] * len(programs), [p.rstrip() + "\n" for p in programs])
                answer["completions"].append(programs[max(range(len(programs)), key=scores.__getitem__)])
                answer["samples"] += len(programs)
                answer["token_usage"] += usage(output, len(programs))
        return answers

    def answers(self, problems: list[Problem]) -> list[dict]:
        """The answers of one chunk: self-consistency's for SC, else plain sampling or best-of-N."""
        return self_consistency(self, problems) if self.args.method == "SC" else self.common(problems)

    def mcts(self, problems: list[Problem], on_done) -> None:
        """n searches per problem (VM-MCTS or ORM-MCTS); the answer of each is its best-scored program."""
        from experiment.mcts_batch import SearchConfig, run_searches

        args = self.args
        answers = {problem.id: {"completions": [], "samples": 0, "token_usage": Counter()} for problem in problems}
        max_active, cohorts = search_batching(self.policy, args.max_active, args.num_sample)
        for round_index in range(args.n):
            config = SearchConfig(domain=args.domain, num_sample=args.num_sample, num_decision=args.num_decision,
                                  exploration_constant=args.exploration_constant, eps=args.eps,
                                  iteration_limit=args.iteration_limit, time_limit=args.time_limit,
                                  temperature=args.temperature, max_tokens=args.max_tokens, stop=self.stop,
                                  rm_type=args.rm_type, max_active=max_active, cohorts=cohorts,
                                  seed=problem_seed(args.seed, "mcts", str(round_index)),
                                  seed_per_prompt=self.policy.batches_seeded_prompts)

            def finished(result, last=round_index == args.n - 1) -> None:
                answer = answers[result.problem.id]
                answer["completions"].append(result.answer)
                answer["samples"] += result.record.get("expansions", 0) * args.num_sample
                answer["token_usage"] += Counter(result.token_usage)
                if last:
                    on_done(result.problem, answer)

            run_searches(problems, self.policy, config, lambda problem, state: self.prompt(problem, state),
                         score=self.scorer.score, on_done=finished)


def answer_all(args: argparse.Namespace, todo: list[Problem], output: str,
               verifier: BackgroundVerifier | None = None) -> None:
    """Answer `todo` into `output`; with `verifier`, each Common chunk's programs are judged while the next
    chunk is sampled."""
    from tqdm import tqdm

    benchmark = get_benchmark(args.domain)
    answerer = Answerer(args)
    with JsonlAppender(output) as out, tqdm(total=len(todo), unit="problem", file=sys.stderr) as bar:
        def write(problem: Problem, answer: dict, error: str | None = None) -> None:
            out.write({"id": problem.id, "init_succeeded": error is None, "error": error,
                       "completions": answer["completions"], "samples": answer["samples"],
                       "token_usage": dict(answer["token_usage"])})
            bar.update(1)

        loadable = []
        for problem in todo:
            error = benchmark.load_error(problem)
            if error:
                write(problem, {"completions": [], "samples": 0, "token_usage": {}}, f"cannot be judged: {error}")
            else:
                loadable.append(problem)
        if args.method in ("MCTS", "MCTS_STAR"):
            answerer.mcts(loadable, write) if args.method == "MCTS" else star_answers(answerer, loadable, write)
            return
        # sequences a call asks for
        per_problem = args.num_sample if answerer.scorer is not None or args.method == "SC" else args.n
        chunk_size = args.chunk_size or items_per_call(answerer.policy, per_problem, 16)
        for start in range(0, len(loadable), chunk_size):
            chunk = loadable[start:start + chunk_size]
            try:
                answers = answerer.answers(chunk)
            except EngineError:  # the engine itself failed: the run stops, nothing of this chunk is written
                raise
            except Exception:  # find the problem that fails; the others are answered alone
                logger.exception("generation failed for a chunk; answering its problems one by one")
                answers = [answer_alone(answerer, problem) for problem in chunk]
            for problem, answer in zip(chunk, answers):
                write(problem, answer, answer.pop("error", None))
            if verifier is not None:
                verifier.submit([(problem, answer["completions"]) for problem, answer in zip(chunk, answers)])


def answer_alone(answerer: Answerer, problem: Problem) -> dict:
    """One problem's answers; a problem whose generation raises becomes a failure with its error, except
    an `EngineError` (the engine, not the problem, failed), which stops the run."""
    try:
        return answerer.answers([problem])[0]
    except EngineError:
        raise
    except Exception as exc:
        return {"completions": [], "samples": 0, "token_usage": {}, "error": f"generation failed: {exc}"}


# -- metrics ------------------------------------------------------------------------------------------------

def bootstrap_interval(scores: list[float], seed: int, resamples: int = 2000) -> list[float]:
    """95% percentile bootstrap interval of the mean over problems."""
    if not scores:
        return [0.0, 0.0]
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(scores, k=len(scores))) / len(scores) for _ in range(resamples))
    return [means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]]


def results_record(answers: list[dict], verified: dict[str, dict], seed: int) -> dict:
    rewards = [verified[answer["id"]]["rewards"] if answer["init_succeeded"] else [] for answer in answers]
    summary = summarize(rewards, ks=())
    judged = [values for values in rewards if values]
    smallest = min((len(values) for values in judged), default=0)
    for k in sorted(set(PASS_KS) | {smallest}):  # each k the judged problems' sample counts allow
        if 1 <= k <= smallest:  # problems that could not be judged score 0
            summary[f"pass@{k}"] = sum(pass_at_k(len(values), sum(r >= STRICT_THRESHOLD for r in values), k)
                                       for values in judged) / max(1, len(rewards))
    strict = [sum(r >= STRICT_THRESHOLD for r in values) / len(values) if values else 0.0 for values in rewards]
    statuses = Counter(status for answer in answers if answer["init_succeeded"]
                       for status in verified[answer["id"]]["statuses"])
    count = max(1, len(answers))
    return {**summary, "n_load_failed": sum(not answer["init_succeeded"] for answer in answers),
            "strict_acc_ci95": bootstrap_interval(strict, seed),
            "samples_per_problem": sum(answer["samples"] for answer in answers) / count,
            "tokens_per_problem": sum(sum(answer["token_usage"].values()) for answer in answers) / count,
            "completion_tokens_per_problem": sum(answer["token_usage"].get("completion", 0)
                                                 for answer in answers) / count,
            "statuses": dict(statuses),
            # passes of the official verdicts that the hardened judge (training rewards) rejects
            "hardened_rejected": sum(sum(verified[answer["id"]].get("hardened_rejected") or [])
                                     for answer in answers if answer["init_succeeded"])}


def verified_arguments(args: argparse.Namespace, outputs: dict[str, str]) -> dict:
    return verify_arguments(args.domain, outputs["completions"], directory=args.directory, file=args.file,
                            output=outputs["verified"], timeout=args.timeout, workers=args.workers,
                            exec_python=args.exec_python, flexible_answers=args.flexible_answers)


def verify_answers(args: argparse.Namespace, outputs: dict[str, str], sandbox: Sandbox | None) -> dict[str, dict]:
    """The verified record of every answer, judged in `sandbox` (None: verify starts one if it has work)."""
    _, records = verify_file(args.domain, outputs["completions"], directory=args.directory, file=args.file,
                             output=outputs["verified"], timeout=args.timeout, workers=args.workers,
                             exec_python=args.exec_python, sandbox=sandbox,
                             flexible_answers=args.flexible_answers)
    return {str(record["id"]): record for record in records}


def evaluate(args: argparse.Namespace) -> None:
    """Answer the problems not yet answered, verify every answer, score them; prints the results line."""
    outputs = output_paths(args)
    check_run_args(args)
    args.file = args.file or (get_benchmark(args.domain).eval_file if not args.directory else None)
    # one run per output: held from before the resume read to the results (verify locks its own file)
    with output_lock(outputs["completions"]):
        problems, done = plan_run(args, outputs["completions"], result_args(args.method))
        todo = [problem for problem in problems if problem.id not in done]
        logger.info("%s %s: %d problems to answer, %d already answered", args.method, args.domain, len(todo),
                    len(done))
        with ExitStack() as stack:
            # one sandbox for the check and the verification; the check before any model time (none is spent
            # when every problem is answered)
            sandbox = stack.enter_context(checked_sandbox(args, problems)) if todo else None
            if todo and args.method == "Common":  # each chunk judged while the next is sampled
                with BackgroundVerifier(sandbox, get_benchmark(args.domain), outputs["verified"],
                                        verified_arguments(args, outputs), args.timeout) as verifier:
                    answer_all(args, todo, outputs["completions"], verifier)
            elif todo:
                answer_all(args, todo, outputs["completions"])
            answers = read_done(outputs["completions"], vars(args), result_args(args.method))
            verified = verify_answers(args, outputs, sandbox)
        results = results_record([answers[problem.id] for problem in problems], verified, args.seed)
        write_jsonl(outputs["results"], [results])
        write_json(outputs["results"] + ".args.json", vars(args))
    print(json.dumps({key: results[key] for key in results if key != "statuses"}))


def main(argv=None) -> int:
    return stage_main(evaluate, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
