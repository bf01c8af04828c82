"""The table of ReST-MCTS*'s miniature (experiment/reproduce_rest_mcts.py): the policies of each round and of
ReST-EM with the tokens spent on their data, the decoders at their token budgets, and each round's value model
ranking the base policy's test samples; every comparison a paired difference over the same problems
(evaluation.compare)."""
from __future__ import annotations

import os
from dataclasses import asdict

from data.jsonl import read_jsonl, read_unique, write_json
from evaluation.compare import compare_files, paired_bootstrap, verified_path
from experiment.reproduce_table import judged_programs, mean_within, ranker_auc


def generated_tokens(path: str) -> tuple[int, int, int]:
    """(completion tokens, records, samples) of a completions file or a search trace (both keep token_usage)."""
    tokens = records = samples = 0
    for _, record in read_unique(path):
        tokens += record["token_usage"]["completion"]
        records += 1
        samples += record.get("samples") or len((record.get("result") or {}).get("completions") or [])
    return tokens, records, samples


def matched_sc(star_tokens: float, sc_tokens: dict[int, float]) -> int:
    """The SC sample count a search row is compared with: the smallest whose generated tokens per task are at
    least the search's, else the largest.

    >>> matched_sc(130.0, {1: 40.0, 2: 80.0, 4: 160.0, 8: 320.0}), matched_sc(900.0, {1: 40.0, 2: 80.0})
    (4, 2)
    """
    enough = [count for count, tokens in sorted(sc_tokens.items()) if tokens >= star_tokens]
    return enough[0] if enough else max(sc_tokens)


POLICY_COMPARISONS = (("round1", "base"), ("round2", "round1"), ("round2", "base"), ("round1", "rest_em"),
                      ("round2", "rest_em"), ("rest_em", "base"))


def summary(work: str, path: str) -> dict | None:
    full = os.path.join(work, path)
    if not os.path.exists(full):
        return None
    record = next(record for _, record in read_jsonl(full))
    return {key: record.get(key) for key in ("n_problems", "strict_acc", "strict_acc_ci95", "samples_per_problem",
                                             "completion_tokens_per_problem", "tokens_per_problem")}


def compare(work: str, results: dict, a: str, b: str, seed: int) -> dict | None:
    paths = [os.path.join(work, results.get(key, "")) for key in (a, b)]
    if not all(key in results for key in (a, b)) or not all(os.path.exists(path) for path in paths):
        return None
    return {**asdict(compare_files([paths[0]], [paths[1]], seed=seed)), "a": a, "b": b}


def decoder_comparisons(work: str, config: dict, results: dict, rows: dict) -> dict:
    """Each MCTS* row against majority and weighted SC at the matched sample count, and weighted against
    majority SC at every count."""
    decoding, seed = config["decoding"], config["seed"]
    out = {}
    for count in decoding["sc_samples"]:
        found = compare(work, results, f"sc_weighted@{count}", f"sc_majority@{count}", seed)
        if found:
            out[f"sc_weighted@{count} - sc_majority@{count}"] = found
    sc_tokens = {count: rows[f"sc_majority@{count}"]["completion_tokens_per_problem"]
                 for count in decoding["sc_samples"] if rows.get(f"sc_majority@{count}")}
    for iterations in decoding["star_iterations"]:
        star = f"mcts_star@{iterations}"
        if not rows.get(star) or not sc_tokens:
            continue
        count = matched_sc(rows[star]["completion_tokens_per_problem"], sc_tokens)
        for vote in ("majority", "weighted"):
            found = compare(work, results, star, f"sc_{vote}@{count}", seed)
            if found:
                out[f"{star} - sc_{vote}@{count}"] = {**found, "matched_samples": count}
    return out


def value_aucs(work: str, value_models: dict[str, str], samples_results: str, data_dir: str, seed: int) -> dict:
    """Each round's value model ranking the base policy's samples of the test tasks (complete solutions, correct
    against wrong): AUC over all of them and averaged within problems, with a bootstrap interval over problems,
    and each round against the one before (paired by problem)."""
    from data.registry import get_benchmark
    from rms.value_models import load_value_model

    completions = samples_results[: -len("_results.jsonl")] + "_completions.jsonl"
    if not (os.path.exists(os.path.join(work, completions)) and
            os.path.exists(os.path.join(work, verified_path(samples_results)))):
        return {}
    judged = judged_programs(work, samples_results)
    prompts = {problem.id: problem.prompt for problem in get_benchmark("TinyMath").load(data_dir, "test.jsonl")}
    out, per_problem = {}, {}
    for label, path in value_models.items():
        if not os.path.exists(os.path.join(path, "best")):
            continue
        found = ranker_auc(load_value_model(os.path.join(path, "best")).score, prompts, judged)
        within = per_problem[label] = found["within"]
        ids = sorted(within)
        interval = paired_bootstrap([[within[i] for i in ids]], [[0.0] * len(ids)], seed) if ids else None
        out[label] = {"auc": found["auc"], "auc_within_problem": mean_within(within),
                      "ci95": interval.ci95 if interval else None, "n_items": found["n_programs"],
                      "n_problems_both_classes": len(within)}
    labels = list(per_problem)
    for before, after in zip(labels, labels[1:]):
        ids = sorted(set(per_problem[before]) & set(per_problem[after]))
        if ids:
            result = paired_bootstrap([[per_problem[after][i] for i in ids]], [[per_problem[before][i] for i in ids]],
                                      seed)
            out[f"{after} - {before}"] = asdict(result)
    return out


