"""The table of `experiment.reproduce` (protocol v2): every comparison a paired difference over the same evaluation
problems, training seeds resampled (evaluation.compare); the rankers' AUC on the base policy's evaluation programs
and the gate it decides; zero-std fractions; each GRPO arm's data, steps and symbol-bonus groups; the value model's
targets by depth; the alpha rule; and the three figures (efficiency.png, budget.png, zero_std.png)."""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict

from data.jsonl import read_jsonl, read_unique, write_json
from evaluation.compare import compare_files, paired_bootstrap, problem_scores, verified_path
from evaluation.metrics import STRICT_THRESHOLD, auc
from experiment.reproduce_rules import (
    data_stats,
    prompts_per_step,
    ranker_gate,
    runtime_estimate,
    symbol_bonus_groups,
)

POLICY_ROWS = {"base": "Base policy", "naive_grpo": "Naive GRPO", "naive_dapo": "Naive GRPO, DAPO loss",
               "rest_round1": "ReST-GRPO round 1", "rest_round2": "ReST-GRPO round 2",
               "rest_alpha_matched": "ReST-GRPO, alpha matched", "rest_em_sft": "ReST-EM (SFT)",
               "rest_dpo": "ReST-DPO"}
GRPO_ROWS = ("naive_grpo", "naive_dapo", "rest_round1", "rest_round2", "rest_alpha_matched")
DECODER_ROWS = {"orm_bon": "ORM best-of-N", "vm_bon": "VM best-of-N", "orm_mcts": "ORM-MCTS", "vm_mcts": "VM-MCTS",
                "rest_rl": "ReST-RL (ReST-GRPO round 2 + VM-MCTS)"}
ZERO_STD_LABELS = {"naive": "naive data", "rest": "ReST data", "rest_alpha_matched": "alpha-matched ReST data"}


def comparison_specs(budgets: list[int], rest_rl_budget: int) -> dict[str, tuple[str, str]]:
    """{key: (arm A, arm B)}: the table's comparisons, A - B, as issues 14 and 24 name them."""
    specs = {"grpo_vs_base": ("naive_grpo", "base"), "rest_vs_naive": ("rest_round1", "naive_grpo"),
             "rest_round2_vs_round1": ("rest_round2", "rest_round1"), "dapo_vs_naive": ("naive_dapo", "naive_grpo"),
             "rest_alpha_matched_vs_naive": ("rest_alpha_matched", "naive_grpo"),
             "rest_alpha_matched_vs_rest": ("rest_alpha_matched", "rest_round1"),
             "rest_em_sft_vs_base": ("rest_em_sft", "base"), "rest_dpo_vs_base": ("rest_dpo", "base"),
             "rest_round2_vs_base": ("rest_round2", "base")}
    for budget in budgets:
        for other in ("orm_bon", "vm_bon", "orm_mcts"):
            specs[f"vm_mcts_vs_{other}@{budget}"] = (f"vm_mcts@{budget}", f"{other}@{budget}")
    specs[f"rest_rl_vs_vm_mcts@{rest_rl_budget}"] = (f"rest_rl@{rest_rl_budget}", f"vm_mcts@{rest_rl_budget}")
    return specs


def summary(work: str, path: str) -> dict:
    record = next(record for _, record in read_jsonl(os.path.join(work, path)))
    return {key: record.get(key) for key in ("n_problems", "strict_acc", "strict_acc_ci95", "average_acc",
                                             "samples_per_problem", "tokens_per_problem")}


def row_summary(work: str, paths: list[str], seed: int) -> dict:
    """A row's figures: one evaluation's, or over several training seeds the mean of theirs with an interval that
    resamples problems and seeds (evaluation.compare's bootstrap of the row against zero); `per_seed` pass@1."""
    rows = [summary(work, path) for path in paths]
    out = {**rows[0], "per_seed": [row["strict_acc"] for row in rows]}
    if len(rows) > 1:
        scores = [problem_scores(os.path.join(work, path)) for path in paths]
        problems = sorted(scores[0])
        out["strict_acc_ci95"] = paired_bootstrap([[score[p] for p in problems] for score in scores],
                                                  [[0.0] * len(problems)], seed=seed).ci95
        for key in ("strict_acc", "average_acc", "samples_per_problem", "tokens_per_problem"):
            out[key] = sum(row[key] for row in rows) / len(rows)
    return out


