"""DS-1000 on fixture problems written in the official format (its data is not available here):
the file layouts read alike, the starter text is derived as documented (or taken from ReST-RL's
`code` field), references pass, and every fixture program passes or fails as written."""
from __future__ import annotations

import gzip
import json
import pickle

import pytest
from conftest import REPO, fixture_records

from data.ds1000 import END_MARKERS, solution_code, starter_text
from data.jsonl import DataError
from data.registry import get_benchmark
from evaluation.judging import verify

FIXTURES = REPO / "tests" / "fixtures"
TINY = "ds1000_tiny.jsonl"


@pytest.fixture(scope="module")
def benchmark():
    return get_benchmark("DS1000")


@pytest.fixture(scope="module")
def tiny(benchmark):
    return {problem.id: problem for problem in benchmark.load(str(FIXTURES), TINY)}


def _records() -> list[dict]:
    return fixture_records(TINY)


def _samples() -> list[dict]:
    return fixture_records("ds1000_samples.jsonl")


def test_fields_and_starter_text(tiny):
    records = _records()
    assert list(tiny) == ["0", "1", "2", "3", "4"]  # metadata.problem_id as a string
    problem = tiny["0"]
    assert problem.prompt == records[0]["prompt"]
    assert problem.test == {"code_context": records[0]["code_context"]}
    assert problem.meta == {"reference_code": records[0]["reference_code"], "metadata": records[0]["metadata"]}
    # the three endings of official prompts, and ReST-RL's `code` field taken as it is
    assert [tiny[i].init_state for i in "01234"] == [
        "<code>\n", "<code>\n", "    ### BEGIN SOLUTION", "# SOLUTION START\n", "BEGIN SOLUTION\n<code>\n"]


def test_starter_text_rules():
    assert starter_text("Problem:\n...\nBEGIN SOLUTION\n<code>\n\n") == "<code>\n\n"
    assert starter_text("x = 1\n# SOLUTION START") == "# SOLUTION START"
    assert starter_text("no marker at all\nlast line\n\n") == "last line\n\n"
    assert starter_text("") == ""


def test_solution_code_is_the_text_after_the_starter():
    assert solution_code("<code>\nresult = 1\n</code>\nprint(2)", "<code>\n") == "result = 1\n"
    assert solution_code("A <code>\nx\n<code>\nresult = 1\n", "<code>\n") == "result = 1\n"  # the last one
    assert solution_code("result = 1\n", "<code>\n") == "result = 1\n"  # no starter: all of it
    for marker in END_MARKERS:
        assert solution_code(f"S\n    return a\n    {marker}\njunk", "S\n") == "    return a\n    "


def test_empty_code_field_falls_back_to_the_prompt(tmp_path, benchmark):
    record = dict(_records()[0], code="")
    (tmp_path / "data.jsonl").write_text(json.dumps(record) + "\n")
    assert benchmark.load(str(tmp_path))[0].init_state == "<code>\n"


@pytest.mark.parametrize("layout", ["data.jsonl", "ds1000.jsonl.gz", "JSON array"])
def test_file_layouts_read_alike(tmp_path, benchmark, tiny, layout):
    records = _records()
    if layout == "ds1000.jsonl.gz":
        with gzip.open(tmp_path / layout, "wt") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in records)
    elif layout == "JSON array":
        (tmp_path / "data.jsonl").write_text(json.dumps(records))
    else:
        (tmp_path / layout).write_text("".join(json.dumps(r) + "\n" for r in records))
    assert [p.__dict__ for p in benchmark.load(str(tmp_path))] == [p.__dict__ for p in tiny.values()]


def test_bad_records_name_the_line(tmp_path, benchmark):
    record = _records()[0]
    for broken in ({k: v for k, v in record.items() if k != "code_context"}, dict(record, metadata={})):
        (tmp_path / "data.jsonl").write_text(json.dumps(record) + "\n" + json.dumps(broken) + "\n")
        with pytest.raises(DataError, match=r"data\.jsonl:2: "):
            benchmark.load(str(tmp_path))


def test_job_passes_the_snippet_as_data(benchmark, tiny):
    job = benchmark.job(tiny["1"], "<code>\nresult = X\n</code>\n")
    assert pickle.loads(job.data) == "result = X\n"
    assert job.tests == ["test_execution(__sandbox_data__)", "test_string(__sandbox_data__)"]
    assert benchmark.job(tiny["0"], "").tests == ["test_execution(__sandbox_data__)"]
    assert benchmark.libraries(tiny["3"]) == ["matplotlib", "numpy", "pandas"]


def test_references_pass(sandbox, benchmark, tiny):
    verdicts = verify(sandbox, benchmark, [(p, [benchmark.reference_program(p)]) for p in tiny.values()])
    assert [(v[0].reward, v[0].status) for v in verdicts] == [(1.0, "passed")] * len(tiny)


def test_fixture_programs_pass_and_fail_as_written(sandbox, benchmark, tiny):
    samples = _samples()
    verdicts = verify(sandbox, benchmark, [(tiny[s["id"]], s["completions"]) for s in samples], timeout=5)
    for sample, group in zip(samples, verdicts):
        assert [v.reward for v in group] == sample["expected"], sample["id"]
    statuses = {s["id"]: [v.status for v in group] for s, group in zip(samples, verdicts)}
    assert statuses["0"] == ["passed", "passed", "failed", "runtime_error", "runtime_error"]
    assert statuses["1"][1] == "failed"  # right values, but test_string forbids the loop
    assert statuses["4"][2] == "timeout"
