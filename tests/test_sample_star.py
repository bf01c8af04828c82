"""`python -m experiment.sample_mcts --algorithm star` and `python -m evaluation.eval --method SC|MCTS_STAR` as
subprocesses on TinyMath problems with a tiny random policy and a tiny random value model (mechanics, not
quality): traces that keep the tree, resume by id after a partial output, results rows with tokens per problem."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

from experiment import paths

ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
STAR = ["--iteration_limit", "3", "--branch", "2", "--roll_forward_steps", "1", "--max_tokens", "12",
        "--max_depth", "4"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_model_dir):
    from data.tinymath import write

    path = tmp_path_factory.mktemp("star")
    write(str(path / "data" / "TinyMath"), seed=0, n_train=10, n_test=4)
    os.symlink(tiny_model_dir, path / "tiny")
    return path


def run(workdir, module: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, "--domain", "TinyMath", "--file", "test.jsonl", "--backend",
                           "tiny", "--engine", "hf", "--device", "cpu", *flags], cwd=workdir, capture_output=True,
                          text=True, env=ENV, timeout=300)


def read(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


def trace_path() -> str:
    return paths.mcts_star_path("TinyMath", "tiny", mode="generate", time_limit=None, iteration_limit=3, branch=2,
                                exploration_constant=0.5, roll_forward_steps=1, end_gate=0.8, inf=0.9, alpha=0.5,
                                max_depth=4, temperature=0.7, max_tokens=12)


def check_trace(trace: dict) -> None:
    nodes = trace["star_tree"]
    assert set(nodes[0]) == {"id", "parent", "step", "depth", "V", "visits", "terminal", "gives_answer", "reward"}
    assert nodes[0]["parent"] is None and nodes[0]["step"] == "" and nodes[0]["visits"] >= 1
    ids = {node["id"] for node in nodes}
    assert all(node["parent"] in ids for node in nodes[1:]) and len(ids) == len(nodes)
    assert all(0.0 <= node["V"] <= 1.0 and node["depth"] <= 4 for node in nodes)
    assert all((node["reward"] in (0.0, 1.0)) if node["gives_answer"] else node["reward"] is None for node in nodes)
    assert trace["mode"] == "generate" and trace["iterations"] == 3 and not trace["stopped_at_gate"]
    assert trace["token_usage"]["completion"] > 0 and trace["expansions"] >= 1


def test_star_traces_and_resume_by_id(workdir):
    flags = ["--algorithm", "star", "--rm_backend", "tiny", "--idx_list", "0", "1", *STAR]
    completed = run(workdir, "experiment.sample_mcts", *flags)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip() == trace_path()
    traces = read(workdir / trace_path())
    assert [trace["id"] for trace in traces] == ["TinyMath/test/0", "TinyMath/test/1"]
    for trace in traces:
        check_trace(trace)
    arguments = json.loads((workdir / (trace_path() + ".args.json")).read_text())
    assert arguments["algorithm"] == "star" and arguments["end_gate"] == 0.8 and arguments["inf"] == 0.9
    # a partial output (the second trace lost, a half-written line left): only that problem runs again
    target = workdir / trace_path()
    target.write_text(json.dumps(traces[0]) + "\n" + '{"id": "TinyMath/te')
    again = run(workdir, "experiment.sample_mcts", *flags)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 problems to run, 1 already" in again.stderr
    resumed = read(target)
    assert resumed[0] == traces[0] and [trace["id"] for trace in resumed] == ["TinyMath/test/0", "TinyMath/test/1"]
    check_trace(resumed[1])  # seeded per problem (the same search up to the engine's batch numerics)
    other = run(workdir, "experiment.sample_mcts", *flags, "--end_gate", "0.7", "--output", trace_path())
    assert other.returncode == 2 and "end_gate" in other.stderr


def test_star_needs_a_value_model(workdir):
    completed = run(workdir, "experiment.sample_mcts", "--algorithm", "star", "--output", "x.jsonl", *STAR)
    assert completed.returncode == 2 and "--rm_backend" in completed.stderr


def evaluate(workdir, *flags) -> dict:
    completed = run(workdir, "evaluation.eval", "--idx_list", "0", "1", "--max_tokens", "12", *flags)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("flags", [["--method", "SC", "--num_sample", "3"],
                                   ["--method", "SC", "--num_sample", "3", "--vote", "weighted", "--rm_backend",
                                    "tiny"],
                                   ["--method", "MCTS_STAR", "--rm_backend", "tiny", *STAR],
                                   ["--method", "MCTS_STAR", "--rm_backend", "tiny", "--vote", "weighted", *STAR]])
def test_eval_baselines_report_tokens_per_problem(workdir, flags):
    results = evaluate(workdir, *flags)
    assert results["n_problems"] == 2 and 0.0 <= results["strict_acc"] <= 1.0
    assert results["completion_tokens_per_problem"] > 0
    assert results["tokens_per_problem"] > results["completion_tokens_per_problem"]
    method = flags[1]
    directory = workdir / paths.eval_dir("TinyMath", method, "tiny")
    vote = "weighted" if "weighted" in flags else "majority" if method == "SC" else "best"
    (completions,) = [name for name in os.listdir(directory)
                      if name.endswith("_completions.jsonl") and f"vote_{vote}_" in name]
    answers = read(directory / completions)
    assert all(len(answer["completions"]) == 1 and answer["samples"] > 0 for answer in answers)
    if method == "SC":
        assert all(answer["samples"] == 3 for answer in answers)
