"""The answers of the voting methods of `evaluation.eval`: self-consistency (`--method SC`, a majority over
`--num_sample` samples' final answers, or with `--vote weighted` votes weighted by the value model's score of each
complete solution) and ReST-MCTS*'s search (`--method MCTS_STAR`: the answer-giving leaf of highest value, or with
`--vote weighted` the value-weighted vote over those leaves). "The same answer" is `evaluation.voting.answer_key`.

Each returns, per problem, `--n` answers as evaluation records them: {completions, samples, token_usage}.
"""
from __future__ import annotations

from collections import Counter

from data.records import Problem
from data.registry import get_benchmark
from evaluation.voting import majority_vote, weighted_vote
from experiment.common import problem_seed
from prompts import formatted_completion


def _programs(problem: Problem, output) -> list[str]:
    return [formatted_completion(problem.domain, problem.init_state, g.text) for g in output.generations]


def _usage(output, n: int) -> Counter:
    return Counter(prompt=output.prompt_tokens * n, completion=sum(g.completion_tokens for g in output.generations))


def score_all(scorer, problems: list[Problem], programs: list[list[str]]) -> list[list[float]]:
    """The value model's score of every complete solution (ending with one newline, as it was trained), in one
    call, grouped as `programs`."""
    flat = scorer.score([problem.prompt for problem, group in zip(problems, programs) for _ in group],
                        [program.rstrip() + "\n" for group in programs for program in group])
    grouped, start = [], 0
    for group in programs:
        grouped.append(flat[start:start + len(group)])
        start += len(group)
    return grouped


def self_consistency(answerer, problems: list[Problem]) -> list[dict]:
    """`--n` rounds of a vote over `--num_sample` samples of `answerer`'s policy (one generation call and, when
    weighted, one value call per round for the whole chunk)."""
    args = answerer.args
    kind = get_benchmark(args.domain).kind
    answers = [{"completions": [], "samples": 0, "token_usage": Counter()} for _ in problems]
    for round_index in range(args.n):
        outputs = answerer.sample(problems, args.num_sample, f"sc-{round_index}")
        programs = [_programs(problem, output) for problem, output in zip(problems, outputs)]
        values = score_all(answerer.scorer, problems, programs) if args.vote == "weighted" else None
        for index, (output, answer) in enumerate(zip(outputs, answers)):
            answer["completions"].append(weighted_vote(kind, programs[index], values[index]) if values is not None
                                         else majority_vote(kind, programs[index]))
            answer["samples"] += len(programs[index])
            answer["token_usage"] += _usage(output, len(programs[index]))
    return answers


def star_answers(answerer, problems: list[Problem], on_done) -> None:
    """`--n` MCTS* searches per problem with `answerer`'s policy and value model; `on_done(problem, answers)`
    once a problem's last search ends."""
    from experiment.mcts_star_batch import run_star_searches
    from experiment.sample_star import star_config

    args = answerer.args
    kind = get_benchmark(args.domain).kind
    answers = {problem.id: {"completions": [], "samples": 0, "token_usage": Counter()} for problem in problems}
    for round_index in range(args.n):
        config = star_config(args, answerer.policy, answerer.stop)
        config.seed = problem_seed(args.seed, "star", str(round_index))

        def finished(result, last=round_index == args.n - 1) -> None:
            answer, leaves = answers[result.problem.id], result.leaves
            answer["completions"].append(weighted_vote(kind, [c for c, _ in leaves], [v for _, v in leaves])
                                         if args.vote == "weighted" and leaves else result.answer)
            answer["samples"] += result.record["samples"]
            answer["token_usage"] += Counter(result.token_usage)
            if last:
                on_done(result.problem, answer)

        run_star_searches(problems, answerer.policy, config, answerer.prompt, answerer.scorer.score, on_done=finished)
