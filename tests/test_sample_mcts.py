"""`python -m experiment.sample_mcts` as a subprocess on TinyCode problems with a tiny random policy
and the real sandbox: valid traces, value data from them, Monte-Carlo targets, resume after SIGKILL,
shards, one-line errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO

from experiment import paths

FLAGS = ["--iteration_limit", "3", "--num_sample", "2", "--num_decision", "2", "--max_tokens", "24"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_model_dir):
    from data.tinycode import write

    path = tmp_path_factory.mktemp("mcts")
    write(str(path / "data" / "TinyCode"), seed=0, n_train=10, n_test=8)
    os.symlink(tiny_model_dir, path / "tiny")
    return path


def command(module: str, *flags: str) -> list[str]:
    return [sys.executable, "-m", module, *flags]


def sample_mcts(workdir, *flags: str) -> list[str]:
    return command("experiment.sample_mcts", "--domain", "TinyCode", "--file", "test.jsonl", "--backend", "tiny",
                   "--engine", "hf", "--device", "cpu", "--workers", "2", *flags)


def run(workdir, arguments: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(arguments, cwd=workdir, capture_output=True, text=True, env=env, timeout=300)
    return completed


def trace_path(mc_rollouts: int = 0, use_thought: bool = False) -> str:
    return paths.mcts_path("TinyCode", "tiny", time_limit=None, iteration_limit=3, num_sample=2, num_decision=2,
                           exploration_constant=0.2, eps=0.1, temperature=0.7, max_tokens=24,
                           mc_rollouts=mc_rollouts, use_thought=use_thought)


def read(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


def check_trace(record: dict) -> None:
    assert set(record) >= {"id", "prompt", "init_state", "test", "completions", "rewards", "tree", "token_usage"}
    assert record["iterations"] == 3 and record["expansions"] >= 1
    assert all(entry["completion"].startswith(record["init_state"]) and entry["completion"].endswith("\n")
               and 0.0 <= entry["reward"] <= 1.0 for entry in record["completions"])
    assert len(record["completions"]) == 2 * record["expansions"]
    root = record["rewards"][0]
    assert root["state"] == record["init_state"] and root["expanded"] and root["visits"] >= 2
    tree_visits = [node["num_visits"] for node in record["tree"]]
    assert tree_visits == [entry["visits"] for entry in record["rewards"]]
    assert record["token_usage"]["prompt"] > 0 and record["token_usage"]["completion"] > 0


def value_data(workdir, *flags: str) -> dict:
    completed = run(workdir, command("experiment.process_gen_data", "--domain", "TinyCode", "--method", "MCTS",
                                     "--backend", "tiny", "--iteration_limit", "3", "--num_sample", "2",
                                     "--num_decision", "2", "--max_tokens", "24", *flags))
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)["TinyCode"]


def test_traces_and_value_data(workdir):
    completed = run(workdir, sample_mcts(workdir, "--idx_list", "0", "1", *FLAGS))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == trace_path()
    traces = read(workdir / trace_path())
    assert [trace["id"] for trace in traces] == ["TinyCode/test/0", "TinyCode/test/1"]
    for trace in traces:
        check_trace(trace)
    arguments = json.loads((workdir / (trace_path() + ".args.json")).read_text())
    assert arguments["iteration_limit"] == 3 and arguments["seed"] == 0
    summary = value_data(workdir)
    records = read(workdir / summary["output"])
    expanded = [entry for trace in traces for entry in trace["rewards"] if entry["expanded"]]
    assert len(records) == sum(len(trace["completions"]) for trace in traces) + len(expanded)
    assert {record["prompt"] for record in records} == {trace["prompt"] for trace in traces}
    # a rerun has nothing left to do and keeps the file
    again = run(workdir, sample_mcts(workdir, "--idx_list", "0", "1", *FLAGS))
    assert again.returncode == 0 and read(workdir / trace_path()) == traces
    # other results-changing arguments: refused in one line
    other = run(workdir, sample_mcts(workdir, "--idx_list", "0", "1", *FLAGS, "--seed", "1", "--output",
                                     trace_path()))
    assert other.returncode == 2 and other.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "seed" in other.stderr


def test_thought_mode_traces_and_value_data(workdir):
    """--use_thought: a `thought_yes` trace whose expanded children carry the thoughts the policy wrote,
    which process_gen_data --use_thought turns into value data."""
    completed = run(workdir, sample_mcts(workdir, "--idx_list", "0", *FLAGS, "--use_thought",
                                         "--max_thought_tokens", "8"))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == trace_path(use_thought=True) and trace_path(use_thought=True).endswith(
        "_thought_yes.jsonl")
    (trace,) = read(workdir / trace_path(use_thought=True))
    check_trace(trace)
    root, children = trace["tree"][0], trace["tree"][1:]
    assert root["thought"] is None and children
    assert all(isinstance(node["thought"], str) for node in children)
    assert any(node["thought"].strip() for node in children)
    arguments = json.loads((workdir / (trace_path(use_thought=True) + ".args.json")).read_text())
    assert arguments["use_thought"] is True and arguments["max_thought_tokens"] == 8
    summary = value_data(workdir, "--use_thought")
    assert summary["output"].endswith("_thought_yes_rewards.jsonl")
    records = read(workdir / summary["output"])
    expanded = [entry for entry in trace["rewards"] if entry["expanded"]]
    assert len(records) == len(trace["completions"]) + len(expanded)


@pytest.mark.parametrize("flags", [["--iteration_limit", "0"], ["--num_decision", "0"], ["--shard_id", "3"],
                                   ["--value_targets", "mc", "--mc_rollouts", "0"],
                                   ["--use_thought", "--do_not_format"],
                                   ["--use_thought", "--max_thought_tokens", "0"]])
def test_bad_settings_fail_in_one_line(workdir, flags):
    completed = run(workdir, sample_mcts(workdir, "--output", "x.jsonl", *flags))
    assert completed.returncode == 2
    assert completed.stderr.strip().startswith("error: ") and len(completed.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_monte_carlo_targets_become_value_data(workdir):
    completed = run(workdir, sample_mcts(workdir, "--idx_list", "2", *FLAGS, "--value_targets", "mc",
                                         "--mc_rollouts", "2"))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == trace_path(2)
    (trace,) = read(workdir / trace_path(2))
    check_trace(trace)
    states = {entry["state"] for entry in trace["mc_rewards"]}
    assert trace["init_state"] in states
    assert {entry["state"] for entry in trace["rewards"] if entry["expanded"]} <= states
    for entry in trace["mc_rewards"]:
        assert entry["rollouts"] == 2 and entry["reward"] == pytest.approx(sum(entry["rewards"]) / 2)
    records = read(workdir / value_data(workdir, "--value_targets", "mc", "--mc_rollouts", "2")["output"])
    assert len(records) == len(trace["completions"]) + len(trace["mc_rewards"])


@pytest.mark.slow
def test_sigkill_loses_at_most_the_problem_in_flight(workdir):
    output = "killed.jsonl"
    arguments = sample_mcts(workdir, "--idx_list", "3", "4", "5", "6", *FLAGS, "--max_active", "1",
                            "--output", output)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(arguments, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = workdir / output
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if target.exists() and target.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = [line for line in target.read_text().splitlines(keepends=True) if line.endswith("\n")]
    assert 1 <= len(before) < 4, "the run finished before it could be killed"
    completed = run(workdir, arguments)
    assert completed.returncode == 0, completed.stderr
    traces = read(target)
    assert sorted(trace["id"] for trace in traces) == [f"TinyCode/test/{index}" for index in (3, 4, 5, 6)]
    assert [json.loads(line) for line in before] == traces[:len(before)]
    for trace in traces:
        check_trace(trace)


@pytest.mark.slow
def test_shards_merge_into_one_run(workdir):
    base = "sharded.jsonl"
    for shard_id in (0, 1):
        completed = run(workdir, sample_mcts(workdir, "--idx_list", "0", "1", "2", *FLAGS, "--num_shards", "2",
                                             "--shard_id", str(shard_id), "--output", base))
        assert completed.returncode == 0, completed.stderr
    assert [t["id"] for t in read(workdir / paths.shard_path(base, 1, 2))] == ["TinyCode/test/1"]
    completed = run(workdir, command("experiment.merge_shards", base, "--num_shards", "2"))
    assert completed.returncode == 0, completed.stderr
    assert [trace["id"] for trace in read(workdir / base)] == [f"TinyCode/test/{index}" for index in range(3)]
