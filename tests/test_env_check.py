"""The environment check before a stage spends model time: a missing module is a one-line refusal
(exit 2) naming the interpreter and the module, not a run of silent zeros."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from data.jsonl import DataError
from data.records import Result
from data.records import TestOutcome as Outcome
from evaluation.env_check import check_environment, missing_module, parse_exec_python
from tests.conftest import REPO, fixture_records

MISSING = "restrl_no_such_module"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def needs_missing_module(tmp_path, name="bcb.jsonl"):
    """BigCodeBench records (the fixture's layout) whose reference imports a module nobody has,
    and one whose reference imports only the standard library."""
    good = fixture_records("bigcodebench_tiny.jsonl")[0]
    bad = dict(good, task_id="Fixture/missing", code_prompt=f"import {MISSING}\n" + good["code_prompt"],
               complete_prompt=f"import {MISSING}\n" + good["complete_prompt"], libs=f"['{MISSING}']")
    path = tmp_path / name
    path.write_text("".join(json.dumps(record) + "\n" for record in (good, bad)))
    return path


def test_exec_python_forms():
    assert parse_exec_python(None) is None
    assert parse_exec_python(["/usr/bin/python3"]) == "/usr/bin/python3"
    assert parse_exec_python(["BigCodeBench=/a/python", "DS1000=/b/python"]) == \
        {"BigCodeBench": "/a/python", "DS1000": "/b/python"}
    assert parse_exec_python(['{"APPS": "/c/python"}']) == {"APPS": "/c/python"}
    for bad in (["NoSuchDomain=/a/python"], ["BigCodeBench="], ["{not json"], ["/a/python", "/b/python"]):
        with pytest.raises((DataError, KeyError, ValueError)):
            parse_exec_python(bad)


def test_missing_module_is_read_from_any_part_of_the_result():
    assert missing_module(Result("runtime_error", error="ModuleNotFoundError: No module named 'sklearn'")) == "sklearn"
    assert missing_module(Result("failed", tests=[Outcome("runtime_error", error="No module named 'a.b'")])) == "a.b"
    assert missing_module(Result("failed", error="AssertionError")) is None


def test_check_names_interpreter_and_module(tmp_path):
    from data.registry import get_benchmark

    problems = get_benchmark("BigCodeBench").load(str(tmp_path), needs_missing_module(tmp_path).name)
    assert check_environment({"BigCodeBench": problems[:1]}, None) is None  # the standard library is there
    line = check_environment({"BigCodeBench": problems}, {"BigCodeBench": sys.executable})
    assert line.startswith("error: ") and "\n" not in line
    assert sys.executable in line and repr(MISSING) in line and "BigCodeBench=" in line


def test_sampling_refuses_before_generating(tmp_path):
    data = needs_missing_module(tmp_path)
    command = [sys.executable, "-m", "experiment.sample", "--domain", "BigCodeBench", "--directory", str(tmp_path),
               "--file", data.name, "--backend", "no-such-model-is-loaded", "--n", "1", "--max_tokens", "8"]
    done = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and MISSING in last and sys.executable in last and "Traceback" not in done.stderr
    assert not list(tmp_path.glob("generate/**/*completions.jsonl"))  # nothing generated


def test_skip_env_check_skips(tmp_path):
    from argparse import Namespace

    from data.registry import get_benchmark
    from evaluation.env_check import run_check

    problems = get_benchmark("BigCodeBench").load(str(tmp_path), needs_missing_module(tmp_path).name)
    args = Namespace(domain="BigCodeBench", exec_python=None, timeout=None)
    assert MISSING in run_check(Namespace(**vars(args), skip_env_check=False), problems)
    assert run_check(Namespace(**vars(args), skip_env_check=True), problems) is None


@pytest.mark.slow
def test_grpo_checks_each_domain_with_its_interpreter(tmp_path, tiny_model_dir):
    """Aggregated data mixes domains: each runs in its own interpreter (here all the same one),
    checked before the model loads."""
    from data.registry import get_benchmark

    problems = get_benchmark("BigCodeBench").load(str(tmp_path), needs_missing_module(tmp_path).name)
    records = [{"prompt": "p", "init_state": p.init_state, "partial_state": p.init_state, "domain": p.domain,
                "test": json.dumps(p.test), "id": p.id} for p in problems]
    data = tmp_path / "grpo.jsonl"
    data.write_text("".join(json.dumps(record) + "\n" for record in records))
    done = subprocess.run([sys.executable, str(REPO / "models" / "train_grpo.py"), str(tiny_model_dir),
                           str(tmp_path / "out"), str(data), "--report_to", "none", "--num_generations", "4",
                           "--exec_python", f"BigCodeBench={sys.executable}", f"DS1000={sys.executable}"],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert MISSING in last and sys.executable in last and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("checkpoint-*"))


# -- one sandbox per stage start: the check runs in the sandbox the stage then uses --------------------------

class FakePolicy:
    """Answers every prompt with `pass`: the stage's mechanics without a model."""

    batches_seeded_prompts = True
    tokenizer = None

    def generate(self, prompts, n=1, temperature=0.7, max_tokens=16, stop=None, seed=None):
        from models.generation import Generation, PromptOutput

        return [PromptOutput(1, [Generation("pass", 1, "stop") for _ in range(n)]) for _ in prompts]


def tinycode_file(tmp_path):
    from data.jsonl import write_jsonl
    from data.tinycode import generate

    _, test = generate(seed=0, n_train=0, n_test=2)
    write_jsonl(str(tmp_path / "test.jsonl"), test)
    return ["--domain", "TinyCode", "--directory", str(tmp_path), "--file", "test.jsonl", "--backend", "fake",
            "--engine", "hf", "--do_not_format", "--n", "2", "--workers", "2"]


@pytest.mark.parametrize("stage", ["experiment.sample", "evaluation.eval"])
def test_stage_start_opens_one_sandbox_and_checks_before_the_policy(tmp_path, monkeypatch, stage):
    import importlib

    from evaluation import env_check
    from evaluation.sandbox import Sandbox

    module = importlib.import_module(stage)
    events = []
    start, check = Sandbox.__init__, env_check.check_environment

    def counted_start(self, *args, **kwargs):
        events.append("sandbox")
        start(self, *args, **kwargs)

    monkeypatch.setattr(Sandbox, "__init__", counted_start)
    monkeypatch.setattr(env_check, "check_environment", lambda *a, **k: events.append("check") or check(*a, **k))
    monkeypatch.setattr(module, "backend_from_args", lambda *a, **k: events.append("policy") or FakePolicy())
    monkeypatch.chdir(tmp_path)
    flags = ["--output_dir", str(tmp_path / "eval")] if stage == "evaluation.eval" else []
    assert module.main(tinycode_file(tmp_path) + flags) == 0
    # eval verifies its answers in the same sandbox: still one
    assert events == ["sandbox", "check", "policy"]


def failing_interpreter(tmp_path):
    """An executable that is no Python: every sandbox worker dies at start-up."""
    path = tmp_path / "python"
    path.write_text("#!/bin/sh\nexit 1\n")
    path.chmod(0o755)
    return str(path)


def test_sandbox_failure_during_the_check_is_one_error_line(tmp_path):
    interpreter = failing_interpreter(tmp_path)
    command = [sys.executable, "-m", "experiment.sample", *tinycode_file(tmp_path), "--exec_python", interpreter]
    done = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "fail to start" in last and interpreter in last
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.glob("generate/**/*completions.jsonl"))  # nothing generated


