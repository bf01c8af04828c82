"""The table of VinePPO's miniature (experiment/reproduce_vineppo.py): test accuracy against iteration per arm,
every comparison a paired difference over the same problems with training seeds resampled (evaluation.compare),
the iterations each arm needs to reach GRPO's best accuracy, generated tokens and seconds per iteration from the
trainings' per-iteration logs, and the value errors of experiment.value_error."""
from __future__ import annotations

import json
import os
from dataclasses import asdict

from data.jsonl import write_json
from evaluation.compare import paired_bootstrap, problem_scores, same_problems


def iteration_costs(history: list[dict], episodes: int) -> dict:
    """Per-iteration means from a trainer's log_history (logging_steps 1): an iteration starts at a step that
    logs `completions/mean_length` (a generation) and owns the steps up to the next one.

    >>> costs = iteration_costs([{"step": 1, "step_time": 3.0, "completions/mean_length": 10.0,
    ...                           "vine/rollout_tokens": 100.0}, {"step": 2, "step_time": 1.0}], episodes=4)
    >>> costs["seconds"], costs["episode_tokens"], costs["rollout_tokens"], costs["generated_tokens"]
    (4.0, 40.0, 100.0, 140.0)
    """
    iterations: list[dict] = []
    for entry in history:
        if "step_time" not in entry:
            continue
        if "completions/mean_length" in entry or not iterations:
            iterations.append({"seconds": 0.0, "episode_tokens": entry.get("completions/mean_length", 0.0) * episodes,
                               "rollout_tokens": entry.get("vine/rollout_tokens", 0.0),
                               "rollout_seconds": entry.get("vine/rollout_seconds", 0.0)})
        iterations[-1]["seconds"] += entry["step_time"]
    if not iterations:
        return {}
    means = {key: sum(item[key] for item in iterations) / len(iterations) for key in iterations[0]}
    means["generated_tokens"] = means["episode_tokens"] + means["rollout_tokens"]
    return {"iterations": len(iterations), **{key: round(value, 3) for key, value in means.items()}}


def read_history(work: str, save_dir: str) -> list[dict]:
    path = os.path.join(work, save_dir, "trainer_state.json")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)["log_history"]


def accuracy_table(scores: dict[str, dict[int, list[list[float]]]]) -> dict[str, dict[int, float]]:
    """{arm: {iteration: mean over seeds and problems}} from {arm: {iteration: [[score per problem] per seed]}}.

    >>> accuracy_table({"a": {0: [[1.0, 0.0]], 2: [[1.0, 1.0], [0.0, 1.0]]}})
    {'a': {0: 0.5, 2: 0.75}}
    """
    return {arm: {iteration: round(sum(map(sum, rows)) / sum(map(len, rows)), 6)
                  for iteration, rows in sorted(curve.items())} for arm, curve in scores.items()}


def iterations_to_reach(curve: dict[int, float], target: float) -> int | None:
    """The first evaluated iteration (after 0) whose accuracy is at least `target`; None if none is.

    >>> iterations_to_reach({0: 0.3, 2: 0.35, 4: 0.5}, 0.4), iterations_to_reach({0: 0.5, 2: 0.3}, 0.4)
    (4, None)
    """
    return next((iteration for iteration, value in sorted(curve.items()) if iteration > 0 and value >= target), None)


def load_scores(work: str, results: dict) -> dict[str, dict[int, list[list[float]]]]:
    """{arm: {iteration: [[per-problem pass@1] per seed]}} over the evaluations that have finished (the seeds
    of an iteration whose evaluation exists, on the same problems), problems in a common order."""
    scores: dict[str, dict[int, list[list[float]]]] = {}
    for arm, by_seed in results.items():
        iterations = sorted({iteration for paths in by_seed.values() for iteration in paths})
        for iteration in iterations:
            files = [os.path.join(work, paths[iteration]) for paths in by_seed.values()]
            files = [path for path in files if os.path.exists(path)]
            if not files:
                continue
            named = {path: problem_scores(path) for path in files}
            ids = same_problems(named)
            scores.setdefault(arm, {})[iteration] = [[named[path][problem] for problem in ids] for path in files]
    return scores


def comparisons(scores: dict, pairs: list[list[str]], seed: int) -> dict[str, dict[int, dict]]:
    """{"A - B": {iteration: paired bootstrap}} at every iteration both arms have finished (after 0)."""
    out: dict[str, dict[int, dict]] = {}
    for a, b in pairs:
        common = sorted(set(scores.get(a, {})) & set(scores.get(b, {})) - {0})
        out[f"{a} - {b}"] = {iteration: asdict(paired_bootstrap(scores[a][iteration], scores[b][iteration], seed))
                             for iteration in common}
    return out


