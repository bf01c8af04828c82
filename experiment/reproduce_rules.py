"""The rules of `make reproduce`'s protocol v2 (docs/experiment.md), fixed before any run: pure functions the driver
(experiment/reproduce.py) and its table (experiment/reproduce_table.py) apply, so that no setting is chosen by
looking at an outcome.

- `matched_alpha`: the ReST prefix law's alpha for a pool of short programs, chosen so that the law leaves as few
  prompts with almost nothing to write as alpha 0.95 does on the paper's programs of about 25 lines.
- `prompts_per_step`, `check_steps`: every GRPO arm trains the same number of steps, enough for
  each to go once through its whole data (checked on each data file before its trainings start).
- `ranker_gate`: the value model's within-problem AUC decides whether VM-MCTS and ReST-RL can be tested at all.
- `group_advantages`, `symbol_bonus_groups`: how often a GRPO group's execution rewards tie while its rewards
  differ (the symbol bonus), and the advantages TRL gives such groups.
- `runtime_estimate`: the CPU time of a config from the costs measured on the first run.

Checking a data file against the steps (the driver's `steps_<data>` stages; exit 1 if the steps are too few):

    python -m experiment.reproduce_rules --data generate/.../grpo_data_basic.jsonl --max_steps 40 --prompts_per_step 8
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Iterable, Sequence

from experiment.process_gen_data import prefix_weights

# -- the prefix law in the paper's regime ---------------------------------------------------------------------


def prefix_law_share(num_lines: int, alpha: float, lines_left: int = 2) -> float:
    """The probability that process_gen_data's prefix law (j = 1..L lines kept, weight alpha^(j-1)) leaves at
    most `lines_left` lines of an L-line program to write, i.e. j >= L - lines_left.

    >>> round(prefix_law_share(25, 0.95), 4)
    0.0639
    >>> prefix_law_share(3, 0.5)  # every prefix of a 3-line program leaves 2 lines or fewer
    1.0
    >>> round(prefix_law_share(7, 0.5), 4)  # (2^-4 + 2^-5 + 2^-6) / (2 - 2^-6)
    0.0551
    """
    weights = prefix_weights(num_lines, alpha)
    kept = sum(weight for j, weight in enumerate(weights, start=1) if num_lines - j <= lines_left)
    return kept / sum(weights)


def draws_per_program(num_lines: int, n_sample: int | float) -> int:
    """Prefixes process_gen_data draws from one best program: n_sample (an int), else ceil(L * n_sample).

    >>> draws_per_program(7, 0.5), draws_per_program(7, 2)
    (4, 2)
    """
    return n_sample if isinstance(n_sample, int) else math.ceil(num_lines * n_sample)


def pool_share(line_counts: Sequence[int], alpha: float, n_sample: int | float, lines_left: int = 2) -> float:
    """The expected share of prefix prompts leaving at most `lines_left` lines to write, over programs of these
    line counts, each weighted by the number of prefixes drawn from it.

    >>> pool_share([25], 0.95, 0.5) == prefix_law_share(25, 0.95)
    True
    """
    draws = [draws_per_program(lines, n_sample) for lines in line_counts]
    shares = [prefix_law_share(lines, alpha, lines_left) for lines in line_counts]
    return sum(d * s for d, s in zip(draws, shares)) / sum(draws)


def matched_alpha(line_counts: Sequence[int], n_sample: int | float, lines_left: int = 2,
                  reference_lines: int = 25, reference_alpha: float = 0.95, decimals: int = 2) -> float:
    """The alpha (rounded to `decimals`) at which `pool_share` over `line_counts` equals the share of one program
    of `reference_lines` lines at `reference_alpha`. The share rises with alpha (weight moves to long prefixes),
    so it is found by bisection on (0, 1); a ValueError when no alpha in (0, 1) reaches it.

    >>> matched_alpha([25], 0.5)
    0.95
    >>> matched_alpha([7] * 10, 0.5)  # programs of 7 lines
    0.52
    """
    target = prefix_law_share(reference_lines, reference_alpha, lines_left)
    low, high = 1e-9, 1 - 1e-9
    if not pool_share(line_counts, low, n_sample, lines_left) <= target <= pool_share(line_counts, high, n_sample,
                                                                                      lines_left):
        raise ValueError(f"no alpha in (0, 1) gives a share of {target:.4f} on these programs")
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if pool_share(line_counts, middle, n_sample, lines_left) < target else (low, middle)
    return round((low + high) / 2, decimals)


def alpha_rule(line_counts: Sequence[int], n_sample: int | float, settings: dict, current_alpha: float) -> dict:
    """The rule as a record for table.json: its text, its value on these programs, and the shares it matches.
    `settings`: lines_left, reference_lines, reference_alpha, decimals (config `rest_alpha_rule`)."""
    value = matched_alpha(line_counts, n_sample, **settings)
    left, lines, alpha = settings["lines_left"], settings["reference_lines"], settings["reference_alpha"]
    histogram = {str(count): line_counts.count(count) for count in sorted(set(line_counts))}
    return {"rule": f"alpha (rounded to {settings['decimals']} decimals) at which the expected share of ReST prefix "
                    f"prompts leaving at most {left} lines to write (process_gen_data's law, each program weighted by "
                    f"its draws) over the reference programs of the RL pool equals that of alpha {alpha} on one "
                    f"{lines}-line program",
            "value": value,
            "shares": {f"{lines}_lines_at_{alpha}": prefix_law_share(lines, alpha, left),
                       f"pool_at_{current_alpha}": pool_share(line_counts, current_alpha, n_sample, left),
                       f"pool_at_{value}": pool_share(line_counts, value, n_sample, left)},
            "programs": len(line_counts), "lines": histogram}


def reference_line_counts(directory: str, file: str, count: int) -> list[int]:
    """Lines of the reference program of each of the first `count` problems of a TinyCode file, counted as
    process_gen_data counts a sampled program's (the code after the starter, right-stripped)."""
    from data.registry import get_benchmark

    benchmark = get_benchmark("TinyCode")
    problems = benchmark.load(directory, file)[:count]
    return [len(benchmark.reference_program(problem)[len(problem.init_state):].rstrip().split("\n"))
            for problem in problems]


