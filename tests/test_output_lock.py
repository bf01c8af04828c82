"""One writer per output and one line per id: the output lock (a second holder is refused naming the pid;
a killed holder leaves nothing that blocks), readers that refuse an id twice, merge_shards on overlapping
shards, and two `experiment.sample` runs on one output at once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from data.jsonl import (
    DataError,
    JsonlAppender,
    OutputBusy,
    output_lock,
    read_done,
    read_unique,
    write_json,
    write_jsonl,
)
from experiment import paths
from tests.conftest import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

# holds the lock of argv[1], prints "locked", then sleeps; with argv[2] == "fork" a forked child (its fork
# hooks run) prints "child" and sleeps too
HOLDER = textwrap.dedent("""
    import os, sys, time
    from data.jsonl import output_lock
    output_lock(sys.argv[1]).acquire()
    if sys.argv[2:] == ["fork"] and os.fork() == 0:
        os.write(1, b"child\\n")  # one write each: the two lines never interleave
        time.sleep(120)
        os._exit(0)
    os.write(1, b"locked\\n")
    time.sleep(120)
""")


def start_holder(path, *extra):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), *extra], env=ENV, stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    expected = {"locked", "child"} if extra == ("fork",) else {"locked"}
    assert {holder.stdout.readline().strip() for _ in expected} == expected
    return holder


def stop_group(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


# -- the lock -------------------------------------------------------------------------------------------------

def test_second_locker_is_refused_naming_the_holder_pid(tmp_path):
    output = tmp_path / "out.jsonl"
    holder = start_holder(output)
    try:
        with pytest.raises(OutputBusy) as refused:
            output_lock(str(output)).acquire()
        message = str(refused.value)
        assert message.startswith(f"{output}: in use by another run (pid {holder.pid} on ")
        assert "\n" not in message
        with pytest.raises(OutputBusy, match=f"pid {holder.pid} "):  # an appender is refused as well
            JsonlAppender(str(output))
        assert not output.exists()  # the refused appender created nothing
    finally:
        stop_group(holder)


def test_lock_of_a_killed_run_does_not_block(tmp_path):
    output = tmp_path / "out.jsonl"
    holder = start_holder(output)
    with pytest.raises(OutputBusy):
        output_lock(str(output)).acquire()
    stop_group(holder)  # SIGKILL: no cleanup ran
    assert (tmp_path / "out.jsonl.lock").exists()  # the stale file stays and is harmless
    with output_lock(str(output)):
        record = json.loads((tmp_path / "out.jsonl.lock").read_text())
        assert record["pid"] == os.getpid()


def test_forked_child_does_not_keep_a_dead_parents_lock(tmp_path):
    output = tmp_path / "out.jsonl"
    holder = start_holder(output, "fork")  # its forked child lives on after the parent is killed
    try:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        with output_lock(str(output)):
            pass
    finally:
        stop_group(holder)


def test_lock_is_reentrant_in_one_process_and_released_after(tmp_path):
    output = str(tmp_path / "out.jsonl")
    with output_lock(output):
        with JsonlAppender(output) as out:  # the stage holds it, then its appender takes it again
            out.write({"id": "a"})
        probe = subprocess.run([sys.executable, "-c", HOLDER, output], env=ENV, capture_output=True, text=True,
                               timeout=60)
        assert probe.returncode != 0 and "OutputBusy" in probe.stderr  # still held after the appender closed
    holder = start_holder(output)  # released: another process takes it
    stop_group(holder)


# -- one line per id ---------------------------------------------------------------------------------------

def test_duplicate_id_names_file_and_both_lines(tmp_path):
    path = tmp_path / "completions.jsonl"
    path.write_text("".join(json.dumps({"id": pid}) + "\n" for pid in ("a", "b", "c", "a")))
    with pytest.raises(DataError) as refused:
        list(read_unique(str(path)))
    assert str(refused.value) == f"{path}:4: id 'a' appears twice (lines 1 and 4)"
    with pytest.raises(DataError, match="appears twice"):  # resume refuses too, instead of reading 3 of 4
        read_done(str(path), {}, ())
    with pytest.raises(DataError, match=":1: missing field 'missing'"):
        list(read_unique(str(path), key="missing"))


def test_process_gen_data_refuses_a_doubled_completions_file(tmp_path):
    from tests.test_process_gen_data import BACKEND, write_completions

    path = write_completions(tmp_path)
    first = path.read_text().splitlines()[0]
    with open(path, "a") as handle:  # what two runs appending to one file leave
        handle.write(first + "\n")
    count = len(path.read_text().splitlines())
    done = subprocess.run([sys.executable, "-m", "experiment.process_gen_data", "--domain", "TinyCode", "--backend",
                           BACKEND, "--temperature", "0.7", "--max_tokens", "256", "--mode", "grpo"],
                          cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 2
    relative = paths.completions_path("TinyCode", BACKEND, 0.7, 256)
    assert done.stderr.strip().splitlines()[-1] == \
        f"error: {relative}:{count}: id 'spread_best_accepted' appears twice (lines 1 and {count})"


def test_merge_refuses_overlapping_shards_naming_both(tmp_path, data_dir):
    base = str(tmp_path / "out.jsonl")
    shards = [paths.shard_path(base, shard_id, 2) for shard_id in range(2)]
    args = {"domain": "TinyCode", "directory": str(data_dir), "file": "test.jsonl", "num_shards": 2}
    write_jsonl(shards[0], [{"id": "TinyCode/test/0"}, {"id": "TinyCode/test/2"}])
    write_jsonl(shards[1], [{"id": "TinyCode/test/1"}, {"id": "TinyCode/test/2"}])  # a shard re-run with other ids
    for shard_id, shard in enumerate(shards):
        write_json(shard + ".args.json", {**args, "shard_id": shard_id})
    done = subprocess.run([sys.executable, "-m", "experiment.merge_shards", base, "--num_shards", "2"],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {shards[1]}:2: id 'TinyCode/test/2' appears twice (also at {shards[0]}:2)"
    assert not os.path.exists(base)
    holder = start_holder(shards[0])  # a shard still being written is not merged (nor truncated)
    try:
        write_jsonl(shards[1], [{"id": "TinyCode/test/1"}])
        busy = subprocess.run([sys.executable, "-m", "experiment.merge_shards", base, "--num_shards", "2"],
                              capture_output=True, text=True, env=ENV, timeout=120)
        assert busy.returncode == 2 and f"{shards[0]}: in use by another run (pid {holder.pid} " in busy.stderr
    finally:
        stop_group(holder)


# -- two runs of one stage on one output --------------------------------------------------------------------

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from data.tinycode import generate

    _, test = generate(seed=0, n_train=0, n_test=8)
    path = tmp_path_factory.mktemp("tinycode")
    write_jsonl(str(path / "test.jsonl"), test)
    return path


def test_two_sample_runs_on_one_output(tmp_path, tiny_model_dir, data_dir):
    command = [sys.executable, "-m", "experiment.sample", "--domain", "TinyCode", "--directory", str(data_dir),
               "--file", "test.jsonl", "--backend", str(tiny_model_dir), "--n", "4", "--max_tokens", "24",
               "--temperature", "1.0", "--workers", "2", "--chunk_size", "1"]
    output = tmp_path / paths.completions_path("TinyCode", str(tiny_model_dir), 1.0, 24)
    lock_file = output.parent / (output.name + ".lock")
    first = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (lock_file.exists() and f'"pid": {first.pid}' in lock_file.read_text()):
            assert first.poll() is None and time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.05)
        started = time.monotonic()
        second = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first run ended before the second was refused: no overlap tested"
        assert second.returncode == 2
        assert second.stderr.strip().splitlines()[-1].startswith(
            f"error: {paths.completions_path('TinyCode', str(tiny_model_dir), 1.0, 24)}: in use by another run "
            f"(pid {first.pid} on ")
        assert time.monotonic() - started < 60  # at once: no model loaded, nothing sampled
        _, stderr = first.communicate(timeout=300)
        assert first.returncode == 0, stderr[-2000:]
    finally:
        stop_group(first)
    ids = [json.loads(line)["id"] for line in open(output)]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 8
    rerun = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]  # the lock went with the run: a rerun resumes
    assert len(open(output).readlines()) == 8