def training_curves(work: str, policy_dir: str) -> dict[str, list[float]]:
    """TRL's per-step logs of a GRPO run (frac_reward_zero_std: the share of groups whose rewards all agree)."""
    with open(os.path.join(work, policy_dir, "trainer_state.json"), encoding="utf-8") as handle:
        history = json.load(handle)["log_history"]
    keys = ("reward", "reward_std", "kl", "frac_reward_zero_std", "completions/mean_length")
    return {key: [entry[key] for entry in history if key in entry] for key in keys}


def mean_over_seeds(series: list[list[float]]) -> list[float]:
    """Step by step, the mean of the seeds' values (over the steps all of them logged).

    >>> mean_over_seeds([[0.5, 0.25, 1.0], [0.25, 0.75]])
    [0.375, 0.5]
    """
    steps = min(len(values) for values in series)
    return [sum(values[step] for values in series) / len(series) for step in range(steps)]


def judged_programs(work: str, results: str) -> dict[str, tuple[list[str], list[bool]]]:
    """{problem id: (programs, whether each passes every test)} of an evaluation run (its completions and
    verified records beside `results`), over the problems that have programs."""
    completions = results[: -len("_results.jsonl")] + "_completions.jsonl"
    verified = {str(record["id"]): record for _, record in read_unique(os.path.join(work, verified_path(results)))}
    return {str(record["id"]): (record["completions"], [reward >= STRICT_THRESHOLD
                                                        for reward in verified[str(record["id"])]["rewards"]])
            for _, record in read_unique(os.path.join(work, completions)) if record["completions"]}


def ranker_auc(score, prompts: dict[str, str], judged: dict[str, tuple[list[str], list[bool]]]) -> dict:
    """A ranker's AUC, passing programs against failing ones, over all programs and per problem (the problems
    holding both kinds); `score(prompts, programs)` is a value model's, each program ending with one newline.

    >>> table = {"lo": 0.1, "hi": 0.9, "mid": 0.5}
    >>> found = ranker_auc(lambda ps, xs: [table[x.strip()] for x in xs], {"a": "A", "b": "B"},
    ...                    {"a": (["hi", "lo"], [True, False]), "b": (["mid", "lo"], [True, True])})
    >>> found["auc"], found["within"], found["n_programs"]
    (0.8333333333333334, {'a': 1.0}, 4)
    """
    scores, labels, within = [], [], {}
    for key, (programs, passed) in judged.items():
        values = score([prompts[key]] * len(programs), [program.rstrip() + "\n" for program in programs])
        scores += values
        labels += passed
        value = auc(values, passed)
        if value is not None:
            within[key] = value
    return {"auc": auc(scores, labels), "within": within, "n_programs": len(scores)}


def mean_within(within: dict[str, float]) -> float | None:
    """The within-problem AUC averaged over problems (in id order), None when no problem holds both kinds."""
    return sum(within[key] for key in sorted(within)) / len(within) if within else None


def ranker_aucs(work: str, models: dict[str, str], base_results: str) -> dict[str, dict]:
    """Each ranker's AUC (passing programs against failing ones) on the base policy's evaluation
    programs: over all programs, and averaged within problems (what best-of-N needs)."""
    from data.registry import get_benchmark
    from experiment.common import local_model_path
    from rms.value_models import load_value_model

    judged = judged_programs(work, base_results)
    prompts = {problem.id: problem.prompt for problem in get_benchmark("TinyCode").load(
        os.path.join(work, "data", "TinyCode"), "eval.jsonl")}
    out = {}
    for label, path in models.items():
        found = ranker_auc(load_value_model(local_model_path(os.path.join(work, path))).score, prompts, judged)
        out[label] = {"auc": found["auc"], "auc_within_problem": mean_within(found["within"]),
                      "n_programs": found["n_programs"], "n_problems_both_classes": len(found["within"])}
    return out


