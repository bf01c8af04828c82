"""VinePPO's miniature: the configs parse into a protocol whose arms differ only in their advantage, the
table builder on synthetic logs and scores, GRPO records from a problem file, and (slow) the whole
miniature end to end on CPU with a tiny untrained policy."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

from experiment.reproduce import load_config
from experiment.reproduce_vineppo import VineProtocol, checkpoint_iterations, iteration_steps
from experiment.reproduce_vineppo_table import build_table, iteration_costs, markdown


@pytest.mark.parametrize("name", ["vineppo.json", "vineppo_demo.json"])
def test_configs_build_a_protocol_whose_arms_differ_only_in_the_advantage(name):
    config = load_config(str(REPO / "config" / name))
    assert config["experiment"] == "vineppo" and len(config["train_seeds"]) >= 2
    assert set(config["arms"]) == {"vineppo_k4", "vineppo_k8", "grpo", "ppo_critic"}
    assert all(set(arm) <= {"advantage", "mc_rollouts"} for arm in config["arms"].values())
    steps, results, _ = VineProtocol(config).steps()
    names = [step.name for step in steps]
    assert len(names) == len(set(names))
    per_iteration = iteration_steps(config["training"])
    last = config["training"]["iterations"] * per_iteration
    # every arm sees the same episodes per iteration: past its own flags, one seed's commands are identical
    rests = {}
    for arm in config["arms"]:
        arm_flags = [part for name, value in config["arms"][arm].items() for part in (f"--{name}", str(value))]
        for seed in config["train_seeds"]:
            argv = next(step.argv for step in steps if step.name == f"train_{arm}_seed{seed}")
            assert argv[5:5 + len(arm_flags)] == arm_flags and argv[argv.index("--max_steps") + 1] == str(last)
            rests.setdefault(seed, set()).add(tuple(argv[5 + len(arm_flags):]).__repr__().replace(arm, "ARM"))
    assert all(len(commands) == 1 for commands in rests.values())
    iterations = checkpoint_iterations(config)
    assert all(sorted(by_seed[config["train_seeds"][0]]) == iterations for by_seed in results.values())
    checkpoint = results["grpo"][config["train_seeds"][0]][iterations[-1]]
    assert f"checkpoint-{last}" in checkpoint


def test_iteration_arithmetic_refuses_sizes_that_do_not_divide():
    assert iteration_steps({"prompts_per_iteration": 16, "num_generations": 4, "mini_batch_size": 32,
                            "num_iterations": 2}) == 4
    with pytest.raises(ValueError):
        iteration_steps({"prompts_per_iteration": 3, "num_generations": 4, "mini_batch_size": 8, "num_iterations": 1})
    with pytest.raises(ValueError):
        checkpoint_iterations({"training": {"iterations": 5, "save_every": 2}})


def history(seconds: float, rollout_tokens: float | None) -> list[dict]:
    """Two iterations of two optimizer steps each, as TRL logs them with logging_steps 1."""
    entries = []
    for step in (1, 3):
        first = {"step": step, "step_time": seconds, "completions/mean_length": 10.0}
        if rollout_tokens is not None:
            first |= {"vine/rollout_tokens": rollout_tokens, "vine/rollout_seconds": seconds / 2}
        entries += [first, {"step": step + 1, "step_time": 1.0}]
    return entries + [{"step": 4, "train_runtime": 9.0}]


def test_iteration_costs_from_per_step_logs():
    costs = iteration_costs(history(3.0, 200.0), episodes=8)
    assert costs == {"iterations": 2, "seconds": 4.0, "episode_tokens": 80.0, "rollout_tokens": 200.0,
                     "rollout_seconds": 1.5, "generated_tokens": 280.0}
    assert iteration_costs([], episodes=8) == {}


def test_table_on_synthetic_scores_and_logs():
    config = load_config(str(REPO / "config" / "vineppo_demo.json"))
    base = [[0.0, 1.0, 0.0, 0.0]] * 2
    scores = {"grpo": {0: base, 1: [[0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]], 2: [[1.0, 1.0, 0.0, 0.0]] * 2},
              "vineppo_k4": {0: base, 1: [[1.0, 1.0, 1.0, 0.0]] * 2, 2: [[1.0, 1.0, 1.0, 1.0]] * 2},
              "vineppo_k8": {0: base, 1: base, 2: base}, "ppo_critic": {0: base}}
    histories = {"grpo": [history(2.0, None)] * 2, "vineppo_k4": [history(4.0, 100.0)] * 2,
                 "vineppo_k8": [history(6.0, 200.0), []]}
    values = {"states": 3, "problems": 1, "reference_rollouts": 16, "reference_mean": 0.5,
              "estimators": {"MC(K=4)": {"rmse": 0.1, "mean_abs": 0.05, "n_states": 3,
                                         "abs_error_minus_critic": {"difference": -0.2, "ci95": [-0.3, -0.1]}},
                             "critic": {"rmse": 0.3, "mean_abs": 0.25, "n_states": 3}}}
    table = build_table(config, scores, histories, values, elapsed_s=12.0)
    assert table["accuracy"]["grpo"] == {"0": 0.25, "1": 0.375, "2": 0.5}
    assert table["reach"]["target_accuracy"] == 0.5
    assert table["reach"]["arms"]["vineppo_k4"] == {"iterations": 1, "seconds": 5.0}  # 0.75 at iteration 1
    reach = table["reach"]["arms"]
    assert reach["grpo"]["iterations"] == 2 and reach["vineppo_k8"]["iterations"] is None
    assert table["costs_per_iteration"]["vineppo_k8"]["generated_tokens"] == 16 * 10.0 + 200.0  # the empty seed skipped
    assert table["costs_per_iteration"]["ppo_critic"] == {}
    k4 = table["comparisons"]["vineppo_k4 - grpo"]
    assert set(k4) == {"1", "2"} and k4["2"]["difference"] == 0.5 and k4["2"]["n_seeds"] == [2, 2]
    assert table["comparisons"]["vineppo_k4 - ppo_critic"] == {}  # the critic arm has no checkpoint scored yet
    text = markdown(table)
    assert "| vineppo_k4 | 0.250 | 0.750 | 1.000 |" in text and "| MC(K=4) | 0.100 | 0.050 | -0.200" in text


def test_grpo_records_from_a_problem_file(tmp_path):
    from models.tiny import build_tokenizer

    data = tmp_path / "data" / "TinyMath"
    done = subprocess.run([sys.executable, "-m", "data.tinymath", "--seed", "0", "--n_train", "6", "--n_test", "2",
                           "--directory", str(data)], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    tokenizer = build_tokenizer(["Question: 1 + 2 = 3\n#### 3"], vocab_size=300)
    tokenizer.save_pretrained(tmp_path / "policy")
    from experiment.grpo_prompts import main

    output = tmp_path / "grpo.jsonl"
    assert main(["--domain", "TinyMath", "--directory", str(data), "--file", "train.jsonl", "--idx_list", "0,2",
                 "--backend", str(tmp_path / "policy"), "--output", str(output)]) == 0
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [record["id"] for record in records] == ["TinyMath/train/0", "TinyMath/train/2"]
    assert all(set(record) == {"prompt", "init_state", "partial_state", "domain", "test", "id"} for record in records)
    assert "answer" in json.loads(records[0]["test"]) and "Question:" in records[0]["prompt"]
    sft = tmp_path / "sft.jsonl"
    assert main(["--domain", "TinyMath", "--directory", str(data), "--file", "train.jsonl", "--idx_list", "1",
                 "--backend", str(tmp_path / "policy"), "--mode", "sft", "--output", str(sft)]) == 0
    record, = [json.loads(line) for line in sft.read_text().splitlines()]
    assert set(record) == {"prompt", "completion"} and "\n#### " in record["completion"]


@pytest.mark.slow
def test_miniature_end_to_end_on_cpu(tmp_path):
    """Three arms (MC values K = 2, the critic, GRPO), one seed, one iteration, on a tiny untrained policy:
    every stage runs and the table has every section (the numbers mean nothing at this size)."""
    from rest_data import save_tiny_policy

    from data.tinymath import generate

    train, _ = generate(0, 8, 2)
    problems = [type("P", (), {"prompt": r["question"], "meta": {"solution": r["answer"]}}) for r in train]
    policy = save_tiny_policy(problems, tmp_path / "policy", hidden_size=32, layers=1)
    config = load_config(str(REPO / "config" / "vineppo_demo.json"))
    config |= {"policy": str(policy), "work": str(tmp_path / "work"), "problems": {"n_train": 8, "n_test": 2},
               "rl_problems": 4, "train_seeds": [0], "comparisons": [["vineppo_k2", "grpo"]],
               "arms": {"vineppo_k2": {"advantage": "vine", "mc_rollouts": 2}, "grpo": {"advantage": "grpo"},
                        "ppo_critic": {"advantage": "critic"}}}
    config["training"] |= {"iterations": 1, "prompts_per_iteration": 2, "num_generations": 2, "mini_batch_size": 4,
                           "batch_size_per_device": 4, "max_completion_length": 24}
    config["eval"] |= {"problems": 2, "max_tokens": 24}
    config["value_error"] |= {"problems": 1, "reference_rollouts": 4, "mc_rollouts": [2]}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    done = subprocess.run([sys.executable, "-m", "experiment.reproduce", "--config", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = json.loads((tmp_path / "work" / "table.json").read_text())
    assert set(table["accuracy"]) == {"vineppo_k2", "grpo", "ppo_critic"} and "1" in table["accuracy"]["grpo"]
    assert table["costs_per_iteration"]["vineppo_k2"]["rollout_tokens"] > 0
    assert set(table["value_errors"]["estimators"]) >= {"MC(K=2)", "critic"}
    assert "1" in table["comparisons"]["vineppo_k2 - grpo"]


def test_no_target_when_the_reference_never_beats_the_start():
    config = load_config(str(REPO / "config" / "vineppo_demo.json"))
    flat = {0: [[1.0, 0.0]], 1: [[1.0, 0.0]]}
    table = build_table(config, {"grpo": flat, "vineppo_k4": {0: [[1.0, 0.0]], 1: [[1.0, 1.0]]}}, {}, None, 1.0)
    assert table["reach"]["target_accuracy"] is None and table["reach"]["arms"]["vineppo_k4"]["iterations"] is None
    assert "never beat the start" in markdown(table)