def build_table(config: dict, scores: dict, histories: dict[str, list[list[dict]]], value_errors: dict | None,
                elapsed_s: float) -> dict:
    """Everything table.json holds (histories: {arm: [log_history per seed]})."""
    training = config["training"]
    episodes = training["prompts_per_iteration"] * training["num_generations"]
    accuracy = accuracy_table(scores)
    reference = config.get("reach_reference", "grpo")
    best = max((value for iteration, value in accuracy.get(reference, {}).items() if iteration > 0), default=None)
    if best is not None and best <= accuracy[reference].get(0, -1.0):
        best = None  # the reference never beat the start: reaching its best means nothing
    costs, reach = {}, {}
    for arm in config["arms"]:
        per_seed = [iteration_costs(history, episodes) for history in histories.get(arm, []) if history]
        per_seed = [cost for cost in per_seed if cost]
        costs[arm] = {key: round(sum(cost[key] for cost in per_seed) / len(per_seed), 3)
                      for key in per_seed[0]} if per_seed else {}
        iterations = iterations_to_reach(accuracy.get(arm, {}), best) if best is not None else None
        seconds = iterations * costs[arm]["seconds"] if iterations is not None and costs[arm] else None
        reach[arm] = {"iterations": iterations, "seconds": None if seconds is None else round(seconds, 1)}
    return {"accuracy": {arm: {str(k): v for k, v in curve.items()} for arm, curve in accuracy.items()},
            "seeds": {arm: {str(k): len(rows) for k, rows in curve.items()} for arm, curve in scores.items()},
            "comparisons": {name: {str(k): v for k, v in by_iteration.items()} for name, by_iteration in
                            comparisons(scores, config["comparisons"], config["seed"]).items()},
            "reach": {"reference": reference, "target_accuracy": best, "arms": reach},
            "costs_per_iteration": costs, "value_errors": value_errors, "elapsed_s": round(elapsed_s, 1),
            "settings": {key: config[key] for key in ("arms", "training", "eval", "train_seeds", "rl_problems",
                                                      "value_error")}}


def _number(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(table: dict) -> str:
    accuracy = table["accuracy"]
    iterations = sorted({int(k) for curve in accuracy.values() for k in curve})
    settings = table["settings"]
    lines = [f"# VinePPO in miniature (TinyMath; {settings['eval']['problems']} test problems, pass@1 at temperature "
             f"{settings['eval']['temperature']}, seeds {settings['train_seeds']}; {table['elapsed_s']:.0f} s)", "",
             "## Test accuracy against iteration (mean over training seeds)", "",
             "| arm | " + " | ".join(f"it {i}" for i in iterations) + " |",
             "|---" * (len(iterations) + 1) + "|"]
    seeds, expected = table["seeds"], len(settings["train_seeds"])
    for arm, curve in accuracy.items():
        cells = [_number(curve.get(str(i))) + ("" if seeds[arm].get(str(i), expected) == expected or i == 0 else
                                               f" ({seeds[arm][str(i)]} seed)") for i in iterations]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", "## Paired differences (problems and training seeds resampled; 95% interval)", "",
              "| comparison | iteration | difference | 95% interval | resolved |", "|---|---|---|---|---|"]
    for name, by_iteration in table["comparisons"].items():
        for iteration, result in by_iteration.items():
            low, high = result["ci95"]
            lines.append(f"| {name} | {iteration} | {result['difference']:+.3f} | [{low:+.3f}, {high:+.3f}] | "
                         f"{'yes' if result['resolved'] else 'no'} |")
    reach = table["reach"]
    target = (f"({reach['target_accuracy']:.3f})" if reach["target_accuracy"] is not None else
              "(none: it never beat the start, or has no checkpoint scored)")
    lines += ["", f"## Cost per iteration, and iterations to reach {reach['reference']}'s best accuracy {target}", "",
              "| arm | generated tokens | of them MC rollouts | seconds | rollout seconds | iterations to reach | "
              "seconds to reach |", "|---|---|---|---|---|---|---|"]
    for arm, cost in table["costs_per_iteration"].items():
        arrive = reach["arms"].get(arm, {})
        lines.append(f"| {arm} | {_number(cost.get('generated_tokens'), 0)} | {_number(cost.get('rollout_tokens'), 0)} "
                     f"| {_number(cost.get('seconds'), 1)} | {_number(cost.get('rollout_seconds'), 1)} | "
                     f"{_number(arrive.get('iterations'))} | {_number(arrive.get('seconds'), 0)} |")
    values = table.get("value_errors")
    if values:
        lines += ["", f"## Value errors against a K = {values['reference_rollouts']} estimate ({values['states']} "
                      f"held-out states of {values['problems']} test problems; reference mean "
                      f"{values['reference_mean']:.3f})", "",
                  "| estimator | RMSE | mean abs | abs error - critic's [95% interval] |", "|---|---|---|---|"]
        for name, row in values["estimators"].items():
            gap = row.get("abs_error_minus_critic")
            text = f"{gap['difference']:+.3f} [{gap['ci95'][0]:+.3f}, {gap['ci95'][1]:+.3f}]" if gap else "-"
            lines.append(f"| {name} | {row['rmse']:.3f} | {row['mean_abs']:.3f} | {text} |")
    return "\n".join(lines) + "\n"


def write_outputs(work: str, config: dict, save_dirs: dict[str, list[str]], results: dict, value_report: str,
                  elapsed_s: float) -> dict:
    """table.json and table.md in `work` from what has finished."""
    scores = load_scores(work, results)
    histories = {arm: [read_history(work, save_dir) for save_dir in dirs] for arm, dirs in save_dirs.items()}
    value_path = os.path.join(work, value_report)
    value_errors = None
    if os.path.exists(value_path):
        with open(value_path, encoding="utf-8") as handle:
            value_errors = json.load(handle)
    table = build_table(config, scores, histories, value_errors, elapsed_s)
    write_json(os.path.join(work, "table.json"), table)
    with open(os.path.join(work, "table.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown(table))
    print(markdown(table))
    return table
