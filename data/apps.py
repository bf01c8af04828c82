"""APPS (hendrycks/apps), judged as the original project judges it (APPS' `testing_util.run_test`).

Data, detected from the content:
- the original project's JSONL (`data/APPS/data_with_test.jsonl`, then `test_500.jsonl`):
  `id, prompt, code, test` with `test` the JSON string of `{inputs, outputs, fn_name?}` (and
  `solutions`, `difficulty` when `python -m data.prepare` wrote it);
- the Hugging Face columns (`problem_id, question, solutions, input_output, starter_code,
  difficulty`), as JSONL or a JSON array; the layout is told per record by its fields;
- the original directory layout, `NNNN/{question.txt, input_output.json, solutions.json,
  starter_code.py, metadata.json}`, read when no `--file` is given and the directory
  (`--directory`, default `data/APPS`) holds such problem folders; ids are the folder names.
A `test` that does not parse (read as the original does: `ast.literal_eval`, then `json.loads`)
or holds no tests keeps its problem: every program of it gets harness_error and reward 0.

Judging (`data/apps_harness.py`, in the sandbox): the original's import block (sys, time,
itertools, collections, functools.lru_cache, math, fractions, typing List/Tuple, numpy as np,
random, heapq) is in scope; each test has a 4 s limit; the reward is the fraction of tests passed
(the status is passed only when all pass).
- Call-based (`fn_name`): the program is loaded once (also under the 4 s limit, with
  `__name__ == "tmp_sol"` as in the original); with `class Solution` in the code the method of a
  `Solution()` is called, else the function; per test `f(*inputs)` with the original's coercions:
  dict keys of the first argument and of the expected value become ints, a tuple result becomes a
  list, and the result may also equal `expected[0]` (as a list of lists when it is a list of tuples).
- Standard input: per test the program runs as a script in a fresh namespace, stdin = the test's
  input (`input()`, `sys.stdin` and its `.buffer`, `open(0)`, fd 0), stdout captured (fd 1, so
  fast-IO templates work too). `SystemExit` (`sys.exit()`, `exit()`, `quit()`) ends the run and
  the output so far is judged, as in the original. At the end, as at a script's exit, its threads
  are joined, its atexit functions run and stdout is flushed. The output is compared with the
  original's cascade: stripped text; lines stripped; non-empty lines; lines as floats with
  numpy.allclose; the sets of whitespace tokens per line (order and repeats ignored); the same
  with floats rounded to 3 places.

Differences from the original, and why:
- Standard-input programs run as module code. The original ran each as the body of a function
  `code()` of a module `tmp_sol`: an `if __name__ == "__main__":` block never ran (such solutions
  printed nothing and failed), and `global` in nested functions or a late `from m import *`
  failed. A bare `exit()`/`quit()` ends the program like `sys.exit()` (the original's guard set
  them to None, so they raised and the test counted as a runtime error).
- A top-level `return` (APPS 2287) was legal inside that function but does not compile as module
  code: it alone is rewritten, in the text, into `raise SystemExit` (its value is still computed),
  so it ends the program as it ended the original's function; nothing else changes.
- `open()` opens real files, fd 0 being the input; the original's mock answered every `open()`
  with the input, and its `sys.stdin.readline()` returned lines without their newline.
- The per-test limit is a timer of 4.0 s that fires again every 50 ms if swallowed (the original:
  `signal.alarm(4)`, once). A thread still running after its test's limit fails the tests after it.
- The whole run is bounded by 4 s per test plus 10 s, at most `default_timeout` (120 s), or by
  `--timeout` (the original: 61 s for all tests, and 0 for everything when exceeded). Tests that
  finished before that keep their results; the reward's denominator is always the number of tests.
- Memory: the sandbox's 4 GiB instead of the original's 16 GiB; the 101 sample solutions fit.
- numpy (the header's `np`) is loaded only for programs whose text names np, numpy or a library
  built on it (scipy, pandas, numba, sklearn): it costs about 0.1 s a program.
"""
from __future__ import annotations

import ast
import json
import os
import pickle
import re
from functools import lru_cache

from data.benchmark import Benchmark
from data.jsonl import DataError, read_json_records, require
from data.records import Job, Problem, Result, Verdict

_HERE = os.path.dirname(os.path.abspath(__file__))
TIME_LIMIT = 4.0  # seconds per test, the original's
RUN_MARGIN = 10.0  # seconds on top of the tests' limits for one program's whole run
TESTS_FILE = "apps_tests.pkl"  # in the problem's store, when the tests are too large to inline
INLINE_LIMIT = 256 * 1024  # bytes of pickled tests that still travel inside each job
HF_FIELDS = ("problem_id", "question", "input_output")
ORIGINAL_FIELDS = ("id", "prompt", "test")
# json.loads and ast.literal_eval agree on json.dumps text except on these escapes.
_JSON_ONLY_ESCAPES = re.compile(r"\\/|\\u[dD][89abAB]")
# Programs that may use numpy (the header's `np`, or a library built on it). numpy must be imported
# before the guard (it calls os.putenv), and costs about 0.1 s, so only these get it.
_NUMPY_USERS = re.compile(r"\bnp\b|numpy|scipy|pandas|numba|sklearn")
NUMPY_SETUP = "try:\n    import numpy\nexcept ImportError:\n    pass\n"


