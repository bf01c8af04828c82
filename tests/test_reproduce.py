"""experiment.reproduce: the step scheduler and the table's comparisons (the stages themselves have their own
smoke tests; `make demo` runs the whole protocol)."""
import doctest
import json
import os

import pytest

from experiment.reproduce_table import comparison_specs, zero_std_comparison
from experiment.runner import Runner, Step

REQUIRED = {"grpo_vs_base", "rest_vs_naive", "rest_round2_vs_round1", "rest_rl_vs_vm_mcts@8",
            "rest_alpha_matched_vs_naive", "rest_alpha_matched_vs_rest",
            *(f"vm_mcts_vs_{other}@{budget}" for other in ("orm_bon", "vm_bon", "orm_mcts") for budget in (8, 16, 32))}
# table.json's keys: protocol v1's and those protocol v2 adds
TABLE_KEYS = {"elapsed_s", "comparisons", "rows", "ranker_auc", "efficiency_curve", "zero_std_per_step",
              "zero_std_data", "training", "step_seconds", "missing", "config", "seeds", "alpha_rule", "ranker_gate",
              "symbol_bonus_shares", "training_data", "value_targets", "runtime_estimate"}


def append(name: str, path: str) -> list[str]:
    """A step command that appends its name to a file after a short wait (so that order is observable)."""
    return ["python", "-c", f"import time; time.sleep(0.3); open({path!r}, 'a').write({name!r} + '\\n')"]


def test_steps_run_after_their_dependencies_two_at_a_time(tmp_path):
    order = str(tmp_path / "order.txt")
    (tmp_path / "kept").write_text("")
    steps = [Step("c", "third", append("c", order), after=("a", "b")),
             Step("a", "first", append("a", order)),
             Step("b", "second", append("b", order)),
             Step("skipped", "already done", append("skipped", order), done="kept"),
             Step("d", "after the skipped one", append("d", order), after=("skipped",))]
    runner = Runner(str(tmp_path), threads=1, parallel=2)
    runner.run(steps)
    lines = open(order).read().split()
    assert sorted(lines) == ["a", "b", "c", "d"] and lines.index("c") > max(lines.index("a"), lines.index("b"))
    assert set(runner.seconds) == {"a", "b", "c", "d"}
    commands = (tmp_path / "commands.sh").read_text()
    assert commands.count("\n# ") + commands.startswith("# ") == 4 and "skipped" not in commands.split("# third")[0]
    assert os.path.exists(tmp_path / "logs" / "a.log")


def test_a_failing_step_stops_the_run_and_names_its_log(tmp_path):
    steps = [Step("bad", "fails", ["python", "-c", "import sys; print('boom'); sys.exit(3)"]),
             Step("later", "never runs", ["python", "-c", "open('later', 'w')"], after=("bad",))]
    with pytest.raises(SystemExit, match=r"step bad \(fails\) failed with exit 3; its log is .*logs/bad.log"):
        Runner(str(tmp_path), threads=1, parallel=2).run(steps)
    assert "boom" in (tmp_path / "logs" / "bad.log").read_text() and not (tmp_path / "later").exists()


def test_doctests():
    from experiment import reproduce, reproduce_table

    assert doctest.testmod(reproduce).failed == 0 and doctest.testmod(reproduce_table).failed == 0


def test_the_table_holds_every_comparison_the_issue_names():
    assert REQUIRED <= set(comparison_specs([8, 16, 32], 8))


def test_zero_std_difference_is_paired_by_step():
    naive, rest = [0.75, 0.5, 0.75, 0.625] * 10, [0.5, 0.25, 0.5, 0.375] * 10
    result = zero_std_comparison([naive], [rest], seed=0)
    assert result["difference"] == pytest.approx(0.25) and result["ci95"] == [0.25, 0.25]
    assert result["resolved"] and result["n_problems"] == 40 and json.dumps(result)
    seeds = zero_std_comparison([naive, rest[:30]], [rest, rest], seed=0)  # two seeds of naive, one shorter
    assert seeds["n_problems"] == 30 and seeds["n_seeds"] == [2, 2] and seeds["difference"] == pytest.approx(0.125)


