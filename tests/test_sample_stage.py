"""`experiment.sample` as a subprocess on TinyCode with a tiny random policy: the record, resume by id
after SIGKILL, shards merged equal one unsharded run, then `process_gen_data` on what it wrote."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from data.jsonl import DataError, read_done, write_json, write_jsonl
from experiment import paths
from experiment.common import idx_list, parse_value, problem_seed, select_problems
from tests.conftest import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from data.tinycode import generate

    _, test = generate(seed=0, n_train=0, n_test=8)
    path = tmp_path_factory.mktemp("tinycode")
    write_jsonl(str(path / "test.jsonl"), test)
    return path


def sample(cwd, model, data_dir, *flags, wait=True):
    command = [sys.executable, "-m", "experiment.sample", "--domain", "TinyCode", "--directory", str(data_dir),
               "--file", "test.jsonl", "--backend", str(model), "--n", "4", "--max_tokens", "24",
               "--temperature", "1.0", "--workers", "2", *flags]
    if not wait:
        return subprocess.Popen(command, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    completed = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return cwd / completed.stdout.strip().splitlines()[-1]


def lines(path):
    return [json.loads(line) for line in open(path)]


def test_idx_list_forms_kwargs_and_shards():
    assert idx_list(["0", "1", "2"]) == idx_list(["0,1,2"]) == [0, 1, 2]
    assert idx_list(None) is None
    assert [parse_value(v) for v in ("12", "0.5", "False", "x.y")] == [12, 0.5, False, "x.y"]
    problems = list(range(10))
    shards = [select_problems(problems, None, 3, i) for i in range(3)]
    assert sorted(sum(shards, [])) == problems and not set(shards[0]) & set(shards[1])
    assert select_problems(problems, [5, 2, 5], 1, 0) == [5, 2]
    with pytest.raises(DataError):
        select_problems(problems, [10])
    assert problem_seed(0, "a") == problem_seed(0, "a") != problem_seed(0, "b")


def test_resume_refuses_changed_arguments(tmp_path):
    path = str(tmp_path / "out.jsonl")
    write_jsonl(path, [{"id": "a"}])
    write_json(path + ".args.json", {"n": 4, "seed": 0, "stop": ["```"]})
    assert set(read_done(path, {"n": 4, "seed": 0, "stop": ("```",)}, ("n", "seed", "stop"))) == {"a"}
    with pytest.raises(DataError, match="other n"):
        read_done(path, {"n": 8, "seed": 0}, ("n", "seed"))


def test_sample_record_and_process(tmp_path, tiny_model_dir, data_dir):
    output = sample(tmp_path, tiny_model_dir, data_dir, "--idx_list", "0", "1")
    assert output == tmp_path / paths.completions_path("TinyCode", str(tiny_model_dir), 1.0, 24)
    records = lines(output)
    assert sorted(r["id"] for r in records) == ["TinyCode/test/0", "TinyCode/test/1"]
    for record in records:
        assert set(record) >= {"id", "prompt", "init_state", "test", "token_usage", "result"}
        result = record["result"]
        assert result["formatted_prompt"].endswith("```python\n" + record["init_state"])
        assert len(result["completions"]) == 4
        for completion in result["completions"]:
            assert completion["formatted_completion"].startswith(record["init_state"])
            assert 0.0 <= completion["reward"] <= 1.0
            assert completion["status"] in ("passed", "failed", "timeout", "memory", "syntax_error",
                                            "runtime_error", "harness_error")
        assert record["token_usage"]["completion"] == sum(c["completion_tokens"] for c in result["completions"])
    args = json.loads(open(str(output) + ".args.json").read())
    assert args["n"] == 4 and args["idx_list"] == [0, 1]
    # a rerun finds both done; another seed is refused
    again = subprocess.run([sys.executable, "-m", "experiment.sample", "--domain", "TinyCode", "--directory",
                            str(data_dir), "--file", "test.jsonl", "--backend", str(tiny_model_dir), "--n", "4",
                            "--max_tokens", "24", "--temperature", "1.0", "--idx_list", "0,1", "--seed", "5"],
                           cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert again.returncode == 2 and "other seed" in again.stderr
    completed = subprocess.run(
        [sys.executable, "-m", "experiment.process_gen_data", "--domain", "TinyCode", "--backend",
         str(tiny_model_dir), "--temperature", "1.0", "--max_tokens", "24", "--n_sample", "0"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    summary = json.loads(completed.stdout.splitlines()[-1])["TinyCode"]
    basic = lines(tmp_path / summary["output"])
    assert len(basic) == 2 and {r["prompt"] for r in basic} == {r["result"]["formatted_prompt"] for r in records}


@pytest.mark.slow
def test_sigkill_then_resume_loses_nothing_twice(tmp_path, tiny_model_dir, data_dir):
    output = tmp_path / paths.completions_path("TinyCode", str(tiny_model_dir), 1.0, 24)
    process = sample(tmp_path, tiny_model_dir, data_dir, "--chunk_size", "1", wait=False)
    deadline = time.time() + 120
    while time.time() < deadline and (not output.exists() or output.read_text().count("\n") < 2):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = [r["id"] for r in lines(output)]
    assert 2 <= len(before) < 8, "the kill should land mid-run"
    with open(output, "a") as handle:  # what a kill during a write leaves
        handle.write('{"id": "TinyCode/test/7", "prom')
    sample(tmp_path, tiny_model_dir, data_dir, "--chunk_size", "1")
    after = [r["id"] for r in lines(output)]
    assert after[:len(before)] == before
    assert sorted(after) == sorted(f"TinyCode/test/{i}" for i in range(8)) and len(after) == 8


@pytest.mark.slow
def test_two_shards_merged_equal_one_run(tmp_path, tiny_model_dir, data_dir):
    (tmp_path / "whole").mkdir()
    whole = lines(sample(tmp_path / "whole", tiny_model_dir, data_dir, "--idx_list", "0,1,2,3,4"))
    shard_dir = tmp_path / "shards"
    shard_dir.mkdir()
    for shard in ("0", "1"):
        sample(shard_dir, tiny_model_dir, data_dir, "--idx_list", "0,1,2,3,4", "--num_shards", "2",
               "--shard_id", shard)
    merged_path = shard_dir / paths.completions_path("TinyCode", str(tiny_model_dir), 1.0, 24)
    completed = subprocess.run([sys.executable, "-m", "experiment.merge_shards", str(merged_path),
                                "--num_shards", "2"], cwd=shard_dir, env=ENV, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    merged = lines(merged_path)
    assert [r["id"] for r in merged] == [f"TinyCode/test/{i}" for i in range(5)]  # data order
    assert sorted(merged, key=lambda r: r["id"]) == sorted(whole, key=lambda r: r["id"])


def test_readme_checkpoint_aliases_resolve(tmp_path, monkeypatch):
    from experiment.common import local_model_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models/ckpts/grpo/X/1").mkdir(parents=True)
    (tmp_path / "rms/ckpts/X/1").mkdir(parents=True)
    assert local_model_path("ckpts/grpo/X/1") == "models/ckpts/grpo/X/1"
    assert local_model_path("ckpts/rm/X/1") == "rms/ckpts/X/1"
    assert local_model_path("ckpts/grpo/Y/1") == "ckpts/grpo/Y/1"  # nothing there: left as given
    assert local_model_path("Qwen/Qwen2.5-Coder-7B-Instruct") == "Qwen/Qwen2.5-Coder-7B-Instruct"