@lru_cache(maxsize=1)
def harness_source() -> str:
    with open(os.path.join(_HERE, "apps_harness.py"), encoding="utf-8") as handle:
        return handle.read()


# -- reading -------------------------------------------------------------------------------------


def _read_test_text(text: str):
    """The value of a `test` string as the original reads it: ast.literal_eval, then json.loads.
    json.loads goes first where both would give the same value: it is 10 to 50 times faster on
    large test sets."""
    if not _JSON_ONLY_ESCAPES.search(text):
        try:
            return json.loads(text)
        except ValueError:
            pass
    for read in (ast.literal_eval, json.loads):
        try:
            return read(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
    return None


def parse_test(value) -> dict:
    """`{inputs, outputs, fn_name?}`; when unusable, `{inputs: [], outputs: [], error: why}`."""
    if isinstance(value, str):
        value = _read_test_text(value) if value.strip() else None
    if not isinstance(value, dict):
        return {"inputs": [], "outputs": [], "error": "the test field does not parse"}
    inputs, outputs, fn_name = value.get("inputs"), value.get("outputs"), value.get("fn_name")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs):
        return {"inputs": [], "outputs": [], "error": "the test field has no matching inputs and outputs"}
    if not inputs:
        return {"inputs": [], "outputs": [], "error": "the test field holds no tests"}
    if fn_name is not None and not isinstance(fn_name, str):
        return {"inputs": [], "outputs": [], "error": "fn_name is not a string"}
    test = {"inputs": inputs, "outputs": outputs}
    if fn_name is not None:  # the original: call-based exactly when fn_name is there and not None
        test["fn_name"] = fn_name
    return test


def _solutions(value, where: tuple[str, int | None]) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):  # the Hugging Face columns hold JSON text
        try:
            value = json.loads(value)
        except ValueError:
            raise DataError(*where, "field 'solutions': not a JSON list") from None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DataError(*where, "field 'solutions': expected a list of program strings")
    return value


def _problem(problem_id, question, starter, test, solutions, difficulty) -> Problem:
    return Problem(id=str(problem_id), domain=APPS.name, prompt=question, init_state=starter or "",
                   test=parse_test(test), meta={"solutions": solutions, "difficulty": difficulty})


def problem_from_record(record: dict, path: str, line: int | None) -> Problem:
    """A record of either file layout, told apart by its fields."""
    where = (path, line)
    if any(name in record for name in HF_FIELDS):
        require(record, HF_FIELDS, path, line)
        return _problem(record["problem_id"], record["question"], record.get("starter_code"),
                        record["input_output"], _solutions(record.get("solutions"), where),
                        record.get("difficulty"))
    require(record, ORIGINAL_FIELDS, path, line)
    return _problem(record["id"], record["prompt"], record.get("code"), record["test"],
                    _solutions(record.get("solutions"), where), record.get("difficulty"))