def test_grpo_checks_in_the_reward_sandboxes(tmp_path):
    """GRPO's check runs in the sandbox the reward then scores with (one per interpreter); one that
    cannot start is a SandboxError (train_grpo's one line, exit 1)."""
    from datasets import Dataset

    from data.registry import get_benchmark
    from evaluation.sandbox import SandboxError
    from models.rewards import CodeReward
    from models.train_grpo import check_environment as grpo_check

    problems = get_benchmark("BigCodeBench").load(str(tmp_path), needs_missing_module(tmp_path).name)
    dataset = Dataset.from_list([{"prompt": "p", "init_state": p.init_state, "partial_state": p.init_state,
                                  "domain": p.domain, "test": json.dumps(p.test), "id": p.id} for p in problems])
    reward = CodeReward(workers=1, exec_python={"BigCodeBench": sys.executable})
    try:
        with pytest.raises(DataError, match=MISSING):
            grpo_check(dataset, reward, skip=False)
        assert list(reward._sandboxes) == [sys.executable]
        sandbox = reward.sandbox_for("BigCodeBench")
        with pytest.raises(DataError, match=MISSING):
            grpo_check(dataset, reward, skip=False)
        assert reward.sandbox_for("BigCodeBench") is sandbox and len(reward._sandboxes) == 1
    finally:
        reward.close()
    broken = CodeReward(workers=1, exec_python=failing_interpreter(tmp_path))
    try:
        with pytest.raises(SandboxError):
            grpo_check(dataset, broken, skip=False)
    finally:
        broken.close()


def test_a_forked_child_does_not_hold_the_workers_open():
    """The stage's sandbox is open when vLLM forks its engine: closing it must not wait on the child."""
    import signal
    import time

    from data.records import Job
    from evaluation.sandbox import Sandbox

    sandbox = Sandbox(workers=2)
    assert sandbox.run([Job("x = 1", tests=["assert x == 1"])])[0].status == "passed"
    child = os.fork()
    if child == 0:
        time.sleep(60)
        os._exit(0)
    try:
        started = time.monotonic()
        sandbox.close()
        assert time.monotonic() - started < 5  # a held stdin made each worker wait out a 10 s timeout
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
