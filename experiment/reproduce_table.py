"""The table of `experiment.reproduce`: every comparison a paired difference over the same evaluation
problems (evaluation.compare), the rankers' AUC on the base policy's evaluation programs, the zero-std
fractions of the GRPO trainings, and the three figures (efficiency.png, budget.png, zero_std.png)."""
from __future__ import annotations

import json
import os
from dataclasses import asdict

from data.jsonl import read_jsonl, read_unique, write_json
from evaluation.compare import compare_files, paired_bootstrap, problem_scores, verified_path
from evaluation.metrics import STRICT_THRESHOLD, auc

POLICY_ROWS = {"base": "Base policy", "naive_grpo": "Naive GRPO", "naive_dapo": "Naive GRPO, DAPO loss",
               "rest_round1": "ReST-GRPO round 1", "rest_round2": "ReST-GRPO round 2",
               "rest_em_sft": "ReST-EM (SFT)", "rest_dpo": "ReST-DPO"}
DECODER_ROWS = {"orm_bon": "ORM best-of-N", "vm_bon": "VM best-of-N", "orm_mcts": "ORM-MCTS", "vm_mcts": "VM-MCTS",
                "rest_rl": "ReST-RL (ReST-GRPO round 2 + VM-MCTS)"}


def comparison_specs(budgets: list[int], rest_rl_budget: int) -> dict[str, tuple[str, str]]:
    """{key: (arm A, arm B)}: the table's comparisons, A - B, as issue 14 names them."""
    specs = {"grpo_vs_base": ("naive_grpo", "base"), "rest_vs_naive": ("rest_round1", "naive_grpo"),
             "rest_round2_vs_round1": ("rest_round2", "rest_round1"), "dapo_vs_naive": ("naive_dapo", "naive_grpo"),
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


def training_curves(work: str, policy_dir: str) -> dict[str, list[float]]:
    """TRL's per-step logs of a GRPO run (frac_reward_zero_std: the share of groups whose rewards all agree)."""
    with open(os.path.join(work, policy_dir, "trainer_state.json"), encoding="utf-8") as handle:
        history = json.load(handle)["log_history"]
    keys = ("reward", "reward_std", "kl", "frac_reward_zero_std", "completions/mean_length")
    return {key: [entry[key] for entry in history if key in entry] for key in keys}


def ranker_aucs(work: str, models: dict[str, str], base_results: str) -> dict[str, dict]:
    """Each ranker's AUC (passing programs against failing ones) on the base policy's evaluation
    programs: over all programs, and averaged within problems (what best-of-N needs)."""
    from data.registry import get_benchmark
    from experiment.common import local_model_path
    from rms.value_models import load_value_model

    completions_path = base_results[: -len("_results.jsonl")] + "_completions.jsonl"
    verified = {str(record["id"]): record for _, record in read_unique(os.path.join(work, verified_path(base_results)))}
    problems = {problem.id: problem for problem in get_benchmark("TinyCode").load(
        os.path.join(work, "data", "TinyCode"), "eval.jsonl")}
    answers = [record for _, record in read_unique(os.path.join(work, completions_path)) if record["completions"]]
    out = {}
    for label, path in models.items():
        model = load_value_model(local_model_path(os.path.join(work, path)))
        scores, labels, groups = [], [], []
        for answer in answers:
            programs, rewards = answer["completions"], verified[str(answer["id"])]["rewards"]
            problem = problems[str(answer["id"])]
            scores += model.score([problem.prompt] * len(programs), [p.rstrip() + "\n" for p in programs])
            labels += [reward >= STRICT_THRESHOLD for reward in rewards]
            groups += [str(answer["id"])] * len(programs)
        within = []
        for group in sorted(set(groups)):
            members = [i for i, g in enumerate(groups) if g == group]
            value = auc([scores[i] for i in members], [labels[i] for i in members])
            if value is not None:
                within.append(value)
        out[label] = {"auc": auc(scores, labels), "auc_within_problem": sum(within) / len(within) if within else None,
                      "n_programs": len(scores), "n_problems_both_classes": len(within)}
    return out


def comparisons(work: str, results: dict[str, str], specs: dict, seed: int) -> dict[str, dict]:
    out = {}
    for key, (a, b) in specs.items():
        if a in results and b in results:
            result = compare_files([os.path.join(work, results[a])], [os.path.join(work, results[b])], seed=seed)
            out[key] = {**asdict(result), "a": a, "b": b}
    return out


def zero_std_data(path: str, seed: int) -> dict:
    """experiment.zero_std's shares of the naive and the ReST data, and two paired comparisons over problems: all
    prompts (the claim), and the problems' own prompts only (what the std filter does, without prefixes)."""
    from experiment.zero_std import summary

    everything = summary(path, ["naive", "rest"], seed)
    own = summary(path, ["naive", "rest"], seed, max_prefix_lines=0)
    comparisons = {"zero_std_naive_minus_rest": {**everything["difference"], "a": "naive data", "b": "ReST data"},
                   "zero_std_naive_minus_rest_problem_prompts": {**own["difference"], "a": "naive data",
                                                                 "b": "ReST data, problem prompts only"}}
    return {"shares": everything["shares"], "comparisons": comparisons}


def zero_std_comparison(naive: list[float], rest: list[float], seed: int) -> dict:
    """Naive minus ReST, paired by training step (both runs take the same number of steps and groups)."""
    steps = min(len(naive), len(rest))
    result = paired_bootstrap([naive[:steps]], [rest[:steps]], seed=seed)
    return {**asdict(result), "a": "naive_grpo", "b": "rest_round1", "unit": "training step",
            "naive": sum(naive[:steps]) / steps, "rest": sum(rest[:steps]) / steps}


def curve_points(work: str, config: dict, results: dict[str, str], curves: dict) -> dict[str, list[list[float]]]:
    """pass@1 against GRPO steps on the first curve_problems evaluation problems: step 0 is the base policy and
    the last step the final model (their full evaluations, restricted to those problems)."""
    count = config["curve_problems"]

    def on_subset(path: str) -> float:
        scores = problem_scores(os.path.join(work, path))
        chosen = [scores[key] for key in sorted(scores, key=lambda key: int(key.rsplit("/", 1)[1]))][:count]
        return sum(chosen) / len(chosen)

    points = {}
    for label, checkpoints in curves.items():
        series = [[0, on_subset(results["base"])]]
        series += [[step, on_subset(path)] for step, path in sorted(checkpoints.items())]
        series.append([config["grpo"]["max_steps"], on_subset(results[label])])
        points[label] = series
    return points


def plots(work: str, config: dict, rows: dict, curves: dict, zero_std: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for label, series in curves.items():
        axis.plot([x for x, _ in series], [y for _, y in series], marker="o", label=POLICY_ROWS[label])
    axis.set(title="TinyCode: training efficiency", xlabel="GRPO steps",
             ylabel=f"pass@1 (first {config['curve_problems']} evaluation problems)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(work, "efficiency.png"), dpi=150)
    plt.close(figure)
    figure, axis = plt.subplots(figsize=(6, 4))
    for prefix, name in DECODER_ROWS.items():
        points = sorted((row["samples_per_problem"], row) for key, row in rows.items() if key.startswith(prefix + "@"))
        if points:
            axis.errorbar([x for x, _ in points], [row["strict_acc"] for _, row in points], marker="o", capsize=3,
                          label=name, yerr=[[row["strict_acc"] - row["strict_acc_ci95"][0] for _, row in points],
                                            [row["strict_acc_ci95"][1] - row["strict_acc"] for _, row in points]])
    if "base" in rows:
        axis.axhline(rows["base"]["strict_acc"], color="grey", linestyle=":", label="base policy, one sample")
    axis.set(title="TinyCode: accuracy at a budget", xlabel="policy samples per problem", ylabel="pass@1")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(os.path.join(work, "budget.png"), dpi=150)
    plt.close(figure)
    figure, axis = plt.subplots(figsize=(6, 4))
    for label, history in zero_std.items():
        axis.plot(range(1, len(history) + 1), history, label=POLICY_ROWS[label])
    axis.set(title="Fraction of GRPO groups with zero reward std", xlabel="GRPO step", ylabel="fraction")
    axis.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(work, "zero_std.png"), dpi=150)
    plt.close(figure)


def markdown(rows: dict, compared: dict, aucs: dict, zero_std: dict, figures: dict, data_zero_std: dict | None) -> str:
    lines = ["| row | pass@1 | 95% interval | avg test pass rate | samples / problem | tokens / problem |",
             "|---|---|---|---|---|---|"]
    names = {**POLICY_ROWS, **{f"{key}@{b}": f"{name} @ {b}" for key, name in DECODER_ROWS.items()
                               for b in (1, 2, 4, 8, 16, 32, 64)}}
    for key, row in rows.items():
        low, high = row["strict_acc_ci95"]
        lines.append(f"| {names.get(key, key)} | {row['strict_acc']:.3f} | [{low:.3f}, {high:.3f}] | "
                     f"{row['average_acc']:.3f} | {row['samples_per_problem']:.1f} | {row['tokens_per_problem']:.0f} |")
    lines += ["", "| comparison (A - B, paired over problems) | difference | 95% interval | problems | resolved |",
              "|---|---|---|---|---|"]
    for key, value in compared.items():
        low, high = value["ci95"]
        unit = f" {value['unit']}s" if value.get("unit", "problem") != "problem" else ""  # what was resampled
        lines.append(f"| {key} ({value['a']} - {value['b']}) | {value['difference']:+.3f} | [{low:+.3f}, {high:+.3f}]"
                     f" | {value['n_problems']}{unit} | {'yes' if value['resolved'] else 'no'} |")
    lines += ["", "| ranker | AUC, all programs | AUC within a problem (mean) | programs |", "|---|---|---|---|"]
    fmt = lambda value: "n/a" if value is None else f"{value:.3f}"  # noqa: E731
    for label, value in aucs.items():
        lines.append(f"| {label.upper()} | {fmt(value['auc'])} | {fmt(value['auc_within_problem'])} | "
                     f"{value['n_programs']} |")
    if data_zero_std:
        shares = data_zero_std["shares"]
        by_prefix = ", ".join(f"{count}: {value['zero_std']:.2f} ({value['groups']})"
                              for count, value in shares["rest"]["by_prefix_lines"].items())
        lines += ["", "Zero-std groups on fresh base-policy samples of each data set's prompts: naive "
                  f"{shares['naive']['zero_std']:.3f} ({shares['naive']['groups']} groups), ReST "
                  f"{shares['rest']['zero_std']:.3f} ({shares['rest']['groups']}); ReST by lines of the best program "
                  f"in the prompt: {by_prefix}"]
    lines += ["", "Zero-std GRPO groups (mean over steps): " + ", ".join(
        f"{POLICY_ROWS[label]} {sum(history) / len(history):.3f}" for label, history in zero_std.items() if history),
        f"Stages: {figures['elapsed_s'] / 60:.1f} minutes on this machine (the tiny policy's training and "
        "installation not counted)."]
    return "\n".join(lines)


def finished(work: str, path: str) -> bool:
    return os.path.exists(os.path.join(work, path))


def write_outputs(work: str, config: dict, policies: dict, models: dict, results: dict, curves: dict,
                  elapsed, seconds: dict, zero_std_path: str | None = None) -> dict:
    """Everything the table needs, then the files; `elapsed` (seconds, or a function giving them) is read last,
    then `seconds` (each step's seconds, or a function giving them).
    Rows whose stage has not finished (`--table_only` on an interrupted run) are left out and listed as missing."""
    seed = config["seed"]
    missing = sorted(label for label, path in results.items() if not finished(work, path))
    results = {label: path for label, path in results.items() if finished(work, path)}
    rows = {label: summary(work, path) for label, path in results.items()}
    decoding = config["decoding"]
    compared = comparisons(work, results, comparison_specs(decoding["budgets"], decoding["rest_rl_budget"]), seed)
    training = {label: training_curves(work, policies[label]) for label in ("naive_grpo", "naive_dapo",
                                                                          "rest_round1", "rest_round2")
                if finished(work, os.path.join(policies[label], "trainer_state.json"))}
    zero_std = {label: logs["frac_reward_zero_std"] for label, logs in training.items()}
    data_zero_std = None
    if zero_std_path and finished(work, zero_std_path):
        data_zero_std = zero_std_data(os.path.join(work, zero_std_path), seed)
        compared.update(data_zero_std.pop("comparisons"))
    if "naive_grpo" in zero_std and "rest_round1" in zero_std:
        compared["zero_std_training_naive_minus_rest"] = zero_std_comparison(zero_std["naive_grpo"],
                                                                             zero_std["rest_round1"], seed)
    ready = {label: path for label, path in models.items() if finished(work, os.path.join(path, "best"))}
    aucs = ranker_aucs(work, ready, results["base"]) if "base" in results else {}
    curves = {label: {step: path for step, path in points.items() if finished(work, path)}
              for label, points in curves.items() if label in results}
    curve = curve_points(work, config, results, curves) if "base" in results else {}
    seconds_so_far = elapsed() if callable(elapsed) else elapsed
    seconds = seconds() if callable(seconds) else seconds  # read after elapsed(), which records this run's
    figures = {"elapsed_s": round(seconds_so_far, 1), "comparisons": compared, "rows": rows, "ranker_auc": aucs,
               "efficiency_curve": curve, "zero_std_per_step": zero_std, "zero_std_data": data_zero_std,
               "training": training,
               "step_seconds": seconds, "missing": missing, "config": config}
    text = markdown(rows, compared, aucs, zero_std, figures, data_zero_std)
    if missing:
        text += "\nNot finished, left out: " + ", ".join(missing) + "."
    with open(os.path.join(work, "table.md"), "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    write_json(os.path.join(work, "table.json"), figures)
    plots(work, config, rows, curve, zero_std)
    print("\n" + text)
    print(f"\nwritten: {work}/table.md, table.json, efficiency.png, budget.png, zero_std.png, commands.sh")
    return figures
