"""ReST-GRPO data assembly, as the original does it: the prefix distribution, the std filter, the best
program, file names, and the records each mode writes from completions with known rewards."""
from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from collections import Counter

import pytest

from experiment import paths
from experiment.process_gen_data import (
    best_completion,
    draw_prefix_lengths,
    line_prefix,
    prefix_weights,
)
from tests.conftest import REPO

BACKEND = "org/tiny-model"


def test_prefix_distribution_matches_formula():
    alpha, lines = 0.8, 6
    rng = random.Random(0)
    draws = Counter(draw_prefix_lengths(lines, 200_000, alpha, rng))
    for j in range(1, lines + 1):
        expected = (1 - alpha) * alpha ** (j - 1) / (1 - alpha ** lines)
        assert abs(draws[j] / 200_000 - expected) < 0.005, (j, draws[j] / 200_000, expected)
    assert set(draws) == set(range(1, lines + 1))


def test_prefix_counts_per_mode():
    rng = random.Random(1)
    assert len(draw_prefix_lengths(7, 3, 0.95, rng)) == 3  # fixed count
    assert len(draw_prefix_lengths(7, 0.5, 0.95, rng)) == math.ceil(3.5)  # ratio, ceil
    assert draw_prefix_lengths(7, 0.5, 0.95, rng, extract_all_lines=True) == list(range(1, 8))
    assert prefix_weights(3, 0.5) == [1, 0.5, 0.25]
    assert draw_prefix_lengths(0, 3, 0.95, rng) == []


def test_line_prefix_and_first_best():
    sample = "    x = 1\n\n    return x\n\n"
    assert line_prefix(sample, 1) == "    x = 1\n"
    assert line_prefix(sample, 2) == "    x = 1\n\n"  # blank lines count
    assert line_prefix(sample, 3) == "    x = 1\n\n    return x\n"
    completions = [{"reward": 0.5, "k": 0}, {"reward": 1.0, "k": 1}, {"reward": 1.0, "k": 2}]
    assert best_completion(completions)["k"] == 1


def test_file_names_equal_the_originals():
    assert paths.grpo_data_name(0.7, 1024, 0.05, 0.9, 0.5, 0.95) == \
        "temp_0.7_tokens_1024_grpo_data_0.05_0.9_0.5_0.95.jsonl"
    assert paths.grpo_data_name(0.7, 1024, 0.05, 0.9, 0, 0.95) == "temp_0.7_tokens_1024_grpo_data_basic.jsonl"
    assert paths.grpo_data_name(1.0, 512, 0.05, 0.9, 2, 0.95, extract_all_lines=True) == \
        "temp_1.0_tokens_512_grpo_data_0.05_0.9_all.jsonl"
    assert paths.grpo_data_name(0.7, 1024, 0.05, 0.9, 3, 0.95).endswith("_0.05_0.9_3_0.95.jsonl")
    assert paths.dpo_data_name(0.7, 1024) == "temp_0.7_tokens_1024_dpo_data.jsonl"
    assert paths.sft_data_name(0.7, 1024) == "temp_0.7_tokens_1024_sft_data.jsonl"
    assert paths.common_dir("APPS", "ckpts/grpo/X/1") == "generate/Common/APPS/ckpts--grpo--X--1"
    assert paths.mcts_name(None, 100, 5, 5, 0.2, 0.1, 0.7, 1024) == \
        "time_None_iter_100_sample_5_decision_5_exp_0.2_eps_0.1_temp_0.7_tokens_1024_thought_no.jsonl"
    assert paths.prompts_name("x_all.jsonl") == "x_all_prompts.jsonl"


# one problem per reward pattern; programs of 4 lines
PROGRAM = "    a = 1\n    b = 2\n    c = a + b\n    return c\n"
PATTERNS = {
    "spread_best_accepted": [0.0, 1.0, 0.5, 1.0],   # std 0.41 -> kept; best 1.0 -> prefixes
    "spread_best_rejected": [0.0, 0.5, 0.25, 0.0],  # std 0.2 -> kept; best 0.5 < 0.9 -> no prefixes
    "flat_all_pass": [1.0, 1.0, 1.0, 1.0],          # std 0 -> dropped
    "flat_all_fail": [0.0, 0.0, 0.0, 0.0],          # std 0 -> dropped
    "nearly_flat": [1.0, 1.0, 1.0, 0.95],           # std 0.0217 < 0.05 -> dropped
}