def data_costs(work: str, protocol, plan: dict | None) -> dict:
    """Generated tokens and training records behind each trained policy."""
    costs = {}
    for index in (1, 2):
        path = os.path.join(work, protocol.round_file(index))
        if os.path.exists(path):
            round_summary = protocol.read_round(index)
            tokens, problems, samples = generated_tokens(round_summary["trace"])
            costs[f"round{index}"] = {"generated_tokens": tokens, "problems": problems, "samples": samples,
                                      "sft_records": round_summary.get("policy_records"),
                                      "value_records": round_summary.get("value_records"),
                                      "policy_trained": round_summary.get("policy_trained")}
    if plan:
        em_dir = os.path.join(work, protocol.em_dir)
        found = [os.path.join(root, name) for root, _, names in os.walk(os.path.join(em_dir, "generate"))
                 for name in names if name.endswith("_completions.jsonl")]
        data = [os.path.join(root, name) for root, _, names in os.walk(os.path.join(em_dir, "generate"))
                for name in names if name.endswith("_sft_data.jsonl")]
        if found:
            tokens, problems, samples = generated_tokens(found[0])
            costs["rest_em"] = {"generated_tokens": tokens, "problems": problems, "samples": samples,
                                "samples_per_problem": plan["n"],
                                "sft_records": sum(1 for _ in read_jsonl(data[0])) if data else None}
    return costs


def _cell(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _difference(row: dict) -> str:
    low, high = row["ci95"]
    return f"{row['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"


def _comparison_lines(comparisons: dict) -> list[str]:
    lines = ["", "| comparison | difference [95% interval] | resolved |", "|---|---|---|"]
    return lines + [f"| {name} | {_difference(row)} | {'yes' if row['resolved'] else 'no'} |"
                    for name, row in comparisons.items()]


def markdown(table: dict) -> str:
    settings = table["settings"]
    lines = [f"# ReST-MCTS* in miniature (TinyMath; {settings['eval']['problems']} test tasks; training pool: train "
             f"{settings['train_problems'][0]}-{settings['train_problems'][1] - 1}; {table['elapsed_s']:.0f} s)", "",
             "## Policies (greedy pass@1) and the data behind them", "",
             "| policy | pass@1 | 95% interval | data: generated tokens | SFT records |", "|---|---|---|---|---|"]
    for label, row in table["policies"].items():
        cost = table["data_costs"].get(label, {})
        ci = row["strict_acc_ci95"] if row else None
        lines.append(f"| {label} | {_cell(row and row['strict_acc'])} | "
                     f"{'-' if not ci else f'[{ci[0]:.3f}, {ci[1]:.3f}]'} | {_cell(cost.get('generated_tokens'))} | "
                     f"{_cell(cost.get('sft_records'))} |")
    lines += _comparison_lines(table["policy_comparisons"])
    lines += ["", "## Decoders with round 2's policy and value model", "",
              "| decoder | pass@1 | generated tokens per task | samples per task |", "|---|---|---|---|"]
    for label, row in table["decoders"].items():
        if row:
            lines.append(f"| {label} | {_cell(row['strict_acc'])} | {_cell(row['completion_tokens_per_problem'], 0)} | "
                         f"{_cell(row['samples_per_problem'], 1)} |")
    lines += _comparison_lines(table["decoder_comparisons"])
    lines += ["", "## Value models: ranking the base policy's test samples (correct against wrong)", "",
              "| value model | AUC | within-problem AUC [95% interval] | problems with both |", "|---|---|---|---|"]
    for label, row in table["value_aucs"].items():
        if "auc" in row:
            ci = row["ci95"]
            lines.append(f"| {label} | {_cell(row['auc'])} | {_cell(row['auc_within_problem'])} "
                         f"{'' if not ci else f'[{ci[0]:.3f}, {ci[1]:.3f}]'} | {row['n_problems_both_classes']} |")
    for label, row in table["value_aucs"].items():
        if "difference" in row:
            lines.append(f"\nwithin-problem AUC, {label}: {_difference(row)}")
    return "\n".join(lines) + "\n"


def write_outputs(work: str, config: dict, protocol, results: dict, plan: dict | None, elapsed_s: float) -> dict:
    """table.json and table.md in `work` from what has finished."""
    seed = config["seed"]
    policies = {"base": "base", "round1": "round1", "round2": "round2", "rest_em": "rest_em"}
    table = {"policies": {label: summary(work, results[key]) if key in results else None
                          for label, key in policies.items()},
             "policy_comparisons": {f"{a} - {b}": found for a, b in POLICY_COMPARISONS
                                    if (found := compare(work, results, a, b, seed))}}
    decoders = {label: summary(work, path) for label, path in results.items()
                if label.startswith(("sc_", "mcts_star"))}
    table["decoders"] = decoders
    table["decoder_comparisons"] = decoder_comparisons(work, config, results, decoders)
    models = {}
    for index in (0, 1, 2):
        if os.path.exists(os.path.join(work, protocol.round_file(index))):
            models[f"round{index}"] = protocol.read_round(index)["value_model"]
    table["value_aucs"] = value_aucs(work, models, results["samples"], protocol.data_dir, seed) \
        if "samples" in results else {}
    table["data_costs"] = data_costs(work, protocol, plan)
    table["rest_em_rule"] = plan
    table["elapsed_s"] = round(elapsed_s, 1)
    table["settings"] = {key: config[key] for key in config if key not in ("experiment", "work")}
    write_json(os.path.join(work, "table.json"), table)
    text = markdown(table)
    with open(os.path.join(work, "table.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
    print(text)
    return table
