"""experiment.zero_std: fresh groups on every prompt of GRPO data, judged by the GRPO reward, with the paired
share comparison of evaluation.compare."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from data.jsonl import write_jsonl
from evaluation.compare import paired_share_bootstrap
from experiment.zero_std import prefix_lines, summary
from tests.conftest import REPO

ENV = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}


def test_shares_are_pooled_per_arm_and_problems_move_together():
    # A: problem 0 has 3 groups, all zero-std; problem 1 one group, not. Pooled 3/4, not the mean of shares 1/2.
    result = paired_share_bootstrap([(3, 3), (0, 1)], [(0, 1), (0, 1)], seed=0, resamples=2000)
    assert result.difference == pytest.approx(0.75) and result.n_problems == 2
    identical = paired_share_bootstrap([(1, 2), (0, 3), (2, 2)], [(1, 2), (0, 3), (2, 2)], seed=0, resamples=500)
    assert identical.difference == 0 and identical.ci95 == [0, 0] and not identical.resolved
    always = paired_share_bootstrap([(2, 2)] * 30, [(0, 1)] * 30, seed=1, resamples=500)
    assert always.ci95 == [1.0, 1.0] and always.resolved
    # a problem B has no item of still counts in the draw (its A groups do)
    missing = paired_share_bootstrap([(1, 1), (1, 1)], [(0, 2), (0, 0)], seed=0, resamples=200)
    assert missing.difference == 1.0
    with pytest.raises(ValueError, match="need the same problems"):
        paired_share_bootstrap([(1, 1)], [(0, 1), (0, 1)])
    with pytest.raises(ValueError, match="items in both arms"):
        paired_share_bootstrap([(0, 0)], [(0, 1)])


def test_prefix_lines_count_the_lines_beyond_the_problem_start():
    assert prefix_lines({"init_state": "def f(x):\n", "partial_state": "def f(x):\n"}) == 0
    assert prefix_lines({"init_state": "def f(x):\n", "partial_state": "def f(x):\n    y = x\n    return y\n"}) == 2


@pytest.fixture(scope="module")
def grpo_data(tmp_path_factory, tiny_model_dir):
    """Two GRPO data files of TinyCode problems: the problems' own prompts, and prompts that already hold the
    whole reference solution (prefix prompts as ReST builds them)."""
    from transformers import AutoTokenizer

    from data.registry import get_benchmark
    from data.tinycode import generate
    from prompts import format_prompt

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    _, test = generate(seed=0, n_train=0, n_test=3)
    path = tmp_path_factory.mktemp("grpo-data")
    write_jsonl(str(path / "problems.jsonl"), test)
    own, full = [], []
    for record, problem in zip(test, get_benchmark("TinyCode").load(str(path), "problems.jsonl")):
        prompt = format_prompt(problem, tokenizer)
        base = {"prompt": prompt, "init_state": problem.init_state, "partial_state": problem.init_state,
                "domain": "TinyCode", "test": json.dumps(problem.test), "id": problem.id}
        own.append(base)
        assert record["solution"].startswith(problem.init_state)
        body = record["solution"][len(problem.init_state):]
        full.append({**base, "prompt": prompt + body, "partial_state": problem.init_state + body})
    write_jsonl(str(path / "own.jsonl"), own)
    write_jsonl(str(path / "full.jsonl"), full)
    return path


def run_zero_std(cwd, model, data, *flags):
    command = [sys.executable, "-m", "experiment.zero_std", "--backend", str(model), "--n", "4", "--groups", "2",
               "--max_tokens", "16", "--temperature", "1.0", "--workers", "2", "--data", f"own={data / 'own.jsonl'}",
               "--data", f"full={data / 'full.jsonl'}", "--output", str(cwd / "zero_std.jsonl"), *flags]
    return subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


def test_every_prompt_gets_its_groups_and_a_rerun_resumes(tmp_path, tiny_model_dir, grpo_data):
    completed = run_zero_std(tmp_path, tiny_model_dir, grpo_data)
    assert completed.returncode == 0, completed.stderr[-2000:]
    records = [json.loads(line) for line in open(tmp_path / "zero_std.jsonl")]
    assert len(records) == 12 and len({r["key"] for r in records}) == 12
    assert {r["prefix_lines"] for r in records if r["data"] == "own"} == {0}
    assert all(r["prefix_lines"] >= 3 for r in records if r["data"] == "full")
    for record in records:
        assert len(record["rewards"]) == 4 and all(0 <= value <= 1 for value in record["rewards"])
        assert record["zero_std"] == (max(record["rewards"]) == min(record["rewards"]))
    # the two groups of one prompt are drawn with their own seeds: the file's groups are not copies of each other
    printed = json.loads(completed.stdout.splitlines()[-1])
    assert printed == summary(str(tmp_path / "zero_std.jsonl"), ["own", "full"], 0)
    assert printed["shares"]["own"]["groups"] == 6 and printed["difference"]["n_problems"] == 3
    again = run_zero_std(tmp_path, tiny_model_dir, grpo_data)
    assert again.returncode == 0 and "0 groups to sample, 12 already" in again.stderr
    assert len(open(tmp_path / "zero_std.jsonl").read().splitlines()) == 12
    changed = run_zero_std(tmp_path, tiny_model_dir, grpo_data, "--seed", "3")
    assert changed.returncode == 2 and "other seed" in changed.stderr


def test_a_prompt_holding_a_passing_program_is_judged_as_that_program(tmp_path, grpo_data):
    """The stop string right away: the program judged is the partial state, the reference solution (reward 1)."""
    from models.rewards import CodeReward

    records = [json.loads(line) for line in open(grpo_data / "full.jsonl")]
    reward = CodeReward(workers=2)
    try:
        scores = reward.score(["```"] * len(records), [r["partial_state"] for r in records],
                              [r["domain"] for r in records], [r["test"] for r in records], [r["id"] for r in records],
                              [r["init_state"] for r in records])
    finally:
        reward.close()
    assert [score.execution for score in scores] == [1.0] * len(records)


def test_a_record_without_its_fields_is_one_line_naming_file_and_line(tmp_path, tiny_model_dir):
    bad = tmp_path / "bad.jsonl"
    write_jsonl(str(bad), [{"prompt": "x", "init_state": "", "partial_state": "", "domain": "TinyCode", "test": "{}",
                            "id": "a"}, {"prompt": "x"}])
    completed = subprocess.run([sys.executable, "-m", "experiment.zero_std", "--backend", str(tiny_model_dir),
                                "--data", f"a={bad}", "--output", str(tmp_path / "out.jsonl")],
                               cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines()[-1].startswith(f"error: {bad}:2") and "init_state" in completed.stderr