# -- equal steps that cover every arm's data ------------------------------------------------------------------


def prompts_per_step(grpo: dict) -> int:
    """Prompt groups in one GRPO optimizer step on one process: batch x accumulation / generations.

    >>> prompts_per_step({"batch_size_per_device": 64, "num_generations": 8})
    8
    """
    completions = grpo["batch_size_per_device"] * grpo.get("gradient_accumulation_steps", 1)
    return completions // grpo["num_generations"]


def check_steps(records: int, max_steps: int, per_step: int, label: str) -> None:
    """A ValueError, naming the steps that would do, when max_steps x per_step prompt draws do not cover the
    records of one arm's data (every arm trains max_steps steps)."""
    if records > max_steps * per_step:
        raise ValueError(f"{label}: {records} GRPO records, but {max_steps} steps x {per_step} prompts draw only "
                         f"{max_steps * per_step}; every arm must go once through its data: set grpo.max_steps to at "
                         f"least {math.ceil(records / per_step)} (all arms train the same steps)")


def data_stats(path: str) -> dict:
    """A GRPO data file's records, distinct prompts and distinct problems."""
    from data.jsonl import read_jsonl

    records = [record for _, record in read_jsonl(path)]
    return {"records": len(records), "distinct_prompts": len({record["prompt"] for record in records}),
            "problems": len({record["id"] for record in records})}


# -- the ranker gate ------------------------------------------------------------------------------------------


def ranker_gate(aucs: dict, threshold: float) -> dict:
    """The gate fixed in advance: a value model whose mean within-problem AUC on the evaluation problems stays
    below `threshold` cannot rank a problem's own programs, so VM-MCTS and ReST-RL are not testable with it.

    >>> ranker_gate({"vm": {"auc_within_problem": 0.55}}, 0.6)["verdict"]
    'not testable at this model size'
    >>> ranker_gate({}, 0.6)["testable"] is None
    True
    """
    value = (aucs.get("vm") or {}).get("auc_within_problem")
    testable = None if value is None else value >= threshold
    verdict = {None: "not measured", True: "testable", False: "not testable at this model size"}[testable]
    return {"rule": f"value model's mean within-problem AUC on the evaluation problems >= {threshold}, else the "
                    "VM-MCTS and ReST-RL claims are not testable at this model size (not refuted)",
            "threshold": threshold, "vm_auc_within_problem": value, "testable": testable, "verdict": verdict,
            "claims": ["vm_mcts_vs_orm_bon", "vm_mcts_vs_vm_bon", "vm_mcts_vs_orm_mcts", "rest_rl_vs_vm_mcts"]}


