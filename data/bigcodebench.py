"""BigCodeBench (bigcode-project/bigcodebench): one function per task, judged by a unittest suite.

Files (first existing under data/BigCodeBench/): `data.json`, the ReST-RL name (JSONL despite the
name; a JSON array is accepted too), then the Hugging Face release `BigCodeBench.jsonl.gz` /
`BigCodeBench.jsonl`. Record: `task_id` -> id, `instruct_prompt` -> prompt, `code_prompt` (imports
and the `def task_func(...):` line) -> init_state, `test` (a unittest module defining
`TestCases`) -> the test payload; `complete_prompt`, `canonical_solution`, `entry_point` and
`libs` (a list, or the HF file's Python-literal string) are kept in meta.

How a program is judged (reward = the fraction of test methods passed, as ReST-RL's verifier):
- A program is the whole code (code_prompt + the generated body). As in the official harness it
  runs in a module named `__test__` that already holds `os`, `sys` and `environ`, with TZ=UTC;
  then `data/bigcodebench_harness.py` executes the test source into that same namespace (inside
  the sandbox child only: the parent never runs test code) and runs `TestCases` once as a suite.
- The test methods are found in the parent by parsing the test source with `ast` (parsing runs
  nothing): the functions named `test*` of `TestCases` and of the classes of the same file it
  derives from, sorted as `unittest.TestLoader` sorts them. Each method is one of the job's tests,
  so the per-test statuses in the verdict are the methods' outcomes.
- reward = passed / methods when the suite ran to the end. A skipped test counts as passed, as in
  the original. When the run did not finish (the whole-run time limit, a crash, the process exiting
  or being killed, the program failing to compile or raising at import, the test code failing to
  load), the reward is 0, as the original's single time limit and lost result gave 0. A test code
  that fails to load (a library it imports is missing) is a harness_error: the environment's fault.
- The suite runs inside the first method's test, so that test's time is the whole suite's.

Limits: 60 s for the whole run (ReST-RL's 60 s; the official harness allows 240 s per task, pass
`--timeout` for that) and 16 GiB of address space (ReST-RL's 16 GiB; the official default is
30 GiB), plus the sandbox's other rlimits. The guard prelude is off (`guard="none"`), as in the
official harness whose guard only sets limits: the tasks legitimately remove files, start
subprocesses and patch sockets; the sandbox's outer layer (own uid, namespaces, process-group kill,
rlimits) is what contains a program.

Deviations from ReST-RL, and why:
- ReST-RL executes the test source in the calling process (the GRPO trainer included) to build its
  verifier; here it runs only inside the sandbox child.
- ReST-RL applies human-eval's reliability_guard, which disables os.remove, shutil.rmtree,
  subprocess.Popen, ... and so fails many correct BigCodeBench programs; we follow the official
  harness instead (see above).
- ReST-RL scores `testsRun - len(failures) - len(errors)`, where each failing subtest and each
  class-fixture error is one more entry; here a method with failing subtests is one failed method
  and the score stays a fraction of methods.

Environment: the tasks import 146 modules (139 in the data's `libs`, the rest in the test code) at
versions pinned by the original (`config/envs/bigcodebench.txt`); build it with
`python -m data.build_env --domain BigCodeBench` and pass the printed interpreter as
`--exec_python`. Run the ground-truth check in the chosen environment to list the tasks whose
reference fails there; `libraries(problem)` lists a task's imports and
`data.build_env.missing_libraries` says which of them an interpreter lacks. Some references fail
in any sandbox: the tasks that fetch URLs or resolve names (no network), and those that serve on
localhost (the sandbox's network namespace has no loopback up).
"""
from __future__ import annotations

import ast
import functools
import os
import pickle
import warnings

from data.benchmark import Benchmark
from data.jsonl import DataError, read_json_records, require
from data.records import GIB, Job, Limits, Problem, Result, Verdict