def comparisons(work: str, results: dict[str, list[str]], specs: dict, seed: int) -> dict[str, dict]:
    """A - B for each spec whose rows have results, one file per training seed of each (seeds resampled)."""
    out = {}
    for key, (a, b) in specs.items():
        if results.get(a) and results.get(b):
            result = compare_files([os.path.join(work, path) for path in results[a]],
                                   [os.path.join(work, path) for path in results[b]], seed=seed)
            out[key] = {**asdict(result), "a": a, "b": b}
    return out


def zero_std_data(path: str, seed: int) -> dict:
    """experiment.zero_std's shares of the naive, the ReST and the alpha-matched ReST data, and paired comparisons
    over problems: naive minus each ReST data set, and on the problems' own prompts only (what the std filter does,
    without prefixes)."""
    from experiment.zero_std import summary as shares_of

    shares = shares_of(path, list(ZERO_STD_LABELS), seed)["shares"]
    pairs = {"zero_std_naive_minus_rest": ("rest", None),
             "zero_std_naive_minus_rest_problem_prompts": ("rest", 0),
             "zero_std_naive_minus_rest_alpha_matched": ("rest_alpha_matched", None)}
    compared = {}
    for key, (other, max_prefix) in pairs.items():
        if shares["naive"]["groups"] and shares[other]["groups"]:
            difference = shares_of(path, ["naive", other], seed, max_prefix_lines=max_prefix)["difference"]
            suffix = ", problem prompts only" if max_prefix == 0 else ""
            compared[key] = {**difference, "a": "naive data", "b": ZERO_STD_LABELS[other] + suffix}
    return {"shares": shares, "comparisons": compared}


def zero_std_comparison(naive: list[list[float]], rest: list[list[float]], seed: int) -> dict:
    """Naive minus ReST, paired by training step (both arms take the same number of steps and groups); each arm
    one series per training seed, resampled as evaluation.compare resamples seeds."""
    steps = min(len(series) for series in naive + rest)
    naive, rest = [series[:steps] for series in naive], [series[:steps] for series in rest]
    result = paired_bootstrap(naive, rest, seed=seed)
    return {**asdict(result), "a": "naive_grpo", "b": "rest_round1", "unit": "training step",
            "naive": sum(map(sum, naive)) / (steps * len(naive)), "rest": sum(map(sum, rest)) / (steps * len(rest))}


def curve_points(work: str, config: dict, finals: dict[str, str], curves: dict) -> dict[str, list[list[float]]]:
    """pass@1 against GRPO steps on the first curve_problems evaluation problems (each curve arm's first seed):
    step 0 is the base policy and the last step the final model (`finals`: their full evaluations, restricted to
    those problems)."""
    count = config["curve_problems"]

    def on_subset(path: str) -> float:
        scores = problem_scores(os.path.join(work, path))
        chosen = [scores[key] for key in sorted(scores, key=lambda key: int(key.rsplit("/", 1)[1]))][:count]
        return sum(chosen) / len(chosen)

    points = {}
    for label, checkpoints in curves.items():
        series = [[0, on_subset(finals["base"])]]
        series += [[step, on_subset(path)] for step, path in sorted(checkpoints.items())]
        series.append([config["grpo"]["max_steps"], on_subset(finals[label])])
        points[label] = series
    return points