def test_the_demo_config_is_the_reproduce_config_with_smaller_sizes():
    from experiment.reproduce import REPO, load_config

    full, demo = (load_config(os.path.join(REPO, "config", name)) for name in ("reproduce.json", "demo.json"))
    assert "base" not in demo and demo.keys() == full.keys()
    assert all(demo[key].keys() == full[key].keys() for key in full if isinstance(full[key], dict))
    assert demo["grpo"]["lr"] == full["grpo"]["lr"] and demo["rest"] == full["rest"]
    assert demo["rl_problems"] < full["rl_problems"] and demo["grpo"]["max_steps"] < full["grpo"]["max_steps"]
    assert len(full["train_seeds"]) >= 3 and len(demo["train_seeds"]) >= 2  # the demo may take fewer seeds
    assert demo["rest_alpha_rule"] == full["rest_alpha_rule"] and demo["ranker_gate"] == full["ranker_gate"]
    for config in (full, demo):
        decoding = config["decoding"]
        assert decoding["budgets"] == [8, 16, 32] and decoding["num_sample"] > decoding["num_decision"]
        assert all(budget % decoding["num_sample"] == 0 for budget in decoding["budgets"])


def test_step_seconds_survive_a_table_only_rebuild(tmp_path):
    from experiment.runner import stage_time, step_seconds

    runner = Runner(str(tmp_path), threads=1, parallel=2)
    runner.run([Step("a", "first", ["python", "-c", "pass"])])
    assert stage_time(str(tmp_path), runner) > 0
    rebuild = Runner(str(tmp_path), threads=1, parallel=2)  # --table_only: runs nothing, records nothing
    stage_time(str(tmp_path), rebuild, record=False)
    assert set(step_seconds(str(tmp_path))) == {"a"}


def test_the_policys_training_is_not_counted_in_the_stages_time(tmp_path, monkeypatch):
    """A run that trains the tiny policy first reports the stages' time only (its `elapsed_s`)."""
    import time

    from experiment import runner as runner_module

    policy = tmp_path / "policy"

    def train(argv, **kwargs):  # the training command's place: it takes time and writes the policy
        time.sleep(1.0)
        policy.mkdir()
        (policy / "config.json").write_text("{}")

    monkeypatch.setattr(runner_module.subprocess, "run", train)
    work = tmp_path / "work"
    runner = Runner(str(work), threads=1, parallel=1)
    runner_module.prepare_policy({"policy": str(policy)}, runner)
    assert (policy / "config.json").exists()
    assert runner.elapsed() < 0.5
    runner_module.prepare_policy({"policy": str(policy)}, runner)  # trained already: nothing to subtract
    assert runner.elapsed() < 0.5


def protocol_steps(name: str = "reproduce.json", alpha: float | None = 0.49):
    from experiment.reproduce import REPO, Protocol, load_config, problems_step

    protocol = Protocol(load_config(os.path.join(REPO, "config", name)), alpha)
    return protocol, [problems_step(protocol.config)] + protocol.steps()


def option(step: Step, flag: str) -> str:
    return step.argv[step.argv.index(flag) + 1]


def test_every_step_waits_only_on_steps_of_the_protocol():
    _, steps = protocol_steps()
    names = [step.name for step in steps]
    assert len(set(names)) == len(names) and {name for step in steps for name in step.after} <= set(names)


