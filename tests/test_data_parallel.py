"""The data-parallel backend when a replica fails (models/data_parallel.py), on CPU:
replicas are real spawned processes running fake engines that answer, fail, die, hang, answer late or
answer another call. A failure stops the run with one `EngineError` naming the replica; an answer is
never taken for another call's, and `evaluation.eval` writes nothing for the problems of a failed call."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from models.data_parallel import DataParallelBackend, serve
from models.errors import EngineError
from models.generation import Generation, PromptOutput


def tag(prompt: str) -> str:
    return hashlib.sha1(prompt.encode()).hexdigest()[:12]


class FakeEngine:
    """Answers each prompt with a program naming its prompt's hash. Prompts steer it: `slow...` answers
    after a second, `fail` raises, `die` exits with code 7, `hang` never answers. On the replica whose
    CUDA_VISIBLE_DEVICES is `fail_gpus` the `fail_call`-th call raises."""

    def __init__(self, fail_gpus: str | None = None, fail_call: int = 0):
        self.fail = fail_gpus is not None and os.environ.get("CUDA_VISIBLE_DEVICES") == fail_gpus
        self.fail_call, self.calls = fail_call, 0

    def generate(self, prompts, n=1, temperature=0.7, max_tokens=16, stop=None, seed=None):
        self.calls += 1
        if self.fail and self.calls == self.fail_call:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        for prompt in prompts:
            if prompt.startswith("slow"):
                time.sleep(1.0)
            if prompt == "fail":
                raise RuntimeError("CUDA out of memory")
            if prompt == "die":
                os._exit(7)
            if prompt == "hang":
                time.sleep(600)
        return [PromptOutput(1, [Generation(f"    return None  # {tag(p)}\n", 1, "stop")] * n) for p in prompts]


def fake_replica(connection, model, engine, options):
    connection.send(("ready", 0, None))
    serve(connection, FakeEngine(**options))


def unready_replica(connection, model, engine, options):
    connection.send(("error", 0, "OSError: no such model: missing"))


def stale_replica(connection, model, engine, options):
    """Sends an answer to the previous call before the right one (a reply left from an earlier call)."""
    connection.send(("ready", 0, None))
    engine_ = FakeEngine()
    while (request := connection.recv()) is not None:
        call, arguments = request
        connection.send(("ok", call - 1, [PromptOutput(1, [Generation("stale", 1, "stop")])] * 5))
        connection.send(("ok", call, engine_.generate(**arguments)))


def orphaning_replica(connection, model, engine, options):
    """Dies at its first call while a child it started (as vLLM starts its engine) keeps the pipe open."""
    connection.send(("ready", 0, None))
    connection.recv()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], pass_fds=(connection.fileno(),))
    with open(options["pid_file"], "w") as handle:
        handle.write(str(child.pid))
    os._exit(9)


def texts(outputs):
    return [output.generations[0].text for output in outputs]


@pytest.fixture
def replicas():
    made = []

    def build(count=2, replica_main=fake_replica, **options):
        backend = DataParallelBackend("unused", count, engine="fake", replica_main=replica_main, **options)
        made.append(backend)
        return backend

    yield build
    for backend in made:
        backend.close(grace=2.0)


def test_answers_come_back_in_prompt_order_when_the_first_replica_is_slower(replicas):
    backend = replicas()
    prompts = ["slow-a", "b", "c"]
    assert texts(backend.generate(prompts)) == [f"    return None  # {tag(p)}\n" for p in prompts]
    assert len(backend.generate(["one"])) == 1  # fewer prompts than replicas


def test_an_error_reads_every_answer_and_stops_every_later_call(replicas):
    """The reproduction: replica 0 fails at once while replica 1 is still sampling. Before, the call
    raised at replica 0 and the next call read replica 1's answer as its own (asked q0, q1; got q0, p1)."""
    backend = replicas()
    with pytest.raises(EngineError) as error:
        backend.generate(["fail", "slow-p1"])
    assert str(error.value) == "data-parallel replica 0 (GPUs all): RuntimeError: CUDA out of memory"
    with pytest.raises(EngineError, match="replica 0"):  # no answers of the failed call, ever
        backend.generate(["q0", "q1"])


def test_answers_to_another_call_are_never_taken(replicas):
    backend = replicas(replica_main=stale_replica)
    prompts = ["a", "b", "c", "d"]
    assert texts(backend.generate(prompts)) == [f"    return None  # {tag(p)}\n" for p in prompts]


def test_a_replica_that_dies_is_named_with_its_exit_code(replicas):
    backend = replicas()
    with pytest.raises(EngineError, match=r"^data-parallel replica 1 \(GPUs all\): exited with code 7$"):
        backend.generate(["x", "die"])


