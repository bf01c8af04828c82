"""HumanEval (openai/human-eval) and HumanEval+ (evalplus release files).

HumanEval: a program passes when `check(<entry_point>)` from the problem's `test` raises nothing
(the official harness: program, then test code, then the check call). HumanEval+: evalplus 0.3.1's
judgement, see `data/evalplus.py`: the outputs on every base and plus input compared with the
canonical solution's (the original check is not run, as evalplus does not run it).
"""
from __future__ import annotations

from data import evalplus
from data.benchmark import Benchmark
from data.jsonl import read_jsonl, require
from data.records import Job, Problem


class HumanEval(Benchmark):
    name = "HumanEval"
    files = ("HumanEval.jsonl.gz", "HumanEval.jsonl")
    default_timeout = 10.0
    fields = ("task_id", "prompt", "entry_point", "canonical_solution", "test")

    def parse(self, path: str) -> list[Problem]:
        problems = []
        for line, record in read_jsonl(path):
            require(record, self.fields, path, line)
            problems.append(self.problem(record))
        return problems

    def problem(self, record: dict) -> Problem:
        return Problem(
            id=record["task_id"], domain=self.name, prompt=record["prompt"], init_state="",
            test={"test": record["test"], "entry_point": record["entry_point"]},
            meta={"canonical_solution": record["canonical_solution"]})

    def reference_program(self, problem: Problem) -> str:
        return problem.prompt + problem.meta["canonical_solution"]

    def user_message(self, problem: Problem) -> str:
        return evalplus.user_message(problem.prompt)

    def response_prefix(self, problem: Problem, state: str) -> str:
        return evalplus.response_prefix(state)

    def job(self, problem, program, prepared=None, store="", timeout=None) -> Job:
        return Job(program, harness=[problem.test["test"]], tests=[f"check({problem.test['entry_point']})"],
                   timeout=timeout or self.default_timeout)


class HumanEvalPlus(HumanEval):
    name = "HumanEvalPlus"
    files = ("HumanEvalPlus.jsonl.gz", "HumanEvalPlus.jsonl", "HumanEvalPlus-Mini.jsonl.gz")
    default_timeout = evalplus.PLUS_TIMEOUT
    # The Mini file has no `test` (the original check); evalplus never runs it, and neither do we.
    fields = ("task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input", "atol")

    def problem(self, record: dict) -> Problem:
        problem = super().problem({"test": "", **record})
        problem.test.update(base_input=record["base_input"], plus_input=record["plus_input"],
                            atol=record["atol"])
        return problem

    def prepare(self, problem, store, timeout=None) -> Job:
        return evalplus.reference_job(self.reference_program(problem), problem, "humaneval", store, timeout)

    def job(self, problem, program, prepared=None, store="", timeout=None) -> Job:
        return evalplus.plus_job(program, problem, prepared, "humaneval", store, timeout)
