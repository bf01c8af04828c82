"""ReST-MCTS*'s miniature: the configs build a protocol whose arms are trained alike, the token rules (ReST-EM's
sample count, the SC row a search is compared with), the table's comparisons on synthetic evaluation files,
and (slow) the demo end to end on CPU with the tiny math policy, then resumed."""
from __future__ import annotations

import doctest
import json
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

from data import tinymath
from data.jsonl import write_jsonl
from experiment import reproduce_rest_mcts, reproduce_rest_mcts_table
from experiment.reproduce import load_config
from experiment.reproduce_rest_mcts import StarProtocol, em_samples, pool_ids
from experiment.reproduce_rest_mcts_table import decoder_comparisons, matched_sc
from experiment.reproduce_table import ranker_auc


def test_doctests():
    assert doctest.testmod(reproduce_rest_mcts).failed == 0
    assert doctest.testmod(reproduce_rest_mcts_table).failed == 0


@pytest.mark.parametrize("name", ["rest_mcts.json", "rest_mcts_demo.json"])
def test_configs_build_phase_a_on_tasks_the_policy_never_saw(name, tmp_path):
    config = load_config(str(REPO / "config" / name))
    assert config["experiment"] == "rest_mcts"
    first, end = config["train_problems"]
    # the tiny policy is trained on the first N_TRAIN train tasks (data.tinymath's default split)
    assert first >= tinymath.N_TRAIN and end <= config["problems"]["n_train"]
    protocol = StarProtocol(config, str(tmp_path))
    steps, results = protocol.phase_a()
    assert [step.name for step in steps] == ["problems", "rounds_1", "eval_base", "samples"]
    rounds = next(step.argv for step in steps if step.name == "rounds_1")
    assert rounds[rounds.index("--idx_list") + 1] == pool_ids(config)
    search = rounds[rounds.index("--search_args") + 1]
    assert f"--iteration_limit {config['search']['iteration_limit']}" in search
    sft = rounds[rounds.index("--sft_args") + 1]
    # ReST-EM trains with exactly the rounds' SFT settings
    em_sft = next(step.argv for step in protocol.em_steps(3) if step.name == "em_sft")
    for key, value in config["sft"].items():
        assert f"--{key} {value}" in sft and em_sft[em_sft.index(f"--{key}") + 1] == str(value)
    em_sample = next(step for step in protocol.em_steps(3) if step.name == "em_sample")
    assert em_sample.cwd == "rest_em" and em_sample.argv[em_sample.argv.index("--n") + 1] == "3"
    assert results["samples"] != results["base"]


def test_token_rules():
    # ReST-EM: the search's tokens per task over tokens per sample, at least one sample
    assert em_samples(50_000, 100, 42.0) == 12 and em_samples(0, 5, 42.0) == 1
    # a search row meets the cheapest SC row that spends at least its tokens (never a cheaper baseline)
    tokens = {1: 40.0, 2: 81.0, 4: 160.0, 8: 330.0}
    assert matched_sc(81.0, tokens) == 2 and matched_sc(82.0, tokens) == 4 and matched_sc(10.0, tokens) == 1
    assert matched_sc(10_000.0, tokens) == 8


def test_within_problem_auc_skips_problems_with_one_class():
    scores = {"a1": 0.9, "a2": 0.2, "a3": 0.1, "b1": 0.5, "b2": 0.5, "c1": 0.7, "c2": 0.3}
    judged = {"a": (["a1", "a2", "a3"], [True, False, False]), "b": (["b1", "b2"], [True, False]),
              "c": (["c1", "c2"], [True, True])}
    found = ranker_auc(lambda prompts, programs: [scores[program.strip()] for program in programs],
                       {"a": "A", "b": "B", "c": "C"}, judged)
    assert found["within"] == {"a": 1.0, "b": 0.5} and found["n_programs"] == 7