def training_data(work: str, protocol) -> dict[str, list[dict]]:
    """Per GRPO arm and seed: its data's records, distinct prompts and problems, the steps every arm trains and the
    prompt draws they make, the passes over the data that gives, the steps trained (trainer_state.json) and the
    problems its reward log saw."""
    grpo = protocol.config["grpo"]
    per_step = prompts_per_step(grpo)
    out = {}
    for arm in GRPO_ROWS:
        entries = []
        for seed, data, policy in zip(protocol.seeds[arm], protocol.train_data.get(arm, []),
                                      protocol.policies.get(arm, [])):
            if not finished(work, data):
                continue
            stats = data_stats(os.path.join(work, data))
            entry = {"seed": seed, "data": data, **stats, "max_steps": grpo["max_steps"], "prompts_per_step": per_step,
                     "passes": round(grpo["max_steps"] * per_step / stats["records"], 2) if stats["records"] else None,
                     "steps_trained": None, "problems_seen": None}
            if finished(work, os.path.join(policy, "trainer_state.json")):
                with open(os.path.join(work, policy, "trainer_state.json"), encoding="utf-8") as handle:
                    entry["steps_trained"] = json.load(handle)["global_step"]
                entry["problems_seen"] = len({problem for _, call in read_jsonl(os.path.join(work, policy,
                                                                                            "rewards.jsonl"))
                                              for problem in call["ids"]})
            entries.append(entry)
        if entries:
            out[arm] = entries
    return out


def symbol_bonus_shares(work: str, protocol) -> dict[str, dict]:
    """Per GRPO arm, over its finished trainings' reward logs: the groups whose execution rewards tie but whose
    rewards differ, and their advantages (experiment.reproduce_rules.symbol_bonus_groups)."""
    generations = protocol.config["grpo"]["num_generations"]
    out = {}
    for arm in GRPO_ROWS:
        logs = [os.path.join(work, policy, "rewards.jsonl") for policy in protocol.policies.get(arm, [])
                if finished(work, os.path.join(policy, "trainer_state.json"))]
        if logs:
            calls = [call for log in logs for _, call in read_jsonl(log)]
            out[arm] = {**symbol_bonus_groups(calls, generations), "trainings": len(logs)}
    return out


def value_targets(work: str, trace: str) -> dict | None:
    """The value model's targets in the MCTS traces (what process_gen_data --method MCTS keeps): the scored programs,
    and the expanded states by depth (lines written after the starter)."""
    if not trace or not finished(work, trace):
        return None
    programs, problems, depths = 0, 0, Counter()
    for _, record in read_jsonl(os.path.join(work, trace)):
        problems += 1
        programs += len(record.get("completions") or [])
        for entry in record.get("rewards") or []:
            if entry.get("expanded"):
                depths[entry["state"][len(record["init_state"]):].count("\n")] += 1
    return {"problems": problems, "programs": programs,
            "states_by_depth": {str(depth): depths[depth] for depth in sorted(depths)},
            "states_at_depth_3_or_more": sum(count for depth, count in depths.items() if depth >= 3)}


def legend(axis, **settings) -> None:
    """The axis' legend, when it has labelled lines (an interrupted run's figure may have none)."""
    if axis.get_legend_handles_labels()[0]:
        axis.legend(**settings)


