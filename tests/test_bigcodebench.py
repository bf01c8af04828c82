"""BigCodeBench: both file layouts parse; partial rewards are the fraction of test methods passed
(checked by hand on fixture tasks); a run that does not finish scores 0; the test code runs only
in the sandbox child; hostile programs are contained; canonical solutions of the real data pass
wherever the environment has their libraries, with the same judgement as a plain unittest run."""
from __future__ import annotations

import gzip
import json
import os
import pickle
from pathlib import Path

import pytest
from conftest import REPO, fixture_records, shared_data

from data import bigcodebench
from data.build_env import missing_libraries, requirement_file
from data.jsonl import DataError
from data.records import Job
from data.registry import get_benchmark
from evaluation.judging import verify

FIXTURES = REPO / "tests" / "fixtures"
TINY = "bigcodebench_tiny.jsonl"
# 10 s or more here (461 and 1104 past the 60 s limit: 155 s and 73 s; 1038 and 1040 wait on a
# localhost socket the sandbox's network namespace lacks)
SLOW_TASKS = {f"BigCodeBench/{n}" for n in (0, 17, 195, 220, 461, 1038, 1040, 1103, 1104, 1105)}
MARKER = "876.54321"  # argument of a process a hostile program leaves behind


@pytest.fixture(scope="module")
def benchmark():
    return get_benchmark("BigCodeBench")


@pytest.fixture(scope="module")
def tiny(benchmark):
    return {problem.id: problem for problem in benchmark.load(str(FIXTURES), TINY)}


def _records() -> list[dict]:
    return fixture_records(TINY)


def _samples() -> list[dict]:
    return fixture_records("bigcodebench_samples.jsonl")


def _judge(sandbox, benchmark, problem, programs, timeout=None):
    return verify(sandbox, benchmark, [(problem, programs)], timeout=timeout)[0]


# -- reading ------------------------------------------------------------------------------------


def test_fields_map_as_the_reference_reader(tiny):
    record = _records()[1]
    problem = tiny["Fixture/1"]
    assert problem.prompt == record["instruct_prompt"]
    assert problem.init_state == record["code_prompt"]
    assert problem.test["test"] == record["test"]
    assert problem.meta["canonical_solution"] == record["canonical_solution"]
    assert problem.meta["complete_prompt"] == record["complete_prompt"]
    assert problem.meta["libs"] == ["random", "os"]  # the HF file's Python-literal string, parsed
    # methods of TestCases and of the base class it derives from, sorted as unittest sorts them
    assert problem.test["methods"] == ["test_file_written", "test_length", "test_patched_module_name",
                                       "test_range", "test_skipped"]


@pytest.mark.parametrize("layout", ["data.json as JSONL", "data.json as a JSON array", "jsonl.gz"])
def test_every_file_layout_reads_the_same(tmp_path, benchmark, tiny, layout):
    records = _records()
    if layout == "data.json as JSONL":
        (tmp_path / "data.json").write_text("".join(json.dumps(r) + "\n" for r in records))
    elif layout == "data.json as a JSON array":
        (tmp_path / "data.json").write_text(json.dumps(records, indent=2))
    else:
        with gzip.open(tmp_path / "BigCodeBench.jsonl.gz", "wt") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in records)
    problems = benchmark.load(str(tmp_path))  # the default file names, data.json first
    assert [p.__dict__ for p in problems] == [p.__dict__ for p in tiny.values()]


def test_data_json_wins_over_the_hf_file(tmp_path, benchmark):
    (tmp_path / "BigCodeBench.jsonl").write_text("")
    (tmp_path / "data.json").write_text("")
    assert benchmark.resolve(str(tmp_path)).endswith("data.json")