def write_completions(root, domain="TinyCode"):
    path = root / paths.completions_path(domain, BACKEND, 0.7, 256)
    path.parent.mkdir(parents=True)
    lines = []
    for pid, rewards in PATTERNS.items():
        completions = [{"sample": f"{PROGRAM}```\n", "formatted_sample": PROGRAM if r else f"    return {i}\n",
                        "formatted_completion": "def f():\n" + PROGRAM, "reward": r, "status": "passed"}
                       for i, r in enumerate(rewards)]
        lines.append({"id": pid, "prompt": "Write f.", "init_state": "def f():\n", "test": {"tests": []},
                      "token_usage": {"prompt": 1, "completion": 1},
                      "result": {"formatted_prompt": "<prompt>def f():\n", "completions": completions}})
    lines.append({"id": "empty", "prompt": "x", "init_state": "", "test": {}, "token_usage": {}, "result": {}})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def process(root, *flags):
    completed = subprocess.run(
        [sys.executable, "-m", "experiment.process_gen_data", "--domain", "TinyCode", "--backend", BACKEND,
         "--temperature", "0.7", "--max_tokens", "256", *flags],
        cwd=root, capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def read(path):
    return [json.loads(line) for line in open(path)]


def test_grpo_ratio_mode_records(tmp_path):
    write_completions(tmp_path)
    summary = process(tmp_path, "--mode", "grpo", "--n_sample", "0.5", "--alpha", "0.95", "--do_aggregate")
    out = tmp_path / summary["TinyCode"]["output"]
    assert out.name == "temp_0.7_tokens_256_grpo_data_0.05_0.9_0.5_0.95.jsonl"
    records = read(out)
    # kept: 2 bases; prefixes: ceil(4 lines * 0.5) = 2 from the accepted best
    assert len(records) == 4
    assert [r["id"] for r in records] == ["spread_best_accepted"] * 3 + ["spread_best_rejected"]
    base, *prefixed = records[:3]
    assert base["prompt"] == "<prompt>def f():\n" and base["partial_state"] == "def f():\n"
    for record in prefixed:
        partial = record["partial_state"][len("def f():\n"):]
        assert partial and PROGRAM.startswith(partial) and partial.endswith("\n")
        assert record["prompt"] == "<prompt>def f():\n" + partial
        assert all(isinstance(record[k], str) for k in ("prompt", "init_state", "partial_state", "domain", "test"))
    assert json.loads(records[0]["test"]) == {"tests": []}
    aggregated = tmp_path / summary["All"]["output"]
    assert "generate/Common/All/org--tiny-model" in str(aggregated) and read(aggregated) == records
    assert json.loads((tmp_path / (str(out) + ".args.json")).read_text())["alpha"] == 0.95
    # seeded: the same run gives the same prefixes
    assert read(tmp_path / process(tmp_path, "--mode", "grpo")["TinyCode"]["output"]) == records


def test_grpo_fixed_all_and_basic_modes(tmp_path):
    write_completions(tmp_path)
    fixed = read(tmp_path / process(tmp_path, "--n_sample", "3")["TinyCode"]["output"])
    assert len(fixed) == 2 + 3
    every = read(tmp_path / process(tmp_path, "--extract_all_lines")["TinyCode"]["output"])
    assert len(every) == 2 + 4
    assert [r["partial_state"].count("\n") - 1 for r in every[1:5]] == [1, 2, 3, 4]
    basic_summary = process(tmp_path, "--n_sample", "0")
    assert basic_summary["TinyCode"]["output"].endswith("_grpo_data_basic.jsonl")
    basic = read(tmp_path / basic_summary["TinyCode"]["output"])
    assert [r["id"] for r in basic] == sorted(PATTERNS)  # every problem, no filter, no prefixes, in id order


def test_dpo_and_sft_modes(tmp_path):
    write_completions(tmp_path)
    dpo = read(tmp_path / process(tmp_path, "--mode", "dpo")["TinyCode"]["output"])
    assert len(dpo) == 3  # every problem whose rewards differ
    assert all(r["chosen"].endswith("```") and r["rejected"].endswith("```") for r in dpo)
    # in id order: nearly_flat, spread_best_accepted, spread_best_rejected
    assert dpo[1]["chosen"] == PROGRAM + "```" and dpo[1]["rejected"] == "    return 0\n```"
    sft = read(tmp_path / process(tmp_path, "--mode", "sft")["TinyCode"]["output"])
    # rewards >= 0.9: 2 + 0 + 4 + 0 + 4
    assert len(sft) == 10 and all(r["completion"] == PROGRAM + "```" for r in sft)


def test_value_data_from_traces(tmp_path):
    name = paths.mcts_name(None, 3, 2, 2, 0.2, 0.1, 0.7, 256)
    path = tmp_path / paths.mcts_dir("TinyCode", BACKEND) / name
    path.parent.mkdir(parents=True)
    trace = {"id": "p", "prompt": "Write f.", "init_state": "def f():\n", "test": {},
             "completions": [{"completion": "def f():\n    return 1\n", "reward": 1.0},
                             {"completion": "def f():\n    return 2\n", "reward": 0.0}],
             "rewards": [{"state": "def f():\n", "reward": 0.5, "terminal": False, "expanded": True, "visible": True},
                         {"state": "def f():\n    return 1\n", "reward": 1.0, "terminal": True, "expanded": False,
                          "visible": True}],
             "token_usage": {"prompt": 0, "completion": 0}}
    path.write_text(json.dumps(trace) + "\n")
    summary = process(tmp_path, "--method", "MCTS", "--iteration_limit", "3", "--num_sample", "2",
                      "--num_decision", "2", "--do_aggregate")
    records = read(tmp_path / summary["TinyCode"]["output"])
    assert records == [{"prompt": "Write f.", "answer": "def f():\n    return 1\n", "reward": 1.0},
                       {"prompt": "Write f.", "answer": "def f():\n    return 2\n", "reward": 0.0},
                       {"prompt": "Write f.", "answer": "def f():\n", "reward": 0.5}]
    assert summary["All"]["output"].endswith("_thought_no_domains_TinyCode_rewards.jsonl")


def test_bad_input_is_one_line(tmp_path):
    path = write_completions(tmp_path)
    path.write_text(path.read_text() + '{"id": "broken", "result": {"formatted_prompt": "x"}}\n')
    completed = subprocess.run(
        [sys.executable, "-m", "experiment.process_gen_data", "--domain", "TinyCode", "--backend", BACKEND,
         "--max_tokens", "256"], cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(REPO)})
    assert completed.returncode == 2
    assert completed.stderr.strip().startswith("error: ") and ":7: field" in completed.stderr