def test_every_seeded_arm_trains_once_per_seed_the_same_steps_after_a_check_of_its_data():
    protocol, steps = protocol_steps()
    seeds = protocol.config["train_seeds"]
    trainings = {step.name: step for step in steps if step.argv[1].endswith("train_grpo.py")}
    for arm in ("naive_grpo", "rest_round1", "rest_round2", "rest_alpha_matched"):
        runs = [trainings[f"{arm}_s{seed}"] for seed in seeds]
        assert [option(run, "--seed") for run in runs] == [str(seed) for seed in seeds]
        assert len({run.argv[3] for run in runs}) == len(seeds)  # each seed its own save dir
        assert protocol.seeds[arm] == seeds and len(protocol.results[arm]) == len(seeds)
    assert {option(run, "--max_steps") for run in trainings.values()} == {str(protocol.config["grpo"]["max_steps"])}
    assert all(run.after[0].startswith("steps_") for run in trainings.values())
    for seed in seeds:  # round 2 of seed s starts from round 1 of seed s, on data its own samples made
        round2 = trainings[f"rest_round2_s{seed}"]
        assert round2.argv[2] == trainings[f"rest_round1_s{seed}"].argv[3] and f"seed_{seed}" in round2.argv[4]
    assert option(trainings["rest_alpha_matched_s0"], "--seed") == "0" and "_0.49.jsonl" in \
        trainings["rest_alpha_matched_s0"].argv[4]
    assert len(protocol.results["rest_rl@8"]) == len(seeds) and len(protocol.results["naive_dapo"]) == 1


def test_the_value_model_sees_the_orms_problems_and_decoding_prunes():
    protocol, steps = protocol_steps()
    by_name = {step.name: step for step in steps}
    assert option(by_name["mcts_traces"], "--idx_list") == option(by_name["sample_base"], "--idx_list")
    assert int(option(by_name["mcts_traces"], "--iteration_limit")) >= 16
    search = by_name["eval_vm_mcts_at_32"]
    assert int(option(search, "--num_sample")) > int(option(search, "--num_decision"))
    assert int(option(search, "--iteration_limit")) * int(option(search, "--num_sample")) == 32


def test_the_table_of_an_empty_working_directory_lists_what_is_missing(tmp_path):
    from experiment.reproduce import REPO, main

    assert main(["--config", os.path.join(REPO, "config", "demo.json"), "--table_only", "--work", str(tmp_path)]) == 0
    table = json.loads((tmp_path / "table.json").read_text())
    assert TABLE_KEYS <= set(table) and table["alpha_rule"] is None and table["rows"] == {}
    assert table["ranker_gate"]["verdict"] == "not measured"
    assert {"base", "rest_alpha_matched seed 0", "rest_round2 seed 1", "rest_rl@8 seed 1"} <= set(table["missing"])


def write_evaluation(directory, name: str, scores: list[float]) -> str:
    """A results file and its verified file: problem i passes with probability scores[i] (4 samples)."""
    verified = [{"id": f"TinyCode/test/{i}", "rewards": [1.0] * int(4 * p) + [0.0] * (4 - int(4 * p))}
                for i, p in enumerate(scores)]
    (directory / f"{name}_verified.jsonl").write_text("".join(json.dumps(record) + "\n" for record in verified))
    results = {"n_problems": len(scores), "strict_acc": sum(scores) / len(scores), "strict_acc_ci95": [0.0, 1.0],
               "average_acc": 0.5, "samples_per_problem": 4.0, "tokens_per_problem": 100.0}
    (directory / f"{name}_results.jsonl").write_text(json.dumps(results) + "\n")
    return f"{name}_results.jsonl"


def test_rows_and_comparisons_resample_the_seeds_of_each_arm(tmp_path):
    from experiment.reproduce_table import comparisons, row_summary

    base = [0.25, 0.5, 0.0, 1.0] * 10
    seeds = [[min(1.0, p + 0.25 * (seed != 1)) for p in base] for seed in range(3)]  # seed 1 learnt nothing
    results = {"base": [write_evaluation(tmp_path, "base", base)],
               "naive_grpo": [write_evaluation(tmp_path, f"naive_{seed}", seeds[seed]) for seed in range(3)]}
    row = row_summary(str(tmp_path), results["naive_grpo"], seed=0)
    assert row["per_seed"] == [0.625, 0.4375, 0.625] and row["strict_acc"] == pytest.approx(0.5625)
    assert row["strict_acc_ci95"][0] < row["strict_acc"] < row["strict_acc_ci95"][1]
    compared = comparisons(str(tmp_path), results, {"grpo_vs_base": ("naive_grpo", "base")}, seed=0)["grpo_vs_base"]
    assert compared["n_seeds"] == [3, 1] and compared["difference"] == pytest.approx(0.125)
    assert compared["ci95"][0] < compared["difference"] < compared["ci95"][1]