def write_eval(work, name: str, passes: list[bool], tokens: float) -> str:
    """A results file and its verified records, as evaluation.eval leaves them."""
    results = f"out/{name}_results.jsonl"
    os.makedirs(work / "out", exist_ok=True)
    write_jsonl(str(work / results), [{"n_problems": len(passes), "strict_acc": sum(passes) / len(passes),
                                       "completion_tokens_per_problem": tokens, "samples_per_problem": 1.0}])
    write_jsonl(str(work / f"out/{name}_verified.jsonl"),
                [{"id": f"T/{index}", "rewards": [1.0 if passed else 0.0]} for index, passed in enumerate(passes)])
    return results


def test_decoder_comparisons_pair_each_search_with_the_matched_sc_rows(tmp_path):
    config = {"seed": 0, "decoding": {"sc_samples": [1, 4], "star_iterations": [2, 8]}}
    n = 40
    results = {"sc_majority@1": write_eval(tmp_path, "m1", [i % 4 == 0 for i in range(n)], 40.0),
               "sc_weighted@1": write_eval(tmp_path, "w1", [i % 4 == 0 for i in range(n)], 40.0),
               "sc_majority@4": write_eval(tmp_path, "m4", [i % 2 == 0 for i in range(n)], 160.0),
               "sc_weighted@4": write_eval(tmp_path, "w4", [i % 3 != 2 for i in range(n)], 160.0),
               "mcts_star@2": write_eval(tmp_path, "s2", [True] * n, 120.0),
               "mcts_star@8": write_eval(tmp_path, "s8", [False] * n, 700.0)}
    rows = {label: reproduce_rest_mcts_table.summary(str(tmp_path), path) for label, path in results.items()}
    out = decoder_comparisons(str(tmp_path), config, results, rows)
    # 120 tokens is met by 4 samples (160), 700 by none: the largest count
    assert set(out) == {"sc_weighted@1 - sc_majority@1", "sc_weighted@4 - sc_majority@4",
                        "mcts_star@2 - sc_majority@4", "mcts_star@2 - sc_weighted@4",
                        "mcts_star@8 - sc_majority@4", "mcts_star@8 - sc_weighted@4"}
    assert out["mcts_star@2 - sc_majority@4"]["difference"] == pytest.approx(0.5)
    assert out["mcts_star@2 - sc_majority@4"]["resolved"] and out["mcts_star@2 - sc_majority@4"]["n_problems"] == n
    assert out["sc_weighted@1 - sc_majority@1"]["difference"] == 0.0


@pytest.mark.slow
def test_demo_end_to_end_on_cpu_and_resumed(tmp_path, tiny_math_policy):
    config = load_config(str(REPO / "config" / "rest_mcts_demo.json"))
    config.update(policy=tiny_math_policy, work=str(tmp_path / "work"), train_problems=[6000, 6012],
                  problems={"n_train": 6012, "n_test": 8}, eval={"problems": 8, "max_tokens": 96})
    config["decoding"].update(sc_samples=[1, 2], star_iterations=[2])
    config["search"].update(iteration_limit=4)
    config["value"].update(min_eval_rows=2)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

    def run():
        return subprocess.run([sys.executable, "-m", "experiment.reproduce", "--config", str(path)], cwd=tmp_path,
                              capture_output=True, text=True, env=env, timeout=1500)

    completed = run()
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    table = json.loads((tmp_path / "work" / "table.json").read_text())
    assert set(table["policies"]) == {"base", "round1", "round2", "rest_em"}
    assert table["policies"]["base"]["n_problems"] == 8
    rule = table["rest_em_rule"]
    assert rule["n"] == em_samples(rule["search_tokens"], rule["problems"], rule["round0_tokens_per_sample"])
    assert table["data_costs"]["rest_em"]["samples"] == rule["n"] * 12
    assert {"sc_majority@1", "sc_weighted@2", "mcts_star@2"} <= set(table["decoders"])
    assert {"round0", "round1", "round2"} <= set(table["value_aucs"])
    assert "round1 - base" in table["policy_comparisons"]
    # a rerun finds everything done: only the sampling starts again (it resumes by id and finds every task done)
    again = run()
    assert again.returncode == 0, again.stderr[-3000:]
    started = re.findall(r"\] start (\w+):", again.stdout)
    assert started == ["em_sample"], started
