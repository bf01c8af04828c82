"""TinyCode: the generator is deterministic, its splits hold out what they claim, every reference
passes its asserts in the sandbox (whose expected values an independent interpreter agrees with),
and near misses fail."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import data.tinycode as tinycode
from data.jsonl import DataError, write_jsonl
from data.registry import get_benchmark
from evaluation.judging import verify

REPO = Path(__file__).resolve().parent.parent
SEED, N_TRAIN, N_TEST = 3, 200, 50


def _cli(directory: Path, seed: int = SEED) -> None:
    command = [sys.executable, "-m", "data.tinycode", "--seed", str(seed), "--n_train", str(N_TRAIN),
               "--n_test", str(N_TEST), "--directory", str(directory)]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "1"})


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tinycode") / "TinyCode"
    _cli(directory)
    return directory


@pytest.fixture(scope="module")
def splits() -> tuple[list[dict], list[dict]]:
    return tinycode.generate(SEED, N_TRAIN, N_TEST)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- files and determinism ------------------------------------------------------------------------


def test_cli_is_deterministic_and_matches_generate(written, splits, tmp_path):
    # `splits` came from this process, the files from another with another hash seed: same bytes
    for name, records in (("train.jsonl", splits[0]), ("test.jsonl", splits[1])):
        write_jsonl(str(tmp_path / name), records)
        assert (written / name).read_bytes() == (tmp_path / name).read_bytes()
        args = json.loads((written / f"{name}.args.json").read_text())
        assert (args["seed"], args["n_train"], args["n_test"]) == (SEED, N_TRAIN, N_TEST)
    assert sorted(path.name for path in written.iterdir()) == [
        "test.jsonl", "test.jsonl.args.json", "train.jsonl", "train.jsonl.args.json"]  # no temporary file left
    other_train, _ = tinycode.generate(SEED + 1, 20, 5)
    assert [r["prompt"] for r in other_train] != [r["prompt"] for r in splits[0][:20]]


def test_records_are_self_describing(splits):
    train, test = splits
    assert len(train) == N_TRAIN and len(test) == N_TEST
    assert [r["task_id"] for r in train] == [f"TinyCode/train/{i}" for i in range(N_TRAIN)]
    assert [r["task_id"] for r in test] == [f"TinyCode/test/{i}" for i in range(N_TEST)]
    prompts = [r["prompt"] for r in train + test]
    assert len(set(prompts)) == len(prompts)
    for record in train + test:
        name, signature = record["entry_point"], record["signature"]
        assert signature.startswith(f"def {name}(") and signature.endswith("):")
        assert f"`{signature[4:-1]}`" in record["prompt"]
        assert record["solution"].startswith(signature + "\n")
        lines = record["solution"].splitlines()
        assert 5 <= len(lines) <= 10
        assert tinycode.MIN_ASSERTS <= len(record["tests"]) <= tinycode.MAX_ASSERTS
        assert all(test.startswith(f"assert {name}(") for test in record["tests"])
        program = record["program"]
        assert record["template"] == f"{program['source']}|{'>'.join(s[0] for s in program['steps'])}|" \
                                     f"{program['reducer']}"


def test_prompt_vocabulary_is_small(splits):
    words = set()
    for record in splits[0] + splits[1]:
        text = record["prompt"].replace(f"`{record['signature'][4:-1]}`", "")
        stripped = (word.strip(".,()") for word in text.split())
        words.update(word for word in stripped if word and not word.lstrip("-").isdigit())
    assert len(words) < 70, sorted(words)


# -- the held-out design --------------------------------------------------------------------------


def _blocks(record: dict) -> list[str]:
    program = record["program"]
    return ([f"source:{program['source']}"] + [f"step:{kind}" for kind, _ in program["steps"]]
            + [f"reducer:{program['reducer']}"])


def test_test_split_recombines_blocks_seen_in_train(splits):
    train, test = splits
    values, pairs = tinycode.held_out(SEED)
    held = {tuple(pair) for pair in pairs}
    train_pairs = {pair for record in train for pair in tinycode.block_pairs(_blocks(record))}
    assert not train_pairs & held  # held-out compositions really are absent from train
    assert all(record["held_out_pairs"] == [] for record in train)
    train_blocks = {block for record in train for block in _blocks(record)}
    for record in test:
        recorded = {tuple(pair) for pair in record["held_out_pairs"]}
        assert recorded and recorded <= held
        assert recorded == set(tinycode.block_pairs(_blocks(record))) & held
        assert set(_blocks(record)) <= train_blocks  # every building block was seen in training
    assert not {r["template"] for r in train} & {r["template"] for r in test}
    # held-out parameter values never reach train
    for record in train:
        for kind, param in record["program"]["steps"]:
            assert param not in values.get(kind, ())
    test_params = {(kind, param) for r in test for kind, param in r["program"]["steps"]}
    assert any(param in values.get(kind, ()) for kind, param in test_params)


def test_every_block_is_trained_and_longer_pipelines_are_held_out(splits):
    train, test = splits
    blocks = {block for record in train for block in _blocks(record)}
    expected = ({f"source:{s}" for s in tinycode.SOURCES} | {f"reducer:{r}" for r in tinycode.REDUCERS}
                | {f"step:{k}" for k in [*tinycode.FILTERS, *tinycode.MAPS]})
    assert blocks == expected
    assert {len(record["program"]["steps"]) for record in train} == {1, 2, 3}
    assert {len(record["program"]["steps"]) for record in test} == {1, 2, 3, 4}


# -- the asserts ----------------------------------------------------------------------------------

FILTERS = {"gt": lambda x, a: x > a, "lt": lambda x, a: x < a, "even": lambda x, a: x % 2 == 0,
           "odd": lambda x, a: x % 2 != 0, "div": lambda x, a: x % a == 0, "ne": lambda x, a: x != a,
           "pos": lambda x, a: x > 0, "neg": lambda x, a: x < 0}
MAPS = {"mul": lambda x, a: x * a, "add": lambda x, a: x + a, "sub": lambda x, a: x - a,
        "sq": lambda x, a: x ** 2, "abs": lambda x, a: abs(x), "mod": lambda x, a: x % a,
        "negate": lambda x, a: -x}


def _interpret(program: dict, value):
    """The task's meaning, written independently of the generator's code templates."""
    items = {"list": lambda: list(value), "range": lambda: list(range(1, value + 1)),
             "digits": lambda: [int(c) for c in str(value)]}[program["source"]]()
    for kind, param in program["steps"]:
        if kind in FILTERS:
            items = [x for x in items if FILTERS[kind](x, param)]
        else:
            items = [MAPS[kind](x, param) for x in items]
    reducer = program["reducer"]
    if reducer in ("sum", "count", "list"):
        return {"sum": sum, "count": len, "list": list}[reducer](items)
    if not items:
        return None
    return {"max": max, "min": min, "first": lambda v: v[0], "last": lambda v: v[-1]}[reducer](items)


def _assert_parts(test: str):
    compare = ast.parse(test).body[0].test
    return ast.literal_eval(compare.left.args[0]), ast.literal_eval(compare.comparators[0])


def test_expected_values_agree_with_an_independent_interpreter(splits):
    for record in splits[0] + splits[1]:
        for test in record["tests"]:
            argument, expected = _assert_parts(test)
            assert _interpret(record["program"], argument) == expected, (record["task_id"], test)


def test_asserts_cover_edge_cases(splits):
    for record in splits[0] + splits[1]:
        arguments = [_assert_parts(test)[0] for test in record["tests"]]
        source, reducer = record["program"]["source"], record["program"]["reducer"]
        assert {"list": [], "range": 0, "digits": 0}[source] in arguments
        outputs = [_assert_parts(test)[1] for test in record["tests"]]
        if reducer in ("max", "min", "first", "last") and source == "list":
            assert None in outputs  # the "or None if there are none" case is checked
        if source == "list":
            assert any(isinstance(a, list) and any(x < 0 for x in a) for a in arguments), record["task_id"]


# -- the benchmark --------------------------------------------------------------------------------


def test_benchmark_reads_the_files(written):
    benchmark = get_benchmark("TinyCode")
    assert benchmark.files[0] == "test.jsonl" and benchmark.binary is False
    assert benchmark.resolve(str(written)).endswith("test.jsonl")
    problems = benchmark.load(str(written))
    train = benchmark.load(str(written), "train.jsonl")
    assert len(problems) == N_TEST and len(train) == N_TRAIN
    record = _records(written / "test.jsonl")[0]
    problem = problems[0]
    assert (problem.id, problem.domain, problem.prompt) == (record["task_id"], "TinyCode", record["prompt"])
    assert problem.init_state == record["signature"] + "\n"
    assert problem.test == {"tests": record["tests"], "entry_point": record["entry_point"]}
    assert benchmark.reference_program(problem) == record["solution"]
    assert problem.meta["template"] == record["template"]
    job = benchmark.job(problem, "pass")
    assert list(job.tests) == record["tests"] and job.timeout == 5.0 and job.guard == "strict"
    with pytest.raises(DataError, match="python -m data.tinycode"):
        benchmark.load(str(written / "missing"))


def _near_miss_programs(record: dict) -> list[str]:
    program = record["program"]
    comp = tinycode.Composition(program["source"], tuple(tinycode.Step(*step) for step in program["steps"]),
                                program["reducer"])
    dropped = replace(comp, steps=comp.steps[1:])
    other = replace(comp, reducer="list" if comp.reducer != "list" else "sum")
    return [tinycode.program(dropped, name=comp.name), tinycode.program(other, name=comp.name)]


def test_references_pass_and_wrong_programs_fail(sandbox, written):
    benchmark = get_benchmark("TinyCode")
    records = {r["task_id"]: r for name in ("train.jsonl", "test.jsonl") for r in _records(written / name)}
    problems = benchmark.load(str(written)) + benchmark.load(str(written), "train.jsonl")
    items = []
    for problem in problems:
        wrong = _near_miss_programs(records[problem.id]) if problem.id.startswith("TinyCode/test/") else []
        signature = problem.init_state
        items.append((problem, [benchmark.reference_program(problem), signature + "    return None\n",
                                signature + "    return (\n", *wrong]))
    verdicts = verify(sandbox, benchmark, items)
    failures = [(p.id, v[0].status, v[0].error) for p, v in zip(problems, verdicts) if v[0].reward != 1.0]
    assert failures == []
    assert all(v[0].status == "passed" and len(v[0].tests) == len(p.test["tests"]) for p, v in zip(problems, verdicts))
    assert all(v[1].status != "passed" and v[1].reward < 1.0 for v in verdicts)
    assert {v[2].status for v in verdicts} == {"syntax_error"}
    misses = [verdict for group in verdicts for verdict in group[3:]]
    assert len(misses) == 2 * N_TEST and all(v.status == "failed" and v.reward < 1.0 for v in misses)
    # the reward is the fraction of asserts passed: near misses often earn part of it
    assert any(0.0 < v.reward < 1.0 for v in misses)