def test_bad_records_name_the_line(tmp_path, benchmark):
    record = _records()[0]
    bad = [dict(record, test="import unittest\nclass Other(unittest.TestCase):\n    pass\n"),
           {k: v for k, v in record.items() if k != "code_prompt"}]
    for index, broken in enumerate(bad):
        path = tmp_path / f"bad{index}.jsonl"
        path.write_text(json.dumps(record) + "\n" + json.dumps(broken) + "\n")
        with pytest.raises(DataError, match=r"bad\d\.jsonl:2: "):
            benchmark.load(str(tmp_path), path.name)


def test_real_file_parses_without_running_anything():
    path = shared_data("bigcodebench/BigCodeBench.jsonl.gz")
    benchmark = get_benchmark("BigCodeBench")
    problems = benchmark.load(str(path.parent), path.name)
    assert len(problems) == 1140 and problems[0].id == "BigCodeBench/0"
    assert all(problem.test["methods"] for problem in problems)
    libraries = benchmark.libraries(problems[0])
    assert {"random", "itertools"} <= set(libraries)
    # the test code's own imports are needed too (faker, pytz, ... are not in `libs`)
    assert any("faker" in benchmark.libraries(p) and "faker" not in p.meta["libs"] for p in problems)


def test_test_code_is_not_run_in_the_parent(tmp_path, sandbox, benchmark):
    """A test module whose import writes a file: reading the data and building the job run none
    of it; the sandbox child runs it (as root the child's /tmp is private, so the open fails there
    and this directory stays empty)."""
    marker = tmp_path / "imported"
    record = dict(_records()[0], test=f"open({str(marker)!r}, 'w').close()\n" + _records()[0]["test"])
    (tmp_path / "data.json").write_text(json.dumps(record) + "\n")
    problem = benchmark.load(str(tmp_path))[0]
    job = benchmark.job(problem, benchmark.reference_program(problem))
    assert pickle.loads(job.data)["test"] == record["test"]  # the source travels as data
    assert not marker.exists()
    verdict = _judge(sandbox, benchmark, problem, [benchmark.reference_program(problem)])[0]
    if os.geteuid() == 0:
        assert not marker.exists()
        assert verdict.status == "harness_error" and "FileNotFoundError" in verdict.error
    else:
        assert marker.exists() and verdict.reward == 1.0


def test_environment_files_and_import_check():
    assert requirement_file("BigCodeBench", "3.11").endswith("config/envs/bigcodebench.txt")
    assert requirement_file("BigCodeBench", "3.10").endswith("config/envs/bigcodebench-py310.txt")
    assert requirement_file("DS1000", "3.11").endswith("config/envs/ds1000.txt")
    with pytest.raises(ValueError, match="Python 3.13"):
        requirement_file("BigCodeBench", "3.13")
    for name in ("bigcodebench.txt", "bigcodebench-py310.txt", "ds1000.txt"):
        pins = [line for line in (REPO / "config" / "envs" / name).read_text().splitlines()
                if line and not line.startswith("#")]
        assert pins and all("==" in line for line in pins), name
    assert missing_libraries(["json", "no_such_module_here", "os"]) == ["no_such_module_here"]


# -- judging ------------------------------------------------------------------------------------


def test_partial_rewards_as_computed_by_hand(sandbox, benchmark, tiny):
    for sample in _samples():
        verdicts = _judge(sandbox, benchmark, tiny[sample["id"]], sample["completions"])
        assert [v.reward for v in verdicts] == pytest.approx(sample["expected"]), sample["id"]


def test_per_method_statuses(sandbox, benchmark, tiny):
    prompt = tiny["Fixture/0"].init_state
    verdicts = _judge(sandbox, benchmark, tiny["Fixture/0"], [
        prompt + "    return {'sum': 'x', 'max': None}\n",
        prompt + "    return {'sum': sum(values)\n",
        prompt + "    return {}\nraise RuntimeError('at import')\n"])
    # test_max, test_sum fail on their assertions; test_unique raises KeyError
    assert verdicts[0].tests == ["failed", "failed", "runtime_error"] and verdicts[0].status == "failed"
    assert (verdicts[1].status, verdicts[1].tests) == ("syntax_error", [])
    assert (verdicts[2].status, verdicts[2].tests) == ("runtime_error", [])