def test_a_replica_that_dies_while_its_pipe_stays_open_is_found(replicas, tmp_path):
    pid_file = tmp_path / "child.pid"
    backend = replicas(1, replica_main=orphaning_replica, pid_file=str(pid_file))
    start = time.monotonic()
    try:
        with pytest.raises(EngineError, match=r"replica 0 .*exited with code 9"):
            backend.generate(["x"])
        assert time.monotonic() - start < 30  # found by its exit, not by the call timeout
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_replica_that_hangs_times_out_and_is_stopped(replicas):
    backend = replicas(call_timeout=2.0)
    process = backend._replicas[0].process
    start = time.monotonic()
    with pytest.raises(EngineError, match=r"^data-parallel replica 0 \(GPUs all\): no answer within 2 s \(call 1\)$"):
        backend.generate(["hang", "x"])
    assert time.monotonic() - start < 20 and not process.is_alive()


def test_a_replica_that_cannot_start_is_named(replicas):
    with pytest.raises(EngineError, match=r"^data-parallel replica 0 .*: OSError: no such model: missing "
                                          r"\(1 other replica\(s\) failed too\)$"):
        replicas(replica_main=unready_replica)


def test_eval_stops_at_a_failed_replica_and_writes_only_whole_calls(tmp_path, monkeypatch, tiny_model_dir, capsys):
    """Four problems, two per call, two replicas on "GPUs" 0 and 1; replica 1 fails at its second call.
    The first call's two problems are written with their own programs; then exit 1 with one error
    line, and nothing for the problems of the failed call (no per-problem retry, no counted failures)."""
    from data.jsonl import read_jsonl, write_jsonl
    from data.registry import get_benchmark
    from data.tinycode import generate
    from evaluation import eval as eval_stage
    from prompts import format_prompt

    _, test = generate(seed=0, n_train=0, n_test=4)
    write_jsonl(str(tmp_path / "test.jsonl"), test)

    def backend(args, placement=None):
        return DataParallelBackend(str(tiny_model_dir), 2, engine="fake", gpu_groups=[["0"], ["1"]],
                                   replica_main=fake_replica, fail_gpus="1", fail_call=2)

    monkeypatch.setattr(eval_stage, "backend_from_args", backend)
    monkeypatch.chdir(tmp_path)
    code = eval_stage.main(["--domain", "TinyCode", "--directory", str(tmp_path), "--file", "test.jsonl",
                            "--backend", "fake", "--engine", "hf", "--do_not_format", "--n", "1", "--workers", "2",
                            "--chunk_size", "2", "--output_dir", str(tmp_path / "eval")])
    assert code == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == ("error: data-parallel replica 1 (GPUs 1): RuntimeError: CUDA error: an illegal memory access "
                     "was encountered")
    [completions] = (tmp_path / "eval").glob("*_completions.jsonl")
    written = [record for _, record in read_jsonl(str(completions))]
    problems = get_benchmark("TinyCode").load(str(tmp_path), "test.jsonl")
    assert [record["id"] for record in written] == [problem.id for problem in problems[:2]]
    for record, problem in zip(written, problems):
        assert record["init_succeeded"] and tag(format_prompt(problem, None, do_not_format=True)) in \
            record["completions"][0]


class FailingPolicy:
    """Answers the first `good_calls` calls, then fails as a dead replica does."""

    tokenizer = None
    batches_seeded_prompts = True

    def __init__(self, good_calls: int):
        self.calls_left = good_calls

    def generate(self, prompts, n=1, temperature=0.7, max_tokens=16, stop=None, seed=None):
        if self.calls_left == 0:
            raise EngineError("data-parallel replica 3 (GPUs 3): exited with code -9")
        self.calls_left -= 1
        return [PromptOutput(1, [Generation("    return None\n", 1, "stop")] * n) for _ in prompts]


def test_sample_stops_at_an_engine_error_keeping_the_chunks_before(tmp_path, monkeypatch, capsys):
    from data.jsonl import read_jsonl, write_jsonl
    from data.tinycode import generate
    from experiment import sample

    _, test = generate(seed=0, n_train=0, n_test=3)
    write_jsonl(str(tmp_path / "test.jsonl"), test)
    monkeypatch.setattr(sample, "backend_from_args", lambda args: FailingPolicy(good_calls=1))
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "out.jsonl"
    code = sample.main(["--domain", "TinyCode", "--directory", str(tmp_path), "--file", "test.jsonl", "--backend",
                        "fake", "--engine", "hf", "--do_not_format", "--n", "2", "--workers", "2", "--chunk_size", "1",
                        "--output", str(output)])
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        "error: data-parallel replica 3 (GPUs 3): exited with code -9"
    written = [record for _, record in read_jsonl(str(output))]
    assert [record["id"] for record in written] == ["TinyCode/test/0"]  # judged and written before the stop
    assert [c["status"] for c in written[0]["result"]["completions"]] == ["failed", "failed"]