@pytest.mark.parametrize("flags", [["--alpha", "1.0"], ["--n_sample", "1.5"]])
def test_rejects_bad_settings(tmp_path, flags):
    completed = subprocess.run([sys.executable, "-m", "experiment.process_gen_data", *flags], cwd=tmp_path,
                               capture_output=True, text=True, env={"PYTHONPATH": str(REPO)})
    assert completed.returncode == 2


def run_module(root, module, *flags):
    completed = subprocess.run([sys.executable, "-m", module, *flags], cwd=root, capture_output=True, text=True,
                               env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"})
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_collect_grpo_data_gives_problems_every_reader_takes(tmp_path):
    from data.registry import get_benchmark

    write_completions(tmp_path)
    grpo = read(tmp_path / process(tmp_path, "--n_sample", "3")["TinyCode"]["output"])
    run_module(tmp_path, "experiment.collect_grpo_data", "--domains", "TinyCode", "--backend", BACKEND,
               "--max_tokens", "256", "--n_sample", "3")
    directory = tmp_path / paths.common_dir("TinyCode", BACKEND)
    name = "temp_0.7_tokens_256_grpo_data_0.05_0.9_3_0.95_prompts.jsonl"
    problems = get_benchmark("TinyCode").load(str(directory), name)
    assert len(problems) == len(grpo) == 5
    assert [p.id for p in problems[:2]] == ["spread_best_accepted#0", "spread_best_accepted#1"]
    assert [p.init_state for p in problems] == [r["partial_state"] for r in grpo]
    assert [p.prompt for p in problems] == [r["prompt"] for r in grpo] and problems[0].test == {"tests": []}


def test_get_reward_data_stds_and_plots(tmp_path):
    write_completions(tmp_path)
    summary = json.loads(run_module(tmp_path, "experiment.get_reward_data", "--domain", "TinyCode", "--backend",
                                    BACKEND, "--max_tokens", "256").splitlines()[-1])
    import numpy as np

    stds = [float(np.std(rewards)) for rewards in PATTERNS.values()]
    assert summary["problems"] == 5 and abs(summary["mean_std"] - sum(stds) / 5) < 1e-9
    assert summary["zero_std_fraction"] == 0.4
    for kind in ("rewards", "stds"):
        path = tmp_path / summary["plots"][kind]
        assert path.name == f"temp_0.7_tokens_256_{kind}.png" and path.read_bytes()[:4] == b"\x89PNG"


def test_orm_mode_keeps_every_program_with_its_reward(tmp_path):
    write_completions(tmp_path)
    summary = process(tmp_path, "--mode", "orm")
    assert summary["TinyCode"]["output"].endswith("temp_0.7_tokens_256_orm_data.jsonl")
    records = read(tmp_path / summary["TinyCode"]["output"])
    assert len(records) == 4 * len(PATTERNS)
    assert [r["reward"] for r in records] == [r for pid in sorted(PATTERNS) for r in PATTERNS[pid]]
    assert all(set(r) == {"prompt", "answer", "reward"} and r["prompt"] == "Write f." for r in records)


@pytest.mark.parametrize("mode", ["grpo", "orm", "sft", "dpo"])
def test_the_input_line_order_changes_nothing(tmp_path, mode):
    """Sampling writes problems as they finish: two runs' files hold the same lines in other orders, and the
    data (hence the training batches that follow its order) must be the same."""
    path = write_completions(tmp_path)
    first = (tmp_path / process(tmp_path, "--mode", mode)["TinyCode"]["output"]).read_text()
    lines = path.read_text().splitlines(keepends=True)
    random.Random(3).shuffle(lines)
    path.write_text("".join(reversed(lines)))
    assert (tmp_path / process(tmp_path, "--mode", mode)["TinyCode"]["output"]).read_text() == first