def test_module_semantics_of_the_official_harness(sandbox, benchmark, tiny):
    """`patch(__name__ + '.randint')` in the tests patches what the program's function sees, a
    class fixture runs, subtests and skips count once per method."""
    problem = tiny["Fixture/1"]
    verdict = _judge(sandbox, benchmark, problem, [benchmark.reference_program(problem)])[0]
    assert (verdict.reward, verdict.tests) == (1.0, ["passed"] * 5)
    # every subtest of test_range fails: one failed method (ReST-RL would count three failures)
    zeros = problem.init_state + ("    open('rolls.txt', 'w').write(' '.join(['0'] * n))\n"
                                  "    return [0] * n\n")
    verdict = _judge(sandbox, benchmark, problem, [zeros])[0]
    assert verdict.tests == ["passed", "passed", "failed", "failed", "passed"]
    assert verdict.reward == pytest.approx(3 / 5)


def test_module_has_os_sys_environ_and_utc(sandbox, benchmark, tiny):
    problem = tiny["Fixture/0"]
    program = ("import time\nassert __name__ == '__test__' and environ is os.environ and sys.modules['__test__']\n"
               "assert time.strftime('%Z') == 'UTC', time.strftime('%Z')\n"
               + benchmark.reference_program(problem))
    assert _judge(sandbox, benchmark, problem, [program])[0].reward == 1.0


@pytest.mark.parametrize("action, reward, status", [
    ("import time; time.sleep(60)", 0.0, "timeout"),
    ("import os; os._exit(0)", 0.0, None),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 0.0, None),
    ("raise SystemExit(0)", 2 / 3, "runtime_error"),
])
def test_a_run_cut_short_scores_zero(sandbox, benchmark, tiny, action, reward, status):
    """The second call of task_func (in test_sum) does `action`: a run cut short scores 0 whatever
    ran before it (as the original's single time limit and lost result did); an exception, even
    SystemExit, fails only its own method."""
    problem = tiny["Fixture/0"]
    program = (problem.init_state + "    global calls\n    calls = globals().get('calls', 0) + 1\n"
               f"    if calls == 2:\n        {action}\n" + problem.meta["canonical_solution"])
    verdict = _judge(sandbox, benchmark, problem, [program], timeout=5)[0]
    assert verdict.reward == pytest.approx(reward)
    if status is not None:
        assert verdict.status == status


def test_hostile_program_is_contained(tmp_path, sandbox, benchmark, tiny):
    """With the guard off, the outer layer holds: files outside stay, a detached process is swept,
    the network is cut, and the pool goes on."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    problem = tiny["Fixture/0"]
    kill_worker = "lambda: os.kill(os.getppid(), signal.SIGKILL)," if os.geteuid() == 0 else ""
    hostile = problem.init_state + f"""\
    import os, shutil, signal, socket, subprocess
    for action in (lambda: shutil.rmtree({str(tmp_path)!r}), lambda: os.remove({str(victim)!r}),
                   lambda: socket.create_connection(("1.1.1.1", 53), timeout=1), {kill_worker}):
        try:
            action()
        except Exception:
            pass
    subprocess.Popen(["sleep", "{MARKER}"], start_new_session=True)
    bytearray(32 * 1024 ** 3)