def problem_folders(directory: str) -> list[str]:
    """The names of the problem folders (those holding question.txt) in `directory`, sorted."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(name for name in names if os.path.isfile(os.path.join(directory, name, "question.txt")))


def _text(path: str) -> str | None:
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _json_file(path: str):
    text = _text(path)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DataError(path, None, f"malformed JSON ({exc})") from None


def problem_from_folder(folder: str) -> Problem:
    metadata = _json_file(os.path.join(folder, "metadata.json")) or {}
    solutions_path = os.path.join(folder, "solutions.json")
    return _problem(os.path.basename(folder), _text(os.path.join(folder, "question.txt")),
                    _text(os.path.join(folder, "starter_code.py")),
                    _text(os.path.join(folder, "input_output.json")),
                    _solutions(_json_file(solutions_path), (solutions_path, None)),
                    metadata.get("difficulty") if isinstance(metadata, dict) else None)


# -- programs ------------------------------------------------------------------------------------


class _TopLevelReturns(ast.NodeVisitor):
    """The `return` statements of a module that are in no function or class."""

    def __init__(self):
        self.found: list[ast.Return] = []

    def visit_Return(self, node: ast.Return) -> None:  # noqa: N802
        self.found.append(node)

    def _skip(self, node: ast.AST) -> None:
        pass

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = _skip  # noqa: N815


def module_program(program: str) -> str:
    """`program` with each top-level `return [value]` rewritten, in place in the text, into
    `raise SystemExit[(value)]`: the original ran standard-input code as the body of a function, so
    such a `return` ended the program. Anything else, including other syntax errors, is left to the
    sandbox."""
    if "return" not in program:
        return program
    try:
        compile(program, "<program>", "exec", dont_inherit=True)
        return program
    except SyntaxError as exc:
        if exc.msg != "'return' outside function":
            return program
    except (ValueError, MemoryError, RecursionError):
        return program
    visitor = _TopLevelReturns()
    visitor.visit(ast.parse(program))
    lines = program.encode("utf-8").splitlines(keepends=True)
    # From the last to the first, so that earlier positions stay valid (offsets are UTF-8 bytes).
    for node in sorted(visitor.found, key=lambda n: (n.lineno, n.col_offset), reverse=True):
        if node.value is not None:
            row, column = node.end_lineno - 1, node.end_col_offset
            lines[row] = lines[row][:column] + b")" + lines[row][column:]
        row, column = node.lineno - 1, node.col_offset
        keyword = b"raise SystemExit(" if node.value is not None else b"raise SystemExit"
        lines[row] = lines[row][:column] + keyword + lines[row][column + len(b"return"):]
    return b"".join(lines).decode("utf-8")


class APPS(Benchmark):
    name = "APPS"
    files = ("data_with_test.jsonl", "test_500.jsonl")
    eval_file = "test_500.jsonl"  # the paper's APPS-500 (data.prepare writes it)
    default_timeout = 120.0  # the most one program's whole run gets by default; see run_timeout
    binary = False

    def load(self, directory: str | None = None, file: str | None = None) -> list[Problem]:
        folder = directory or self.directory
        names = [] if file else problem_folders(folder)
        if names:
            return [problem_from_folder(os.path.join(folder, name)) for name in names]
        return super().load(directory, file)

    def parse(self, path: str) -> list[Problem]:
        return [problem_from_record(record, path, line) for line, record in read_json_records(path)]

    def load_error(self, problem: Problem) -> str | None:
        return problem.test.get("error") if isinstance(problem.test, dict) else "no test payload"

    def user_message(self, problem: Problem) -> str:
        # The original's literal, word for word; the style (call-based or standard input) follows the tests.
        style = "Call-Based format" if (problem.test or {}).get("fn_name") else "Standard Input format"
        return (f"Please provide a self-contained Python script using {style} that solves the following problem "
                f"in a markdown code block.\nProblem: " + problem.prompt)

    def response_prefix(self, problem: Problem, state: str) -> str:
        return ("Below is a self-contained Python script that solves the problem and realizes requested "
                "functionalities:\n```python\n" + state)

    def reference_program(self, problem: Problem) -> str:
        solutions = problem.meta.get("solutions") or []
        if not solutions:
            raise ValueError(f"APPS problem {problem.id} has no solutions")
        return solutions[0]

    def run_timeout(self, problem: Problem) -> float:
        """One program's whole run: every test's limit plus a margin, at most default_timeout."""
        return min(self.default_timeout, TIME_LIMIT * len(problem.test["inputs"]) + RUN_MARGIN)

    def prepare(self, problem: Problem, store: str, timeout: float | None = None) -> Job | None:
        # No job: a large test set is written once to the problem's store instead of being
        # pickled into every program's job (APPS test inputs reach megabytes).
        test = problem.test
        if store and not test.get("error"):
            data = pickle.dumps((test["inputs"], test["outputs"]), protocol=4)
            if len(data) > INLINE_LIMIT:
                with open(os.path.join(store, TESTS_FILE), "wb") as handle:
                    handle.write(data)
        return None

    def job(self, problem, program, prepared=None, store="", timeout=None) -> Job:
        test = problem.test
        whole_run = timeout or self.run_timeout(problem)
        if test.get("error"):  # counted as a failure of the benchmark's data, never dropped
            message = f"APPS problem {problem.id}: {test['error']}"
            return Job(program, harness=[f"raise RuntimeError({message!r})"], tests=["pass"],
                       timeout=whole_run, run_program=False)
        fn_name = test.get("fn_name")
        data = {"fn_name": fn_name, "time_limit": TIME_LIMIT, "solution_class": "class Solution" in program}
        tests_path = os.path.join(store, TESTS_FILE) if store else ""
        files = [tests_path] if tests_path and os.path.exists(tests_path) else []
        if not files:
            data["tests"] = (test["inputs"], test["outputs"])
        check = "_apps_call" if fn_name else "_apps_stdin"
        setup = [NUMPY_SETUP] if _NUMPY_USERS.search(program) else []
        return Job(program if fn_name else module_program(program), setup=setup, harness=[harness_source()],
                   tests=[f"{check}({index})" for index in range(len(test["inputs"]))],
                   data=pickle.dumps(data, protocol=4), data_files=files, timeout=whole_run,
                   run_program=False, guard="strict")

    def verdict(self, problem: Problem, result: Result) -> Verdict:
        """The fraction of the problem's tests passed (tests a killed run never reached count as
        failed); a run that did not end with the harness's own report never scores 1."""
        statuses = [outcome.status for outcome in result.tests]
        total = len(problem.test["inputs"])
        passed = sum(status == "passed" for status in statuses[:total])
        if result.status != "passed":
            passed = min(passed, total - 1)
        reward = passed / total if total > 0 else 0.0
        return Verdict(max(reward, 0.0), result.status, statuses, result.error, result.time)
