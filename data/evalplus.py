"""What HumanEval+ and MBPP+ share: evalplus 0.3.1's judgement, run in two sandboxed steps.

1. `reference_job`: the canonical solution runs on every base and plus input in a child of its
   own and streams its output per input into a file of the problem's store (a directory in
   `Sandbox.shared_dir`), then the list of times; this process never unpickles it. Both are what a
   verdict needs: the outputs are what a program's are compared with, the times set its per-input
   limits (`data/evalplus_reference.py`).
2. `plus_job`: a program, in one fresh child, is judged on the base inputs, then on the plus inputs,
   against those outputs (`data/evalplus_harness.py`), stopping at the first failure, as evalplus
   judges it. Nothing else gates it: evalplus runs neither HumanEval's `check` nor MBPP+'s
   `assertion`, and neither do we (tests/bench/bench_evalplus.py holds us against evalplus itself).
"""
from __future__ import annotations

import functools
import os
import pickle

from data.records import GIB, Job, Limits, Problem, Result

_HERE = os.path.dirname(os.path.abspath(__file__))
# evalplus's instruction prompts for chat models (evalplus/codegen.py), used for HumanEval(+), MBPP(+)
INSTRUCTION_PREFIX = ("Please provide a self-contained Python script that solves the following problem in a "
                      "markdown code block:")
RESPONSE_PREFIX = ("Below is a Python script with a self-contained function that solves the problem and passes "
                   "corresponding tests:")


def user_message(task_prompt: str) -> str:
    return f"{INSTRUCTION_PREFIX}\n```\n{task_prompt.strip()}\n```\n"


def response_prefix(state: str) -> str:
    return f"{RESPONSE_PREFIX}\n```python\n{state}"
REFERENCE_TIMEOUT = 300.0
# the child's own limits bound each input group by min(60 s, its time limits) + 2 s (evalplus's); the
# job's wall clock is only the outer backstop: two groups, the program run twice, the reference read
PLUS_TIMEOUT = 135.0
OUTPUT_NOT_NONE_TASKS = ("check_str", "text_match_three", "text_starta_endb")  # evalplus, MBPP only


@functools.lru_cache(maxsize=None)
def _source(name: str) -> str:
    """A source file of ours that runs in the child, read once per process."""
    with open(os.path.join(_HERE, name), encoding="utf-8") as handle:
        return handle.read()


def inputs(problem: Problem) -> list:
    return list(problem.test["base_input"]) + list(problem.test["plus_input"])


def reference_job(program: str, problem: Problem, dataset: str, store: str, timeout: float | None) -> Job:
    inputs_path = os.path.join(store, "inputs.pkl")
    with open(inputs_path, "wb") as handle:
        pickle.dump(inputs(problem), handle, protocol=4)
    entry_point = problem.test["entry_point"]
    data = {"entry_point": entry_point, "output_not_none": dataset == "mbpp" and entry_point in OUTPUT_NOT_NONE_TASKS,
            "group_sizes": group_sizes(problem)}
    return Job(program, harness=[_source("evalplus_reference.py")], tests=["_reference_outputs()"],
               data=pickle.dumps(data, protocol=4), data_files=[inputs_path],
               output_file=os.path.join(store, "reference.pkl"),
               timeout=max(timeout or 0, REFERENCE_TIMEOUT), guard="evalplus",
               limits=Limits(file_bytes=16 * GIB))  # outputs can be large (Mbpp/255: 780 MB)


# Turns the tests' namespace (a copy of the program's) into the judge's own, so that a program that
# redefines a builtin (Mbpp/126 defines `sum`) cannot change the judge (evalplus_harness.py), which runs
# next in it: only the sandbox's names, the builtins and `__program_namespace__` (the program's names) are
# left. It uses no name the program could have rebound (`globals`, `dict`), only syntax. The prelude and
# the judge are plain sources of the job, so each worker compiles them once (its code cache) and no
# child compiles anything but the program.
_JUDGE_NAMESPACE = """\
def _evalplus_enter(namespace, judge):
    namespace.clear()
    namespace.update(judge)
_evalplus_enter((lambda: None).__globals__, {
    '__builtins__': __builtins__, '__sandbox_data__': __sandbox_data__,
    '__sandbox_files__': __sandbox_files__, '__sandbox_program__': __sandbox_program__,
    '__sandbox_returned__': (lambda: None).__globals__.get('__sandbox_returned__'),
    '__program_namespace__': {**(lambda: None).__globals__}})
"""


def group_sizes(problem: Problem) -> list[int]:
    return [len(problem.test["base_input"]), len(problem.test["plus_input"])]


def plus_job(program: str, problem: Problem, prepared: Result | None, dataset: str, store: str,
             timeout: float | None) -> Job:
    """The program's job: tests `_plus_group(0)` (base inputs) and `_plus_group(1)` (plus inputs);
    without the reference outputs (`prepared` failed) it is a harness error."""
    if prepared is None or not prepared.passed:
        reason = prepared.error if prepared is not None else "not computed"
        message = f"reference outputs unavailable: {reason}"[:300]
        return Job(program, harness=[f"raise RuntimeError({message!r})"], tests=["pass"], timeout=timeout)
    data = {"entry_point": problem.test["entry_point"], "atol": problem.test["atol"], "dataset": dataset,
            "group_sizes": group_sizes(problem)}
    # evalplus's parent has numpy loaded, so a program's `import numpy` works under its guard; ours loads it
    # before the guard for the programs that use it (under the guard its import fails)
    setup = ['try:\n    __import__("numpy")\nexcept ImportError:\n    pass'] if "numpy" in program else []
    return Job(program, setup=setup, harness=[_JUDGE_NAMESPACE, _source("evalplus_harness.py")],
               tests=["_plus_group(0)", "_plus_group(1)"],
               data=pickle.dumps(data, protocol=4),
               data_files=[os.path.join(store, "inputs.pkl"), os.path.join(store, "reference.pkl")],
               timeout=timeout or PLUS_TIMEOUT, fail_fast=True, guard="evalplus")
