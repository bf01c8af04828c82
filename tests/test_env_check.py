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
