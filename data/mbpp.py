"""MBPP (the original mbpp.jsonl and sanitized-mbpp.json) and MBPP+ (evalplus release file).

MBPP: a program passes when every assert of `test_list` holds; `test_setup_code` runs after the
program (tasks 367 and 927 build trees with the program's own `class Node`), the sanitized file's
`test_imports` before it. Ids are the integer task ids as strings ("11").
MBPP+: evalplus 0.3.1's judgement on every base and plus input (`data/evalplus.py`); the file's
`assertion` (the original asserts) is read but not run, as evalplus does not run it. Ids are
"Mbpp/N".
"""
from __future__ import annotations

from data import evalplus
from data.benchmark import Benchmark
from data.jsonl import DataError, read_json_records, read_jsonl, require
from data.records import Job, Problem


class MBPP(Benchmark):
    name = "MBPP"
    files = ("mbpp.jsonl", "sanitized-mbpp.json")
    default_timeout = 20.0  # task 123 alone takes about 6 s here

    def parse(self, path: str) -> list[Problem]:
        problems = []
        for line, record in read_json_records(path):
            require(record, ("task_id", "code", "test_list"), path, line)
            if "text" not in record and "prompt" not in record:
                raise DataError(path, line, "missing field 'text' (or 'prompt' in the sanitized file)")
            problems.append(Problem(
                id=str(record["task_id"]), domain=self.name, prompt=record.get("text", record.get("prompt")),
                test={"test_list": record["test_list"], "test_setup_code": record.get("test_setup_code", ""),
                      "test_imports": record.get("test_imports", [])},
                meta={"code": record["code"]}))
        return problems

    def reference_program(self, problem: Problem) -> str:
        return problem.meta["code"]

    def user_message(self, problem: Problem) -> str:
        # MBPP+'s prompt form: the task text and its first assert, in a docstring
        return evalplus.user_message(f'"""\n{problem.prompt}\n{problem.test["test_list"][0]}\n"""\n')

    def response_prefix(self, problem: Problem, state: str) -> str:
        return evalplus.response_prefix(state)

    def job(self, problem, program, prepared=None, store="", timeout=None) -> Job:
        test = problem.test
        return Job(program, setup=["\n".join(test["test_imports"])] if test["test_imports"] else [],
                   harness=[test["test_setup_code"]] if test["test_setup_code"] else [],
                   tests=list(test["test_list"]), timeout=timeout or self.default_timeout)


def _tuples(value):
    return [tuple(item) for item in value]


def _all_tuples(value):
    return tuple(_all_tuples(item) for item in value) if isinstance(value, list) else value


# evalplus's mbpp_deserialize_inputs (evalplus/data/mbpp.py): JSON has no tuples, sets or complex
# numbers, so these tasks' inputs are rebuilt before use. Task number -> conversion of one input.
_EACH_ARGUMENT_TUPLE = {2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616,
                        630, 726, 740, 744, 809}
_EACH_ARGUMENT_LIST_OF_TUPLES = {63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780}
_FIRST_LIST_OF_TUPLES = {75, 413, 444, 753}
_SECOND_TUPLE = {106, 750}
_FIRST_TUPLE = {250, 405, 446, 617, 720, 763, 808}
_TUPLE_OF_TUPLES = {259, 401, 445}
_ALL_TUPLES = {580, 615, 791}


def deserialize_input(number: int, inp: list):
    if number in _EACH_ARGUMENT_TUPLE:
        return _tuples(inp)
    if number in _EACH_ARGUMENT_LIST_OF_TUPLES:
        return [_tuples(argument) for argument in inp]
    if number in _FIRST_LIST_OF_TUPLES:
        return [_tuples(inp[0])] + [inp[1]]
    if number in _SECOND_TUPLE:
        return [inp[0]] + [tuple(inp[1])]
    if number == 115:
        return [[set(item) if isinstance(item, list) and len(item) else {} for item in inp[0]]]
    if number == 124:
        return (float(inp[0]), complex(inp[1]))
    if number in _FIRST_TUPLE:
        return [tuple(inp[0])] + [inp[1]]
    if number in _TUPLE_OF_TUPLES:
        return [tuple(_tuples(argument)) for argument in inp]
    if number == 278:
        return _tuples([[tuple(item) if isinstance(item, list) else item for item in inp[0]]])
    if number == 307:
        return [tuple(inp[0])] + [inp[1], inp[2]]
    if number == 722:
        return [{key: tuple(value) for key, value in inp[0].items()}] + inp[1:]
    if number == 252:
        return [complex(inp[0])]
    if number in _ALL_TUPLES:
        return _all_tuples(inp)
    return inp


class MBPPPlus(Benchmark):
    name = "MBPPPlus"
    files = ("MbppPlus.jsonl.gz", "MbppPlus.jsonl")
    default_timeout = evalplus.PLUS_TIMEOUT
    fields = ("task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input", "atol",
              "assertion")

    def parse(self, path: str) -> list[Problem]:
        problems = []
        for line, record in read_jsonl(path):
            require(record, self.fields, path, line)
            number = int(record["task_id"].split("/")[-1])
            problems.append(Problem(
                id=record["task_id"], domain=self.name, prompt=record["prompt"],
                test={"entry_point": record["entry_point"], "atol": record["atol"],
                      "assertion": record["assertion"],
                      "base_input": [deserialize_input(number, inp) for inp in record["base_input"]],
                      "plus_input": [deserialize_input(number, inp) for inp in record["plus_input"]]},
                meta={"canonical_solution": record["canonical_solution"]}))
        return problems

    def reference_program(self, problem: Problem) -> str:
        return problem.meta["canonical_solution"]

    def user_message(self, problem: Problem) -> str:
        return evalplus.user_message(problem.prompt)

    def response_prefix(self, problem: Problem, state: str) -> str:
        return evalplus.response_prefix(state)

    def prepare(self, problem, store, timeout=None) -> Job:
        return evalplus.reference_job(self.reference_program(problem), problem, "mbpp", store, timeout)

    def job(self, problem, program, prepared=None, store="", timeout=None) -> Job:
        return evalplus.plus_job(program, problem, prepared, "mbpp", store, timeout)
