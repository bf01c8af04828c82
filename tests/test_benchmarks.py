"""Every canonical solution passes its benchmark; broken versions fail; HumanEval+ and MBPP+
really run their plus inputs (tasks evalplus corrected pass HumanEval but fail HumanEval+)."""
from __future__ import annotations

import gzip
import json

import pytest
from conftest import shared_data

from data.registry import get_benchmark
from evaluation.judging import verify


def _check_all(sandbox, domain, path, programs_of):
    benchmark = get_benchmark(domain)
    problems = benchmark.load(str(path.parent), path.name)
    items = [(problem, programs_of(benchmark, problem)) for problem in problems]
    verdicts = verify(sandbox, benchmark, items)
    return problems, verdicts


def _canonical(benchmark, problem):
    return [benchmark.reference_program(problem)]


def _failures(problems, verdicts):
    return [(p.id, v[0].status, v[0].error) for p, v in zip(problems, verdicts) if v[0].reward != 1.0]


def test_humaneval_canonical_pass(sandbox):
    problems, verdicts = _check_all(sandbox, "HumanEval", shared_data("humaneval/HumanEval.jsonl.gz"), _canonical)
    assert len(problems) == 164
    assert _failures(problems, verdicts) == []


def test_humaneval_broken_fail(sandbox):
    def broken(benchmark, problem):
        program = benchmark.reference_program(problem)
        # a wrong answer, a crash and a syntax error
        return [problem.prompt + "    return None\n", problem.prompt + "    raise ValueError('no')\n",
                program + "\ndef (:\n"]
    problems, verdicts = _check_all(sandbox, "HumanEval", shared_data("humaneval/HumanEval.jsonl.gz"), broken)
    rewards = [v.reward for group in verdicts for v in group]
    assert sum(rewards) <= 2  # `return None` can be right for a task or two at most
    statuses = [group[2].status for group in verdicts]
    assert set(statuses) == {"syntax_error"}
    assert {group[1].status for group in verdicts} <= {"runtime_error"}


def test_mbpp_full_canonical_pass(sandbox):
    problems, verdicts = _check_all(sandbox, "MBPP", shared_data("mbpp/mbpp.jsonl"), _canonical)
    assert len(problems) == 974
    assert problems[0].id == "1"
    assert _failures(problems, verdicts) == []


def test_mbpp_sanitized_canonical_pass_and_broken_fail(sandbox):
    def both(benchmark, problem):
        return [benchmark.reference_program(problem), "def nothing():\n    pass\n"]
    problems, verdicts = _check_all(sandbox, "MBPP", shared_data("mbpp/sanitized-mbpp.json"), both)
    assert len(problems) == 427
    assert [p.id for p, v in zip(problems, verdicts) if v[0].reward != 1.0] == []
    assert all(v[1].reward == 0.0 and v[1].status == "runtime_error" for v in verdicts)


def test_mbppplus_canonical_pass(sandbox):
    problems, verdicts = _check_all(sandbox, "MBPPPlus", shared_data("mbppplus/MbppPlus.jsonl.gz"), _canonical)
    assert len(problems) == 378 and problems[0].id == "Mbpp/2"
    # Mbpp/599's canonical solution needs about a minute for its plus inputs here, past evalplus's 62 s
    # per input group: evalplus times it out too unless the machine is fast enough
    assert [f for f in _failures(problems, verdicts) if f[:2] != ("Mbpp/599", "timeout")] == []
    # both input groups ran: the base inputs, then the plus inputs (the assertion is not run, as in evalplus)
    assert all(group[0].tests == ["passed", "passed"] for group in verdicts)


def test_mbppplus_plus_inputs_catch_what_assertion_misses(sandbox):
    """A program that passes MBPP+'s own asserts but is wrong elsewhere fails MBPP+."""
    path = shared_data("mbppplus/MbppPlus.jsonl.gz")
    benchmark = get_benchmark("MBPPPlus")
    problems = {p.id: p for p in benchmark.load(str(path.parent), path.name)}
    problem = problems["Mbpp/3"]  # is_not_prime(n)
    assert "is_not_prime" in problem.test["assertion"]
    # hard-code the asserted cases, fall back to a wrong rule otherwise
    cheat = "def is_not_prime(n):\n    return {1: True, 2: False, 10: True, 35: True, 37: False}.get(n, False)\n"
    verdicts = verify(sandbox, benchmark, [(problem, [cheat, benchmark.reference_program(problem)])])[0]
    assert verdicts[0].tests[0] == "passed" and verdicts[0].reward == 0.0
    assert verdicts[1].reward == 1.0


def _original_humaneval():
    path = shared_data("humaneval/HumanEval.jsonl.gz")
    with gzip.open(path, "rt") as handle:
        return {r["task_id"]: r for r in map(json.loads, handle)}