# -- the symbol bonus in GRPO groups --------------------------------------------------------------------------


def group_advantages(rewards: Sequence[float]) -> list[float]:
    """TRL's GRPO advantages of one group (scale_rewards "group"): (r - mean) / (std + 1e-4), the std with
    Bessel's correction. A group whose rewards differ only by a symbol bonus of 1e-3 gets advantages of order 1.

    >>> [round(value, 2) for value in group_advantages([1.001, 1.001, 1.0, 1.0])]
    [0.74, 0.74, -0.74, -0.74]
    """
    mean = sum(rewards) / len(rewards)
    std = math.sqrt(sum((reward - mean) ** 2 for reward in rewards) / (len(rewards) - 1))
    return [(reward - mean) / (std + 1e-4) for reward in rewards]


def symbol_bonus_groups(calls: Iterable[dict], num_generations: int) -> dict:
    """From a GRPO run's reward log (models.rewards.CodeReward's rewards.jsonl: one line per reward call,
    completions in groups of num_generations): the groups whose execution rewards all tie but whose rewards
    (execution + symbol bonus - trailing penalty) differ, the share of them where the symbol bonus differs,
    and their mean |advantage| against that of the groups whose execution rewards differ.

    >>> call = {"ids": ["a"] * 2 + ["b"] * 2, "scores": [{"execution": 1.0, "symbol": 0.001, "penalty": 0.0},
    ...     {"execution": 1.0, "symbol": 0.0, "penalty": 0.0}, {"execution": 1.0, "symbol": 0.001, "penalty": 0.0},
    ...     {"execution": 0.0, "symbol": 0.001, "penalty": 0.0}]}
    >>> result = symbol_bonus_groups([call], 2)
    >>> result["groups"], result["tie_reward_differ"], result["share"], result["symbol_differs"]
    (2, 1, 0.5, 1)
    >>> round(result["mean_abs_advantage"]["tie_reward_differ"], 3), round(result["advantage_mass_share"], 3)
    (0.619, 0.467)
    """
    counts = {"groups": 0, "tie_reward_differ": 0, "symbol_differs": 0, "execution_differ": 0}
    mass = {"tie_reward_differ": 0.0, "execution_differ": 0.0}
    for call in calls:
        scores, ids = call["scores"], call["ids"]
        for start in range(0, len(scores), num_generations):
            group = scores[start:start + num_generations]
            if len(set(ids[start:start + num_generations])) != 1:
                raise ValueError(f"a group of {num_generations} completions spans several problems: "
                                 "not a reward log of this num_generations")
            counts["groups"] += 1
            rewards = [score["execution"] + score["symbol"] - score["penalty"] for score in group]
            kind = "execution_differ" if len({score["execution"] for score in group}) > 1 else \
                "tie_reward_differ" if len(set(rewards)) > 1 else None
            if kind is None:
                continue
            counts[kind] += 1
            counts["symbol_differs"] += kind == "tie_reward_differ" and len({s["symbol"] for s in group}) > 1
            mass[kind] += sum(abs(value) for value in group_advantages(rewards))
    groups = counts["groups"]
    return {**counts, "share": counts["tie_reward_differ"] / groups if groups else None,
            "mean_abs_advantage": {kind: mass[kind] / (counts[kind] * num_generations) if counts[kind] else None
                                   for kind in mass},
            "advantage_mass_share": mass["tie_reward_differ"] / sum(mass.values()) if sum(mass.values()) else None}


# -- the runtime estimate -------------------------------------------------------------------------------------

