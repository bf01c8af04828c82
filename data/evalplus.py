"""What HumanEval+ and MBPP+ share: evalplus's judgement, run in two sandboxed steps.

1. `reference_job`: the canonical solution runs on every base and plus input in a child of its
   own and streams `(seconds, output)` per input into a file of the problem's store (a directory
   in `Sandbox.shared_dir`); this process never unpickles it.
2. `plus_job`: a program runs its original tests (HumanEval's check, MBPP+'s assertion), then
   every base and plus input, compared with those outputs (`data/evalplus_harness.py`), stopping
   at the first failure as evalplus does by default.
"""
from __future__ import annotations

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
OUTPUT_NOT_NONE_TASKS = ("check_str", "text_match_three", "text_starta_endb")  # evalplus, MBPP only


def _source(name: str) -> str:
    with open(os.path.join(_HERE, name), encoding="utf-8") as handle:
        return handle.read()


def inputs(problem: Problem) -> list:
    return list(problem.test["base_input"]) + list(problem.test["plus_input"])


def reference_job(program: str, problem: Problem, dataset: str, store: str, timeout: float | None) -> Job:
    inputs_path = os.path.join(store, "inputs.pkl")
    with open(inputs_path, "wb") as handle:
        pickle.dump(inputs(problem), handle, protocol=4)
    entry_point = problem.test["entry_point"]
    data = {"entry_point": entry_point, "output_not_none": dataset == "mbpp" and entry_point in OUTPUT_NOT_NONE_TASKS}
    return Job(program, harness=[_source("evalplus_reference.py")], tests=["_reference_outputs()"],
               data=pickle.dumps(data, protocol=4), data_files=[inputs_path],
               output_file=os.path.join(store, "reference.pkl"),
               timeout=max(timeout or 0, REFERENCE_TIMEOUT), guard="evalplus",
               limits=Limits(file_bytes=16 * GIB))  # outputs can be large (Mbpp/255: 780 MB)


def plus_job(program: str, problem: Problem, prepared: Result | None, dataset: str, store: str, timeout: float,
             harness=(), tests=()) -> Job:
    """The program's job; without the reference outputs (`prepared` failed) it is a harness error."""
    if prepared is None or not prepared.passed:
        reason = prepared.error if prepared is not None else "not computed"
        message = f"reference outputs unavailable: {reason}"[:300]
        return Job(program, harness=[f"raise RuntimeError({message!r})"], tests=["pass"], timeout=timeout)
    data = {"entry_point": problem.test["entry_point"], "atol": problem.test["atol"], "dataset": dataset,
            "plus_start": len(problem.test["base_input"])}
    checks = [f"_plus_check({index})" for index in range(len(inputs(problem)))]
    return Job(program, harness=list(harness) + [_source("evalplus_harness.py")], tests=list(tests) + checks,
               data=pickle.dumps(data, protocol=4),
               data_files=[os.path.join(store, "inputs.pkl"), os.path.join(store, "reference.pkl")],
               timeout=timeout, fail_fast=True, guard="evalplus")