def _plus_verdicts(sandbox, path, task_ids=None):
    benchmark = get_benchmark("HumanEvalPlus")
    problems = benchmark.load(str(path.parent), path.name)
    if task_ids is not None:
        problems = [p for p in problems if p.id in task_ids]
    original = _original_humaneval()
    items = [(p, [benchmark.reference_program(p), original[p.id]["prompt"] + original[p.id]["canonical_solution"]])
             for p in problems]
    return problems, verify(sandbox, benchmark, items)


def test_humanevalplus_mini_canonical_pass_and_corrected_tasks_fail(sandbox):
    problems, verdicts = _plus_verdicts(sandbox, shared_data("humanevalplus/HumanEvalPlus-Mini.jsonl.gz"))
    assert len(problems) == 164
    assert [(p.id, v[0].error) for p, v in zip(problems, verdicts) if v[0].reward != 1.0] == []
    original_fails = {p.id for p, v in zip(problems, verdicts) if v[1].reward != 1.0}
    # the original solutions of tasks evalplus corrected fail on the plus inputs
    assert {"HumanEval/22", "HumanEval/44"} <= original_fails
    # ... while they pass plain HumanEval
    he = get_benchmark("HumanEval")
    originals = _original_humaneval()
    he_problems = {p.id: p for p in he.load(str(shared_data("humaneval/HumanEval.jsonl.gz").parent))}
    items = [(he_problems[i], [originals[i]["prompt"] + originals[i]["canonical_solution"]])
             for i in sorted(original_fails)]
    assert all(v[0].reward == 1.0 for v in verify(sandbox, he, items))


@pytest.mark.slow
def test_humanevalplus_full_canonical_pass(sandbox):
    problems, verdicts = _plus_verdicts(sandbox, shared_data("humanevalplus/HumanEvalPlus.jsonl.gz"))
    assert len(problems) == 164
    assert [(p.id, v[0].error) for p, v in zip(problems, verdicts) if v[0].reward != 1.0] == []
    assert {"HumanEval/22", "HumanEval/44"} <= {p.id for p, v in zip(problems, verdicts) if v[1].reward != 1.0}


def _problem(domain, relative, task_id):
    path = shared_data(relative)
    return next(p for p in get_benchmark(domain).load(str(path.parent), path.name) if p.id == task_id)


def test_plus_benchmarks_judge_as_evalplus_does(sandbox):
    """evalplus 0.3.1's verdicts (tests/bench/bench_evalplus.py checks every task against evalplus itself):
    set-compared MBPP+ tasks take the right elements in any order or container, other tasks do not;
    float outputs within atol 1e-6 pass; neither MBPP+'s `assertion` nor HumanEval's `check` gates a
    program; an endless loop fails at its per-input limit, not at the job's timeout."""
    mbpp = get_benchmark("MBPPPlus")
    similar = _problem("MBPPPlus", "mbppplus/MbppPlus.jsonl.gz", "Mbpp/2")
    assert "== (4, 5)" in similar.test["assertion"]  # the assertion alone would reject (5, 4)
    reordered = ["def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b), reverse=True))\n",
                 "def similar_elements(a, b):\n    return sorted(set(a) & set(b), reverse=True)\n",
                 "def similar_elements(a, b):\n    return tuple(set(a) | set(b))\n"]
    dirty = _problem("MBPPPlus", "mbppplus/MbppPlus.jsonl.gz", "Mbpp/18")
    reversed_string = ("def remove_dirty_chars(string, second_string):\n"
                       "    return ''.join(c for c in string if c not in second_string)[::-1]\n")
    verdicts = verify(sandbox, mbpp, [(similar, reordered), (dirty, [reversed_string])])
    assert [v.reward for v in verdicts[0]] == [1.0, 1.0, 0.0] and verdicts[1][0].reward == 0.0
    assert verdicts[0][0].tests == ["passed", "passed"]  # the base inputs, then the plus inputs

    humaneval = get_benchmark("HumanEvalPlus")
    mad = _problem("HumanEvalPlus", "humanevalplus/HumanEvalPlus.jsonl.gz", "HumanEval/4")
    shifted = [humaneval.reference_program(mad).replace("return sum(abs(", f"return {delta} + sum(abs(")
               for delta in ("1e-9", "1e-3")]
    cyclic = _problem("HumanEvalPlus", "humanevalplus/HumanEvalPlus.jsonl.gz", "HumanEval/38")
    program = humaneval.reference_program(cyclic)
    broken_encoder = program.replace("def encode_cyclic(s: str):", "def encode_cyclic(s: str):\n    return s", 1)
    multiply = _problem("HumanEvalPlus", "humanevalplus/HumanEvalPlus.jsonl.gz", "HumanEval/75")
    endless = multiply.prompt + "    while True:\n        pass\n"
    verdicts = verify(sandbox, humaneval, [(mad, shifted), (cyclic, [broken_encoder]), (multiply, [endless])])
    assert [v.reward for v in verdicts[0]] == [1.0, 0.0]
    assert verdicts[1][0].reward == 1.0  # HumanEval's check (which calls encode_cyclic) is not run
    assert verdicts[2][0].reward == 0.0 and verdicts[2][0].status == "timeout" and verdicts[2][0].time < 20
