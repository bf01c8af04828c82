"""What the math benchmarks (GSM8K, TinyMath, MATH) share: a final answer is graded by
`data.math_grading` without the sandbox (`needs_sandbox = False`, `grade` instead of `job`), and
the GSM8K file format that GSM8K and TinyMath both use.

The GSM8K format: one JSON object per line, `question` and `answer`, the answer being the reference
solution, one step per line, ending in `#### <final answer>`; GSM8K's solutions carry calculator
notes (`<<16-3=13>>`) that are removed here. A problem's `test` is `{"answer": "<final answer>"}`
(all that grading needs, so GRPO data that keeps only `test` grades alike), its `meta` holds the
cleaned `solution` and any extra fields of the record.
"""
from __future__ import annotations

import os

from data.benchmark import Benchmark
from data.jsonl import DataError, read_jsonl, require
from data.math_grading import grade_gsm8k, hash_answer, strip_calculator_notes
from data.records import Job, Problem, Result, Verdict


class MathBenchmark(Benchmark):
    """Base of the math domains; subclasses set `name`, `files`, `eval_file` and the prompt literal."""

    kind = "math"
    needs_sandbox = False  # the judging layer calls `grade`, never `job`
    files = ("train.jsonl", "test.jsonl")
    eval_file = "test.jsonl"
    stop_strings = ("Question:", "</s>", "<|im_end|>")  # a base model starts the next question
    instruction = ("Solve the following math problem step by step, one step per line. Write the final answer "
                   "as a number on the last line, after `####`.")
    think_request = "The solution is not yet complete. How should we proceed?"
    act_request = "Based on these ideas, continue the solution, one step per line, and give the final answer."

    def resolve(self, directory: str | None = None, file: str | None = None) -> str:
        """As the base class; a missing `X.jsonl` is also looked for as `X.jsonl.gz` and as a folder `X`."""
        path = super().resolve(directory, file)
        for variant in (path, path + ".gz", path.removesuffix(".jsonl")):
            if os.path.exists(variant):
                return variant
        return path

    def parse(self, path: str) -> list[Problem]:
        """Problems from a GSM8K-format file; ids are `<name>/<split>/<index>` (the split is the file
        name up to its first dot) unless the record has its own `task_id`."""
        split = os.path.basename(path).split(".")[0]
        problems = []
        for index, (line, record) in enumerate(read_jsonl(path)):
            require(record, ("question", "answer"), path, line)
            answer = hash_answer(record["answer"])
            if not answer:
                raise DataError(path, line, "field 'answer' has no final answer after '####'")
            extra = {key: value for key, value in record.items() if key not in ("question", "answer", "task_id")}
            problems.append(Problem(
                id=str(record.get("task_id") or f"{self.name}/{split}/{index}"), domain=self.name,
                prompt=record["question"], test={"answer": answer},
                meta={"solution": strip_calculator_notes(record["answer"]), **extra}))
        return problems

    def grade(self, problem: Problem, completion: str, flexible: bool = False, timeout: float | None = None) -> Verdict:
        """Judge one completion (the whole text: no code runs, so no sandbox). `flexible` (evaluation
        only) also accepts `\\boxed{X}` and "The answer is X" when the strict form is missing;
        `timeout` bounds a comparison that can take long (MATH's), in seconds."""
        return grade_gsm8k(completion, str(problem.test["answer"]), flexible)

    def load_error(self, problem: Problem) -> str | None:
        answer = problem.test.get("answer") if isinstance(problem.test, dict) else None
        return None if answer not in (None, "") else "no reference answer"

    def user_message(self, problem: Problem) -> str:
        return f"{self.instruction}\n\nQuestion: {problem.prompt}"

    def response_prefix(self, problem: Problem, state: str) -> str:
        return state  # the solution so far: its steps are lines

    def act_prefix(self, problem: Problem, state: str) -> str:
        return state

    def extract_code(self, sample: str) -> str:
        return sample  # the whole text is graded: the rule finds the final answer in it

    def close_sample(self, formatted_prompt: str, sample: str) -> str:
        # the answer line ends the solution, as the policy ends its samples (trainers append the end-of-sequence
        # token): a search's solution, its steps each closed by a newline, would otherwise teach the policy to
        # go on after `#### X` (a tiny policy fine-tuned on such data wrote a second `####` line in 34% of
        # its test answers and fell from 0.25 to 0.085)
        return sample.rstrip()

    def reference_program(self, problem: Problem) -> str:
        return problem.meta["solution"]

    def job(self, problem: Problem, program: str, prepared: Result | None = None, store: str = "",
            timeout: float | None = None) -> Job:
        raise NotImplementedError(f"{self.name} is graded without the sandbox: call grade(problem, completion)")

    def verdict(self, problem: Problem, result: Result) -> Verdict:
        raise NotImplementedError(f"{self.name} is graded without the sandbox: call grade(problem, completion)")
