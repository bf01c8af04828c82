"""The stage skeleton (`experiment.stage`): what a body raises becomes one line on stderr and an exit code
(bad input 2, a sandbox that cannot run 1), in-process and in every stage script run as a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from data.jsonl import DataError, write_jsonl
from evaluation.sandbox import SandboxError
from experiment.stage import Refused, stage_main
from tests.conftest import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def raising(exc: Exception):
    def body(*_):
        raise exc
    return body


@pytest.mark.parametrize("exc, code, line", [
    (DataError("data.jsonl", 3, "missing field 'id'"), 2, "error: data.jsonl:3: missing field 'id'"),
    (ValueError("unknown domain 'X'"), 2, "error: unknown domain 'X'"),
    (Refused("error: python cannot import 'numpy'"), 2, "error: python cannot import 'numpy'"),
    (SandboxError("workers fail to start"), 1, "error: workers fail to start"),
])
def test_errors_become_one_line_and_an_exit_code(capsys, exc, code, line):
    assert stage_main(raising(exc)) == code
    assert capsys.readouterr().err.splitlines() == [line]


def test_a_body_that_returns_exits_0_and_a_bug_keeps_its_traceback():
    seen = []
    assert stage_main(seen.append, "args") == 0 and seen == ["args"]
    with pytest.raises(KeyError):
        stage_main(raising(KeyError("bug")))


@pytest.fixture
def tinycode(tmp_path):
    from data.tinycode import generate

    _, test = generate(seed=0, n_train=0, n_test=2)
    write_jsonl(str(tmp_path / "test.jsonl"), test)
    (tmp_path / "bad.jsonl").write_text('{"task_id": "TinyCode/test/0"}\n')
    return ["--domain", "TinyCode", "--directory", str(tmp_path), "--backend", "fake", "--engine", "hf", "--n", "1"]


def run(tmp_path, module: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *flags], cwd=tmp_path, env=ENV, capture_output=True,
                          text=True, timeout=300)


# (stage, flags after the TinyCode flags or in place of them, what the line names)
BAD_INPUT = [
    ("experiment.sample", ["--file", "test.jsonl", "--num_shards", "2", "--shard_id", "5"], "--shard_id"),
    ("experiment.sample_mcts", ["--file", "test.jsonl", "--num_sample", "0"], "--num_sample"),
    ("evaluation.eval", ["--file", "bad.jsonl"], "bad.jsonl:1"),
    ("evaluation.verify", ["--file", "test.jsonl", "--input", "none.jsonl"], "no such input file"),
    ("experiment.process_gen_data", ["--domain", "NoSuchDomain"], "NoSuchDomain"),
    ("experiment.zero_std", ["--data", "a=none.jsonl", "--output", "out.jsonl"], "none.jsonl"),
]


@pytest.mark.parametrize("module, flags, named", BAD_INPUT, ids=[case[0] for case in BAD_INPUT])
def test_each_stage_refuses_bad_input_with_one_line_exit_2(tmp_path, tinycode, module, flags, named):
    prefix = tinycode if module in ("experiment.sample", "experiment.sample_mcts", "evaluation.eval") else []
    if module == "evaluation.verify":
        prefix = tinycode[:4]
    done = run(tmp_path, module, *prefix, *flags)
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and named in last and "Traceback" not in done.stderr


def test_eval_stops_with_exit_1_when_the_sandbox_cannot_run(tmp_path, tinycode):
    interpreter = tmp_path / "python"  # no Python: every sandbox worker dies at start-up
    interpreter.write_text("#!/bin/sh\nexit 1\n")
    interpreter.chmod(0o755)
    done = run(tmp_path, "evaluation.eval", *tinycode, "--file", "test.jsonl", "--exec_python", str(interpreter),
               "--output_dir", str(tmp_path / "eval"))
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(interpreter) in last and "Traceback" not in done.stderr