def plots(work: str, config: dict, rows: dict, curves: dict, zero_std: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for label, series in curves.items():
        axis.plot([x for x, _ in series], [y for _, y in series], marker="o", label=POLICY_ROWS[label])
    axis.set(title="TinyCode: training efficiency", xlabel="GRPO steps",
             ylabel=f"pass@1 (first {config['curve_problems']} evaluation problems)")
    legend(axis)
    figure.tight_layout()
    figure.savefig(os.path.join(work, "efficiency.png"), dpi=150)
    plt.close(figure)
    figure, axis = plt.subplots(figsize=(6, 4))
    for prefix, name in DECODER_ROWS.items():
        points = sorted(((row["samples_per_problem"], row) for key, row in rows.items()
                         if key.startswith(prefix + "@")), key=lambda point: point[0])
        if points:
            axis.errorbar([x for x, _ in points], [row["strict_acc"] for _, row in points], marker="o", capsize=3,
                          label=name, yerr=[[row["strict_acc"] - row["strict_acc_ci95"][0] for _, row in points],
                                            [row["strict_acc_ci95"][1] - row["strict_acc"] for _, row in points]])
    if "base" in rows:
        axis.axhline(rows["base"]["strict_acc"], color="grey", linestyle=":", label="base policy, one sample")
    axis.set(title="TinyCode: accuracy at a budget", xlabel="policy samples per problem", ylabel="pass@1")
    legend(axis, fontsize=7)
    figure.tight_layout()
    figure.savefig(os.path.join(work, "budget.png"), dpi=150)
    plt.close(figure)
    figure, axis = plt.subplots(figsize=(6, 4))
    for label, history in zero_std.items():
        axis.plot(range(1, len(history) + 1), history, label=POLICY_ROWS[label])
    axis.set(title="Fraction of GRPO groups with zero reward std", xlabel="GRPO step", ylabel="fraction")
    legend(axis)
    figure.tight_layout()
    figure.savefig(os.path.join(work, "zero_std.png"), dpi=150)
    plt.close(figure)


def fmt(value, digits: int = 3) -> str:
    """A number for the table, "n/a" for a missing one.

    >>> fmt(0.12345), fmt(None), fmt(2, 0)
    ('0.123', 'n/a', '2')
    """
    return "n/a" if value is None else f"{value:.{digits}f}"


def rows_markdown(rows: dict, compared: dict) -> list[str]:
    lines = ["| row | pass@1 | 95% interval | avg test pass rate | samples / problem | tokens / problem | "
             "pass@1 per seed |", "|---|---|---|---|---|---|---|"]
    names = {**POLICY_ROWS, **{f"{key}@{b}": f"{name} @ {b}" for key, name in DECODER_ROWS.items()
                               for b in (1, 2, 4, 8, 16, 32, 64)}}
    for key, row in rows.items():
        low, high = row["strict_acc_ci95"]
        per_seed = ", ".join(f"{value:.3f}" for value in row["per_seed"]) if len(row["per_seed"]) > 1 else ""
        lines.append(f"| {names.get(key, key)} | {row['strict_acc']:.3f} | [{low:.3f}, {high:.3f}] | "
                     f"{row['average_acc']:.3f} | {row['samples_per_problem']:.1f} | {row['tokens_per_problem']:.0f} | "
                     f"{per_seed} |")
    lines += ["", "| comparison (A - B, paired over problems) | difference | 95% interval | problems | "
              "seeds (A vs B) | resolved |", "|---|---|---|---|---|---|"]
    for key, value in compared.items():
        low, high = value["ci95"]
        unit = f" {value['unit']}s" if value.get("unit", "problem") != "problem" else ""  # what was resampled
        seeds = value.get("n_seeds", [1, 1])
        lines.append(f"| {key} ({value['a']} - {value['b']}) | {value['difference']:+.3f} | [{low:+.3f}, {high:+.3f}]"
                     f" | {value['n_problems']}{unit} | {seeds[0]} vs {seeds[1]} | "
                     f"{'yes' if value['resolved'] else 'no'} |")
    return lines


def rankers_markdown(aucs: dict, gate: dict, targets: dict | None) -> list[str]:
    lines = ["", "| ranker | AUC, all programs | AUC within a problem (mean) | programs |", "|---|---|---|---|"]
    for label, value in aucs.items():
        lines.append(f"| {label.upper()} | {fmt(value['auc'])} | {fmt(value['auc_within_problem'])} | "
                     f"{value['n_programs']} |")
    lines += ["", f"Ranker gate (fixed in advance: {gate['rule']}): VM within-problem AUC "
              f"{fmt(gate['vm_auc_within_problem'])}, **{gate['verdict']}**."]
    if gate["testable"] is False:
        lines.append("The VM-MCTS and ReST-RL comparisons above are reported as measured; they cannot refute the "
                     "claims, whose value model does not rank a problem's own programs here.")
    if targets:
        lines.append(f"Value-model targets in the MCTS traces ({targets['problems']} problems): {targets['programs']} "
                     "scored programs; expanded states by depth: " + ", ".join(
                         f"{depth}: {count}" for depth, count in targets["states_by_depth"].items()))
    return lines


def arms_markdown(data: dict, symbol: dict, rule: dict | None) -> list[str]:
    lines = []
    if rule:
        shares = ", ".join(f"{key} {value:.3f}" for key, value in rule["shares"].items())
        lines += ["", f"Alpha rule (fixed before any run): {rule['rule']}: **alpha {rule['value']}** (the shares: "
                  f"{shares}; {rule['programs']} programs)."]
    lines += ["", "| GRPO arm | seeds | records | distinct prompts | problems | steps x prompts per step | passes over "
              "the data | problems seen |", "|---|---|---|---|---|---|---|---|"]
    for arm, entries in data.items():
        cells = ["/".join("n/a" if entry[key] is None else str(entry[key]) for entry in entries)
                 for key in ("seed", "records", "distinct_prompts", "problems", "passes", "problems_seen")]
        steps = f"{entries[0]['max_steps']} x {entries[0]['prompts_per_step']}"
        lines.append(f"| {POLICY_ROWS[arm]} | " + " | ".join(cells[:4] + [steps] + cells[4:]) + " |")
    lines += ["", "| GRPO arm | groups | execution tie, rewards differ | of them symbol bonus differs | mean abs "
              "advantage there | mean abs advantage, execution differs | share of all abs advantage |",
              "|---|---|---|---|---|---|---|"]
    for arm, value in symbol.items():
        advantage = value["mean_abs_advantage"]
        lines.append(f"| {POLICY_ROWS[arm]} | {value['groups']} | {value['tie_reward_differ']} "
                     f"({fmt(value['share'])}) | {value['symbol_differs']} | {fmt(advantage['tie_reward_differ'])} | "
                     f"{fmt(advantage['execution_differ'])} | {fmt(value['advantage_mass_share'])} |")
    return lines


def zero_std_markdown(zero_std: dict, data_zero_std: dict | None) -> list[str]:
    lines = []
    if data_zero_std:
        shares = data_zero_std["shares"]
        lines += ["", "Zero-std groups on fresh base-policy samples of each data set's prompts: " + ", ".join(
            f"{name} {fmt(shares[label]['zero_std'])} ({shares[label]['groups']} groups)"
            for label, name in ZERO_STD_LABELS.items() if shares[label]["groups"])]
        for label in ("rest", "rest_alpha_matched"):
            by_prefix = ", ".join(f"{count}: {value['zero_std']:.2f} ({value['groups']})"
                                  for count, value in shares[label]["by_prefix_lines"].items())
            if by_prefix:
                lines.append(f"{ZERO_STD_LABELS[label]} by lines of the best program in the prompt: {by_prefix}")
    if any(zero_std.values()):
        means = [f"{POLICY_ROWS[label]} {sum(history) / len(history):.3f}"
                 for label, history in zero_std.items() if history]
        lines += ["", "Zero-std GRPO groups (mean over steps and seeds): " + ", ".join(means)]
    return lines


def markdown(figures: dict) -> str:
    lines = rows_markdown(figures["rows"], figures["comparisons"])
    lines += rankers_markdown(figures["ranker_auc"], figures["ranker_gate"], figures["value_targets"])
    lines += arms_markdown(figures["training_data"], figures["symbol_bonus_shares"], figures["alpha_rule"])
    lines += zero_std_markdown(figures["zero_std_per_step"], figures["zero_std_data"])
    lines.append(f"Stages: {figures['elapsed_s'] / 60:.1f} minutes on this machine (the tiny policy's training and "
                 f"installation not counted; estimated at most {figures['runtime_estimate']['wall_minutes']}).")
    return "\n".join(lines)


def finished(work: str, path: str) -> bool:
    return os.path.exists(os.path.join(work, path))


def finished_results(work: str, protocol) -> tuple[dict[str, list[str]], dict[str, list[int]], list[str]]:
    """Each row's finished evaluations (one per training seed), the seeds they come from, and what has not
    finished ("row" or "row seed s")."""
    results, seeds, missing = {}, {}, []
    for label, paths in protocol.results.items():
        row_seeds = protocol.seeds.get(label) or [None] * len(paths)
        for seed, path in zip(row_seeds, paths):
            if finished(work, path):
                results.setdefault(label, []).append(path)
                seeds.setdefault(label, []).extend([] if seed is None else [seed])
            else:
                missing.append(label if len(paths) == 1 else f"{label} seed {seed}")
    return results, seeds, sorted(missing)


def write_outputs(work: str, protocol, elapsed, seconds, alpha_rule: dict | None = None) -> dict:
    """Everything the table needs from `protocol` (experiment.reproduce.Protocol: where each output lands), then
    the files; `elapsed` (seconds, or a function giving them) is read last, then `seconds` (each step's seconds, or
    a function giving them). Rows whose stage has not finished (`--table_only` on an interrupted run) are left out
    and listed as missing; a row with some seeds finished uses those (`seeds` says which)."""
    config = protocol.config
    seed = config["seed"]
    results, seeds, missing = finished_results(work, protocol)
    rows = {label: row_summary(work, paths, seed) for label, paths in results.items()}
    decoding = config["decoding"]
    compared = comparisons(work, results, comparison_specs(decoding["budgets"], decoding["rest_rl_budget"]), seed)
    training = {arm: {str(s): training_curves(work, policy)
                      for s, policy in zip(protocol.seeds[arm], protocol.policies.get(arm, []))
                      if finished(work, os.path.join(policy, "trainer_state.json"))} for arm in GRPO_ROWS}
    training = {arm: runs for arm, runs in training.items() if runs}
    zero_std_runs = {arm: [logs["frac_reward_zero_std"] for logs in runs.values()] for arm, runs in training.items()}
    zero_std = {arm: mean_over_seeds(series) for arm, series in zero_std_runs.items()}
    data_zero_std = None
    if finished(work, protocol.zero_std_output()):
        data_zero_std = zero_std_data(os.path.join(work, protocol.zero_std_output()), seed)
        compared.update(data_zero_std.pop("comparisons"))
    if "naive_grpo" in zero_std and "rest_round1" in zero_std:
        compared["zero_std_training_naive_minus_rest"] = zero_std_comparison(zero_std_runs["naive_grpo"],
                                                                             zero_std_runs["rest_round1"], seed)
    ready = {label: path for label, path in protocol.models.items() if finished(work, os.path.join(path, "best"))}
    aucs = ranker_aucs(work, ready, results["base"][0]) if ready and "base" in results else {}
    finals = {label: paths[0] for label, paths in protocol.results.items() if finished(work, paths[0])}
    curves = {label: {step: path for step, path in points.items() if finished(work, path)}
              for label, points in protocol.curves.items() if label in finals}
    curve = curve_points(work, config, finals, curves) if "base" in finals else {}
    seconds_so_far = elapsed() if callable(elapsed) else elapsed
    seconds = seconds() if callable(seconds) else seconds  # read after elapsed(), which records this run's
    figures = {"elapsed_s": round(seconds_so_far, 1), "comparisons": compared, "rows": rows, "seeds": seeds,
               "ranker_auc": aucs, "ranker_gate": ranker_gate(aucs, config["ranker_gate"]["min_auc_within_problem"]),
               "alpha_rule": alpha_rule, "training_data": training_data(work, protocol),
               "symbol_bonus_shares": symbol_bonus_shares(work, protocol),
               "value_targets": value_targets(work, protocol.trace), "efficiency_curve": curve,
               "zero_std_per_step": zero_std, "zero_std_data": data_zero_std, "training": training,
               "runtime_estimate": runtime_estimate(config), "step_seconds": seconds, "missing": missing,
               "config": config}
    text = markdown(figures)
    if missing:
        text += "\nNot finished, left out: " + ", ".join(missing) + "."
    with open(os.path.join(work, "table.md"), "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    write_json(os.path.join(work, "table.json"), figures)
    plots(work, config, rows, curve, zero_std)
    print("\n" + text)
    print(f"\nwritten: {work}/table.md, table.json, efficiency.png, budget.png, zero_std.png, commands.sh")
    return figures