_HERE = os.path.dirname(os.path.abspath(__file__))
FIELDS = ("task_id", "instruct_prompt", "code_prompt", "test")
MEMORY_BYTES = 16 * GIB
# The official harness's module: `__test__`, pre-filled with os, sys and environ, TZ=UTC. Trusted
# (runs before the program); the namespace is registered as sys.modules["__test__"] so that
# `patch("__test__.name")` and pickling of the program's classes find it.
SETUP = """\
import os, sys
__import__("time").tzset()
__name__ = "__test__"
__file__ = "__test__.py"
__package__ = None
__doc__ = None
environ = os.environ
sys.modules["__test__"] = type("module", (), {})()
sys.modules["__test__"].__dict__ = globals()
"""
ENV = {"TZ": "UTC", "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}


def _source(name: str) -> str:
    with open(os.path.join(_HERE, name), encoding="utf-8") as handle:
        return handle.read()


def _parse(source: str) -> ast.Module:
    with warnings.catch_warnings():  # invalid escape sequences in the data: not our concern here
        warnings.simplefilter("ignore")
        return ast.parse(source)


def unittest_methods(source: str) -> list[str]:
    """The test method names of `TestCases` in a unittest source, by parsing it (runs nothing)."""
    tree = _parse(source)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    if "TestCases" not in classes:
        raise ValueError("no class TestCases")
    names: set[str] = set()
    pending, seen = ["TestCases"], set()
    while pending:  # TestCases and the classes of this file it derives from
        name = pending.pop()
        seen.add(name)
        for node in classes[name].body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                names.add(node.name)
        pending += [base.id for base in classes[name].bases
                    if isinstance(base, ast.Name) and base.id in classes and base.id not in seen]
    if not names:
        raise ValueError("TestCases has no test methods")
    return sorted(names)


def imported_modules(source: str) -> set[str]:
    """Top-level names of the modules a source imports anywhere (absolute imports; parsing only).
    A source that does not parse on its own (a function body) is parsed indented under a def."""
    for text in (source, "def _():\n" + source):
        try:
            tree = _parse(text)
        except SyntaxError:
            continue
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        return names
    return set()


@functools.lru_cache(maxsize=4096)
def test_modules(source: str) -> tuple[str, ...]:
    """The modules a test source imports (the hardened judge watches them), once per source."""
    return tuple(sorted(imported_modules(source)))


def _libs(value) -> list[str]:
    if isinstance(value, str):  # the HF file stores a Python literal: "['random', 'itertools']"
        value = ast.literal_eval(value) if value.strip() else []
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise ValueError("expected a list of library names")
    return list(value)


class BigCodeBench(Benchmark):
    name = "BigCodeBench"
    files = ("data.json", "BigCodeBench.jsonl.gz", "BigCodeBench.jsonl")
    default_timeout = 60.0
    binary = False

    def parse(self, path: str) -> list[Problem]:
        return [self.problem(record, path, line) for line, record in read_json_records(path)]

    def problem(self, record: dict, path: str, line: int | None) -> Problem:
        require(record, FIELDS, path, line)
        try:
            methods = unittest_methods(record["test"])
        except (SyntaxError, ValueError) as exc:
            raise DataError(path, line, f"field 'test' of {record['task_id']}: {exc}") from None
        try:
            libs = _libs(record.get("libs", []))
        except (SyntaxError, ValueError) as exc:
            raise DataError(path, line, f"field 'libs' of {record['task_id']}: {exc}") from None
        entry_point = record.get("entry_point") or "task_func"
        return Problem(
            id=str(record["task_id"]), domain=self.name, prompt=record["instruct_prompt"],
            init_state=record["code_prompt"],
            test={"test": record["test"], "entry_point": entry_point, "methods": methods},
            meta={"complete_prompt": record.get("complete_prompt", ""),
                  "canonical_solution": record.get("canonical_solution", ""),
                  "entry_point": entry_point, "libs": libs})

    def user_message(self, problem: Problem) -> str:
        return ("Please provide a self-contained Python script that solves the following problem in a markdown "
                "code block.\nProblem: " + problem.prompt)

    def response_prefix(self, problem: Problem, state: str) -> str:
        return ("Below is a self-contained Python script that solves the problem and realizes requested "
                "functionalities:\n```python\n" + state)

    def reference_program(self, problem: Problem) -> str:
        """code_prompt + canonical_solution: the program a model writes (the starter text and a
        body). The official ground-truth check uses complete_prompt (the same code with the
        docstring) + "\\n" + canonical_solution; both got the same verdicts on the 730 tasks this
        machine's interpreter can import."""
        if not problem.meta.get("canonical_solution"):
            raise ValueError(f"{problem.id}: no canonical_solution in the data file")
        return problem.init_state + problem.meta["canonical_solution"]

    def libraries(self, problem: Problem) -> list[str]:
        """The top-level modules the task needs, standard library included: the data's `libs` and
        what the starter code, the reference solution and the test code import (the tests use
        some, e.g. faker, pytz, requests_mock, that `libs` does not list)."""
        sources = (problem.init_state, problem.meta.get("canonical_solution", ""), problem.test["test"])
        return sorted(set(problem.meta["libs"]).union(*(imported_modules(source) for source in sources)))

    def job(self, problem, program, prepared=None, store="", timeout=None) -> Job:
        data = {"test": problem.test["test"], "methods": problem.test["methods"],
                "entry_point": problem.test["entry_point"]}
        return Job(program, setup=[SETUP], harness=[_source("bigcodebench_harness.py")],
                   tests=[f"_bcb_check({index})" for index in range(len(problem.test["methods"]))],
                   data=pickle.dumps(data, protocol=4), timeout=timeout or self.default_timeout,
                   guard="none", limits=Limits(memory_bytes=MEMORY_BYTES), env=dict(ENV),
                   watch_modules=test_modules(problem.test["test"]))

    def verdict(self, problem: Problem, result: Result) -> Verdict:
        tests = [test.status for test in result.tests]
        finished = len(tests) == len(problem.test["methods"])
        reward = sum(status == "passed" for status in tests) / len(tests) if finished else 0.0
        return Verdict(reward, result.status, tests, result.error, result.time)