# CPU-seconds, measured on the 2-core machine (docs/experiment.md, "Settings tried on the way" 3)
COSTS = {
    "grpo_completion": 6 / 64,  # a GRPO step of 8 prompts x 8 generations: about 6 s
    "ranker_row": 1 / 16,  # a value-model (ORM, SFT, DPO) batch of 16 rows: about 1 s
    "sample": (14 - 5) / 640,  # best-of-16 on 40 problems: 14 s, 5 of them starting the stage
    "mcts_sample": (14 - 5) / 320,  # MCTS at budget 8 on 40 problems: 14 s
    "stage": 5.0,  # starting one stage (imports, loading the policy)
    "trainer": 10.0,  # more to start a trainer
    "problem": 42 / 4400,  # data.tinycode: 42 s for 2,000 + 2,400 problems
}
PARALLEL_EFFICIENCY = 0.95  # the first final run: 76 CPU-minutes in 39.9 minutes on 2 lanes


def runtime_estimate(config: dict) -> dict:
    """CPU-seconds of each part of the protocol of `config`, and the wall minutes on `parallel` lanes; an upper
    bound where sizes are only known after a run (ReST data: at most max_steps x prompts_per_step records)."""
    cost, pool, seeds = COSTS, config["rl_problems"], len(config["train_seeds"])
    grpo, mcts, decoding = config["grpo"], config["mcts"], config["decoding"]
    draws, generations = grpo["max_steps"] * prompts_per_step(grpo), grpo["num_generations"]
    trainings = 4 * seeds + 1  # naive, ReST rounds 1 and 2, alpha-matched ReST per seed; DAPO once
    policies = 1 + trainings + 2  # the base, every GRPO training, SFT and DPO
    curve_points = len(config["curve_arms"]) * len(range(grpo["save_steps"], grpo["max_steps"], grpo["save_steps"]))
    decoder_rows = 4 * len(decoding["budgets"]) + seeds
    value_rows = pool * mcts["iteration_limit"] * (mcts["num_sample"] + 1)
    parts = {
        "problems": (config["problems"]["n_train"] + config["problems"]["n_test"]) * cost["problem"],
        "sampling": (1 + seeds) * pool * config["sample_n"] * cost["sample"],
        "zero_std": (pool + 2 * draws) * config["zero_std"]["groups"] * generations * cost["sample"],
        "grpo": trainings * (draws * generations * cost["grpo_completion"] + cost["trainer"]),
        "sft_dpo": (pool * config["sample_n"] + 2 * pool) * cost["ranker_row"] + 2 * cost["trainer"],
        "mcts_traces": pool * mcts["iteration_limit"] * mcts["num_sample"] * cost["mcts_sample"],
        "rankers": (value_rows + pool * config["sample_n"]) * cost["ranker_row"] + 2 * cost["trainer"],
        "evaluation": policies * config["eval_problems"] * config["eval_n"] * cost["sample"],
        "decoding": decoding["eval_problems"] * (
            sum(2 * budget * (cost["sample"] + cost["mcts_sample"]) for budget in decoding["budgets"])
            + seeds * decoding["rest_rl_budget"] * cost["mcts_sample"]),
        "curves": curve_points * config["curve_problems"] * config["curve_n"] * cost["sample"],
        "table": 2 * config["eval_problems"] * config["eval_n"] * cost["ranker_row"] / 3,
    }
    stages = 1 + (1 + seeds) + (7 + seeds) + (3 + seeds) + 1 + 1 + (trainings + 4) + policies + decoder_rows \
        + curve_points
    parts["stage_starts"] = stages * cost["stage"]
    cpu = sum(parts.values())
    return {"cpu_s": {key: round(value) for key, value in parts.items()}, "stages": stages,
            "cpu_minutes": round(cpu / 60, 1),
            "wall_minutes": round(cpu / (config["parallel"] * PARALLEL_EFFICIENCY) / 60, 1)}


# -- the check stage ------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Check that max_steps GRPO steps go once through a data file.")
    parser.add_argument("--data", required=True, help="a GRPO data file (process_gen_data --mode grpo)")
    parser.add_argument("--max_steps", type=int, required=True, help="the steps every arm trains")
    parser.add_argument("--prompts_per_step", type=int, required=True, help="prompt groups per step")
    args = parser.parse_args(argv)
    stats = data_stats(args.data)
    try:
        check_steps(stats["records"], args.max_steps, args.prompts_per_step, args.data)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({**stats, "max_steps": args.max_steps, "draws": args.max_steps * args.prompts_per_step}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
