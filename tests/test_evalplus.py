"""HumanEval+ / MBPP+ judging (data/evalplus*.py): the verdicts of a few known programs, a judge that a
program's own names cannot reach, and the reference stream's layout (each input's output once, the
times once, in the trailer)."""
from __future__ import annotations

import gzip
import json
import os
import pickle
import struct

from conftest import shared_data

from data import evalplus
from data.registry import get_benchmark
from evaluation.judging import verify

# Rebinds, in the program's namespace, builtins the judge uses (and the names a wrapper would reach for):
# a judge that looked them up there would fail with this error instead of judging the program.
REBIND_BUILTINS = """
def _rebound(*args, **kwargs):
    raise RuntimeError("the judge called the program's rebinding of a builtin")
sum = max = min = abs = all = any = isinstance = type = globals = dict = exec = compile = _rebound
"""


def _problems(domain, relative, task_ids):
    path = shared_data(relative)
    problems = {p.id: p for p in get_benchmark(domain).load(str(path.parent), path.name) if p.id in task_ids}
    return [problems[task_id] for task_id in task_ids]


def _signature(verdict):
    return verdict.status, verdict.reward, list(verdict.tests)


def test_known_humanevalplus_programs_keep_their_verdicts(sandbox):
    """Canonical solutions pass both input groups; a wrong answer fails at the base inputs; the original
    HumanEval solution of a task evalplus corrected passes the base inputs and fails the plus inputs."""
    benchmark = get_benchmark("HumanEvalPlus")
    has_close, parse_nested = _problems("HumanEvalPlus", "humanevalplus/HumanEvalPlus.jsonl.gz",
                                        ["HumanEval/0", "HumanEval/6"])
    with gzip.open(shared_data("humaneval/HumanEval.jsonl.gz"), "rt") as handle:
        original = {r["task_id"]: r for r in map(json.loads, handle)}["HumanEval/22"]
    filter_integers = _problems("HumanEvalPlus", "humanevalplus/HumanEvalPlus.jsonl.gz", ["HumanEval/22"])[0]
    canonical = benchmark.reference_program(has_close)
    off_by_one = canonical.replace("< threshold", "<= threshold")
    items = [(has_close, [canonical, has_close.prompt + "    return None\n", off_by_one]),
             (parse_nested, [benchmark.reference_program(parse_nested), parse_nested.prompt + "    return [0]\n"]),
             (filter_integers, [benchmark.reference_program(filter_integers),
                                original["prompt"] + original["canonical_solution"]])]
    verdicts = verify(sandbox, benchmark, items)
    assert [_signature(v) for v in verdicts[0]] == [("passed", 1.0, ["passed", "passed"]),
                                                    ("failed", 0.0, ["failed"]), ("failed", 0.0, ["passed", "failed"])]
    assert [_signature(v) for v in verdicts[1]] == [("passed", 1.0, ["passed", "passed"]), ("failed", 0.0, ["failed"])]
    assert [_signature(v) for v in verdicts[2]] == [("passed", 1.0, ["passed", "passed"]),
                                                    ("failed", 0.0, ["passed", "failed"])]


def test_a_program_rebinding_builtins_does_not_reach_the_judge(sandbox):
    """Mbpp/126's canonical solution defines `sum`; a program may rebind any builtin, `globals` and `exec`
    included: its verdict is still the one its function earns."""
    mbpp = _problems("MBPPPlus", "mbppplus/MbppPlus.jsonl.gz", ["Mbpp/126"])[0]
    has_close = _problems("HumanEvalPlus", "humanevalplus/HumanEvalPlus.jsonl.gz", ["HumanEval/0"])[0]
    humaneval = get_benchmark("HumanEvalPlus")
    canonical = humaneval.reference_program(has_close)
    wrong = has_close.prompt + "    return True\n"
    mbpp_verdicts = verify(sandbox, get_benchmark("MBPPPlus"),
                           [(mbpp, [get_benchmark("MBPPPlus").reference_program(mbpp)])])[0]
    verdicts = verify(sandbox, humaneval, [(has_close, [canonical + REBIND_BUILTINS, wrong + REBIND_BUILTINS])])[0]
    assert _signature(mbpp_verdicts[0]) == ("passed", 1.0, ["passed", "passed"])
    assert _signature(verdicts[0]) == ("passed", 1.0, ["passed", "passed"])
    assert _signature(verdicts[1]) == ("failed", 0.0, ["failed"])


def test_reference_stream_holds_each_output_once_then_the_times(sandbox):
    problem = _problems("HumanEvalPlus", "humanevalplus/HumanEvalPlus.jsonl.gz", ["HumanEval/0"])[0]
    benchmark = get_benchmark("HumanEvalPlus")
    store = os.path.join(sandbox.shared_dir, "test-reference-stream")
    os.mkdir(store, 0o700)
    result = sandbox.submit(benchmark.prepare(problem, store)).result()
    assert result.passed, result.error
    count = len(evalplus.inputs(problem))
    with open(os.path.join(store, "reference.pkl"), "rb") as stream:
        outputs = [pickle.load(stream) for _ in range(count)]
        offset = stream.tell()
        times = pickle.load(stream)
        assert struct.unpack("<Q", stream.read(8)) == (offset,) and stream.read() == b""
    assert all(type(output) is bool for output in outputs)  # the outputs alone, no (seconds, output) pairs
    assert outputs[:3] == [True, False, True]  # HumanEval/0's first base inputs
    assert len(times) == count and all(isinstance(t, float) and t >= 0 for t in times)


def test_program_jobs_share_one_judge_source_the_worker_compiles_once(tmp_path):
    """Every program's job carries the same harness sources, and none compiles in the child: the worker's
    code cache compiles each source once."""
    problem = get_benchmark("HumanEvalPlus").problem({
        "task_id": "HumanEval/x", "prompt": "def f(x):\n", "canonical_solution": "    return x\n",
        "entry_point": "f", "base_input": [[1]], "plus_input": [[2]], "atol": 0, "contract": "", "test": ""})
    reference = type("Prepared", (), {"passed": True, "error": None})()
    jobs = [evalplus.plus_job(program, problem, reference, "humaneval", str(tmp_path), None)
            for program in ("def f(x):\n    return x\n", "def f(x):\n    return 0\n")]
    assert jobs[0].harness == jobs[1].harness and len(jobs[0].harness) == 2
    assert all(a is b for a, b in zip(jobs[0].harness, jobs[1].harness))  # built once in this process
    assert not any("compile(" in source for source in jobs[0].harness)
    with open(os.path.join(os.path.dirname(evalplus.__file__), "evalplus_harness.py"), encoding="utf-8") as handle:
        assert jobs[0].harness[1] == handle.read()
