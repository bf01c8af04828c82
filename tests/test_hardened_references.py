"""Every reference solution of every benchmark we ship or read from ../shared/data passes the hardened
judge of training rewards, with the same reward as under the official judge: honest programs never lose
reward to it. (BigCodeBench's real tasks: tests/test_bigcodebench.py's environment, see the sample below.)"""
from __future__ import annotations

import json

import pytest
from conftest import FIXTURES, shared_data

from data.registry import get_benchmark
from data.tinycode import generate
from evaluation.judging import verify


def _compare(sandbox, domain, directory, file):
    benchmark = get_benchmark(domain)
    problems = benchmark.load(str(directory), file)  # file None: the directory's own layout
    items = []
    for problem in problems:
        try:
            items.append((problem, [benchmark.reference_program(problem)]))
        except (ValueError, KeyError):  # no reference in the data (some APPS problems)
            continue
    official = verify(sandbox, benchmark, items)
    hardened = verify(sandbox, benchmark, items, hardened=True)
    differ = [(p.id, o[0].status, h[0].status, h[0].error) for (p, _), o, h in zip(items, official, hardened)
              if (o[0].reward, o[0].status) != (h[0].reward, h[0].status)]
    return len(items), differ


@pytest.mark.parametrize("domain,relative", [
    ("HumanEval", "humaneval/HumanEval.jsonl.gz"),
    ("HumanEvalPlus", "humanevalplus/HumanEvalPlus-Mini.jsonl.gz"),
    ("MBPP", "mbpp/mbpp.jsonl"),
    ("MBPP", "mbpp/sanitized-mbpp.json"),
    ("APPS", "apps/coderl_train_sample"),
])
def test_shared_references_pass_hardened(sandbox, domain, relative):
    path = shared_data(relative)
    count, differ = _compare(sandbox, domain, *((path, None) if path.is_dir() else (path.parent, path.name)))
    assert count > 0 and differ == []


@pytest.mark.slow
@pytest.mark.parametrize("domain,relative", [
    ("HumanEvalPlus", "humanevalplus/HumanEvalPlus.jsonl.gz"),
    ("MBPPPlus", "mbppplus/MbppPlus.jsonl.gz"),
])
def test_plus_references_pass_hardened(sandbox, domain, relative):
    path = shared_data(relative)
    count, differ = _compare(sandbox, domain, path.parent, path.name)
    assert count > 0 and differ == []


@pytest.mark.parametrize("domain,file", [("APPS", "apps_tiny.jsonl"), ("DS1000", "ds1000_tiny.jsonl"),
                                         ("BigCodeBench", "bigcodebench_tiny.jsonl")])
def test_fixture_references_pass_hardened(sandbox, domain, file):
    count, differ = _compare(sandbox, domain, FIXTURES, file)
    assert count > 0 and differ == []


def test_tinycode_references_pass_hardened(sandbox, tmp_path):
    train, test = generate(seed=0, n_train=100, n_test=100)
    path = tmp_path / "tinycode.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in train + test))
    count, differ = _compare(sandbox, "TinyCode", tmp_path, path.name)
    assert count == 200 and differ == []


@pytest.mark.slow
def test_bigcodebench_references_pass_hardened(sandbox):
    """Every 7th BigCodeBench task whose libraries this interpreter has (100 here, about 2 min): the
    hardened judge gives each reference the official reward (last run: 0 of 100 differ)."""
    from data.build_env import missing_libraries

    benchmark = get_benchmark("BigCodeBench")
    path = shared_data("bigcodebench/BigCodeBench.jsonl.gz")
    problems = benchmark.load(str(path.parent), path.name)
    missing = set(missing_libraries({name for p in problems for name in benchmark.libraries(p)}))
    sample = [p for p in problems if not missing.intersection(benchmark.libraries(p))][::7]
    items = [(p, [benchmark.reference_program(p)]) for p in sample]
    official = verify(sandbox, benchmark, items)
    hardened = verify(sandbox, benchmark, items, hardened=True)
    assert [(p.id, h[0].error) for p, o, h in zip(sample, official, hardened) if o[0].reward != h[0].reward] == []
