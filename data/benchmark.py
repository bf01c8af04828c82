"""The interface every benchmark module implements, and the helpers they share.

A benchmark module knows everything about its benchmark: where its files live and how to read
them into `Problem`s, the sandbox jobs that check a program, and how a `Result` becomes a
`Verdict`. It subclasses `Benchmark` here; `data.registry` imports the modules and lists them.
This module imports neither the registry nor any benchmark, so the modules never import each other.
"""
from __future__ import annotations

import os

from data.jsonl import DataError, read_jsonl, read_unique, require
from data.records import Job, Problem, Result, Verdict, problem_from_record


class Benchmark:
    """Base class; subclasses fill in the attributes and `parse`, `job` (and `prepare` when a
    program's check needs something computed first, such as reference outputs)."""

    name: str = ""
    files: tuple[str, ...] = ()  # default file names under data/<name>/, first existing wins
    stop_strings: tuple[str, ...] = ("```",)  # generation stops here (the code fence closes)
    default_timeout: float = 20.0  # seconds for one program's whole run
    binary: bool = True  # reward 0/1 (pass/fail) rather than the fraction of tests passed
    eval_file: str | None = None  # the file evaluation reads when no --file is given (None: as load)
    kind: str = "code"  # "code": steps are lines, judged by running; "math": steps are lines, a final answer graded
    needs_sandbox: bool = True  # False: `grade` judges a completion's text and no code runs

    @property
    def directory(self) -> str:
        return os.path.join("data", self.name)

    def resolve(self, directory: str | None = None, file: str | None = None) -> str:
        """The data file: `--directory` and `--file` override `data/<Domain>/<default file>`."""
        directory = directory or self.directory
        if file:
            return os.path.join(directory, file)
        candidates = [os.path.join(directory, name) for name in self.files]
        for path in candidates:
            if os.path.exists(path):
                return path
        return candidates[0]

    def load(self, directory: str | None = None, file: str | None = None) -> list[Problem]:
        path = self.resolve(directory, file)
        if not os.path.exists(path):
            raise DataError(path, None, f"no {self.name} data file here (see README, 'Datasets')")
        problems = read_problem_records(path, self.name) if is_problem_file(path) else self.parse(path)
        seen: dict[str, int] = {}
        for number, problem in enumerate(problems, start=1):
            if problem.id in seen:
                raise DataError(path, None, f"id {problem.id!r} appears twice (problems {seen[problem.id]} and "
                                f"{number} of the file)")
            seen[problem.id] = number
        return problems

    def parse(self, path: str) -> list[Problem]:
        raise NotImplementedError

    def grade(self, problem: Problem, completion: str, flexible: bool = False, timeout: float | None = None) -> Verdict:
        """Judge a completion without running it (benchmarks with `needs_sandbox` False)."""
        raise NotImplementedError(f"{self.name} is judged by running programs in the sandbox")

    def user_message(self, problem: Problem) -> str:
        """The user turn of the prompt (the benchmark's literal)."""
        raise NotImplementedError(f"{self.name} has no prompt")

    def response_prefix(self, problem: Problem, state: str) -> str:
        """The start of the assistant turn, ending with the code so far (`state`)."""
        raise NotImplementedError(f"{self.name} has no prompt")

    # MCTS --use_thought: the original's thought and act literals for BigCodeBench and APPS, used by every
    # benchmark whose answer is a fenced script; DS1000 has its own.
    think_request: str = "The script is not yet complete. How should we proceed to complete this script?"
    think_prefix: str = "Let's think step by step about how to continue:\n"
    act_request: str = "Based on these ideas, please provide a complete self-contained Python script to the problem."

    def act_prefix(self, problem: Problem, state: str) -> str:
        """The start of the assistant turn that writes the code after a thought."""
        return ("Based on the ideas, below is a complete self-contained Python script that solves the problem and "
                "realizes requested functionalities:\n```python\n" + state)

    def extract_code(self, sample: str) -> str:
        """The code in a raw sample that continues the response prefix."""
        return sample.split("```")[0]

    def load_error(self, problem: Problem) -> str | None:
        """Why this problem cannot be judged (a test payload that did not parse, no tests), or None.
        Evaluation counts such a problem as a failure, never drops it."""
        return None

    def close_sample(self, formatted_prompt: str, sample: str) -> str:
        """A training target: the code sample followed by the marker that ends the answer (the
        original's process_sample; here the closing fence)."""
        return sample + "```"

    def reference_program(self, problem: Problem) -> str:
        """The benchmark's own solution as a whole program (for tests and benchmarks)."""
        raise NotImplementedError

    def prepare(self, problem: Problem, store: str, timeout: float | None = None) -> Job | None:
        """A job whose result every program of this problem needs (None: nothing to prepare).
        `store` is an empty directory for this problem's files, seen by the sandbox workers."""
        return None

    def job(self, problem: Problem, program: str, prepared: Result | None = None, store: str = "",
            timeout: float | None = None) -> Job:
        """The sandbox job that checks `program`; `prepared` is the result of `prepare`'s job."""
        raise NotImplementedError

    def verdict(self, problem: Problem, result: Result) -> Verdict:
        tests = [test.status for test in result.tests]
        if self.binary or not tests:
            reward = 1.0 if result.status == "passed" else 0.0
        else:
            reward = sum(status == "passed" for status in tests) / len(tests)
        return Verdict(reward, result.status, tests, result.error, result.time)


PROBLEM_FIELDS = ("id", "prompt", "init_state", "test")


def is_problem_file(path: str) -> bool:
    """Whether `path` holds problems in our own record form ({id, prompt, init_state, test, ...}, as
    `experiment.collect_grpo_data` writes them) rather than a benchmark's own layout."""
    if not path.endswith((".jsonl", ".jsonl.gz")):
        return False
    try:
        for _, record in read_jsonl(path):
            return all(name in record for name in PROBLEM_FIELDS)
    except DataError:  # not one object per line (e.g. a JSON array): the benchmark's reader decides
        return False
    return False


def read_problem_records(path: str, domain: str) -> list[Problem]:
    """Problems in our own record form, every benchmark alike (the benchmark payload in `test`)."""
    problems = []
    for line, record in read_unique(path):  # an id twice: refused, naming both lines
        require(record, PROBLEM_FIELDS, path, line)
        problems.append(problem_from_record(record, domain))
    return problems