"""
    verdicts = _judge(sandbox, benchmark, problem, [hostile, benchmark.reference_program(problem)])
    assert verdicts[0].reward == 0.0
    assert verdicts[0].tests == ["runtime_error"] * 3  # MemoryError past the 16 GiB limit
    assert verdicts[1].reward == 1.0
    assert victim.read_text() == "keep me"
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and MARKER in _cmdline(pid)]
    assert sandbox.run([Job("x = 1", tests=["assert x == 1"])])[0].passed


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# -- the real data ------------------------------------------------------------------------------

# The original way (ReST-RL's and the official harness's): program and test code in one module,
# one unittest run; the counts come back in the assertion message of the job's only test.
_PLAIN_RUN = """
import unittest as _unittest
_result = _unittest.TestResult()
_unittest.TestLoader().loadTestsFromTestCase(TestCases).run(_result)
"""
_PLAIN_REPORT = "raise AssertionError('%d %d' % (_result.testsRun, len(_result.failures) + len(_result.errors)))"


def _plain_pass_rate(result) -> float:
    if result.status != "failed" or not result.tests or not (result.tests[0].error or "").startswith("Assert"):
        return 0.0
    run, bad = map(int, result.tests[0].error.split(": ", 1)[1].split())
    return max(0, run - bad) / run if run else 0.0


def _importable(benchmark, problems):
    libraries = {name for problem in problems for name in benchmark.libraries(problem)}
    missing = set(missing_libraries(libraries))  # in a subprocess of this interpreter
    return [p for p in problems if not missing.intersection(benchmark.libraries(p))], missing


def _real_problems(benchmark):
    path = shared_data("bigcodebench/BigCodeBench.jsonl.gz")
    return benchmark.load(str(path.parent), path.name)


def test_canonical_sample_agrees_with_a_plain_unittest_run(sandbox, benchmark):
    """A sample of the tasks whose libraries this interpreter has: each canonical solution gets
    the same score through the benchmark's job as through one plain unittest run of program and
    test code in one module; most of them pass (the rest fail for this environment's versions)."""
    importable, _ = _importable(benchmark, _real_problems(benchmark))
    sample = [p for p in importable if p.id not in SLOW_TASKS][::14]
    programs = [benchmark.reference_program(p) for p in sample]
    verdicts = verify(sandbox, benchmark, [(p, [program]) for p, program in zip(sample, programs)])
    plain = sandbox.run([Job(program + "\n" + p.test["test"] + _PLAIN_RUN, setup=[bigcodebench.SETUP],
                             tests=[_PLAIN_REPORT], guard="none", timeout=benchmark.default_timeout,
                             limits=bigcodebench.Limits(memory_bytes=bigcodebench.MEMORY_BYTES),
                             env=dict(bigcodebench.ENV))
                         for p, program in zip(sample, programs)])
    ours = {p.id: v[0].reward for p, v in zip(sample, verdicts)}
    theirs = {p.id: _plain_pass_rate(r) for p, r in zip(sample, plain)}
    assert len(sample) >= 50
    assert ours == pytest.approx(theirs)
    assert sum(reward == 1.0 for reward in ours.values()) >= 0.85 * len(sample)


@pytest.mark.sweep
def test_every_importable_canonical_solution_is_judged_and_broken_ones_fail(sandbox, benchmark):
    """The whole ground-truth sweep over the tasks this interpreter can import: no harness errors
    (`libraries` names everything the code imports), most references pass, and a body that returns
    None scores below 1 wherever the reference scored 1."""
    problems = _real_problems(benchmark)
    importable, missing = _importable(benchmark, problems)
    items = [(p, [benchmark.reference_program(p), p.init_state + "    return None\n"]) for p in importable]
    verdicts = verify(sandbox, benchmark, items)
    references = {p.id: v[0] for p, v in zip(importable, verdicts)}
    print(f"\n{len(importable)} of {len(problems)} tasks importable (missing here: {sorted(missing)});"
          f" references passing: {sum(v.reward == 1.0 for v in references.values())}")
    assert not [pid for pid, v in references.items() if v.status == "harness_error"]
    assert sum(v.reward == 1.0 for v in references.values()) >= 0.85 * len(importable)
    assert not [p.id for p, v in zip(importable, verdicts) if v[0].reward == 1.0 and v[1].reward == 1.0]
