"""MATH: competition mathematics (Hendrycks et al., 2021) and its 500-problem test subset MATH-500.

Two layouts are read, under `data/MATH/`:
- Hendrycks' release: a folder per split, a folder per subject, one JSON object per problem
  (`problem`, `solution`, `level`, `type`), e.g. `test/algebra/1.json` -> id `MATH/test/algebra/1`;
  the same objects as JSONL are read too (id `MATH/<split>/<index>`);
- MATH-500 (`HuggingFaceH4/MATH-500`, `test.jsonl`): `problem`, `solution`, `answer`, `subject`,
  `level`, `unique_id` (`test/precalculus/807.json` -> id `MATH/test/precalculus/807`).
Training reads `train.jsonl` or the folder `train/`, evaluation `test.jsonl` or `test/`.

The reference answer is the record's `answer`, or else the last `\\boxed{...}` of its solution. The
prompt asks for the answer in `\\boxed{}`; the last one of a completion is compared with the reference
as strings and then by `math-verify`, in a worker process with its own time limit (see
`data.math_grading`).
"""
from __future__ import annotations

import json
import os

from data.jsonl import DataError, read_json_records, require
from data.math_benchmark import MathBenchmark
from data.math_grading import DEFAULT_MATH_VERIFY_TIMEOUT, grade_math, last_boxed
from data.records import Problem, Verdict


class MATH(MathBenchmark):
    name = "MATH"
    files = ("train.jsonl", "test.jsonl")
    eval_file = "test.jsonl"
    default_timeout = DEFAULT_MATH_VERIFY_TIMEOUT  # seconds for one math-verify comparison
    stop_strings = ("Problem:", "</s>", "<|im_end|>")
    instruction = "Please reason step by step, and put your final answer within \\boxed{}."

    def parse(self, path: str) -> list[Problem]:
        split = os.path.basename(path).split(".")[0]
        if os.path.isdir(path):
            return [self._problem(record, f"{split}/{name}", path)
                    for name, record in _tree_records(path)]
        problems = []
        for index, (line, record) in enumerate(read_json_records(path)):
            require(record, ("problem", "solution"), path, line)
            unique = record.get("unique_id")
            where = unique.removesuffix(".json") if unique else f"{split}/{index}"
            problems.append(self._problem(record, where, f"{path}:{line}" if line else path))
        return problems

    def _problem(self, record: dict, where: str, origin: str) -> Problem:
        answer = record.get("answer") or last_boxed(record["solution"]) or ""
        meta = {key: value for key, value in record.items() if key not in ("problem", "answer")}
        return Problem(id=f"{self.name}/{where}", domain=self.name, prompt=record["problem"],
                       test={"answer": answer}, meta={**meta, "origin": origin})

    def grade(self, problem: Problem, completion: str, flexible: bool = False, timeout: float | None = None) -> Verdict:
        """Judge one completion: strict, the last `\\boxed{}`; `flexible` (evaluation only) lets
        math-verify find the answer anywhere when there is no box."""
        return grade_math(completion, str(problem.test["answer"]), flexible, timeout=timeout or self.default_timeout)

    def user_message(self, problem: Problem) -> str:
        return f"{problem.prompt}\n{self.instruction}"


def _tree_records(root: str) -> list[tuple[str, dict]]:
    """(subject/number, record) for every `<subject>/<number>.json` under `root`, in a stable order."""
    found = []
    for subject in sorted(os.listdir(root)):
        folder = os.path.join(root, subject)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder), key=lambda name: (len(name), name)):
            if not name.endswith(".json"):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as handle:
                try:
                    record = json.load(handle)
                except json.JSONDecodeError as exc:
                    raise DataError(path, exc.lineno, f"malformed JSON ({exc.msg})") from None
            require(record, ("problem", "solution"), path, None)
            found.append((f"{subject}/{name.removesuffix('.json')}", record))
    return found
