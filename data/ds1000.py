"""DS-1000 (xlang-ai/DS-1000): data-science snippets, judged 0/1 by each problem's `code_context`.

Files (first existing under data/DS1000/): `data.jsonl` (the ReST-RL name), then the official
`ds1000.jsonl.gz` / `ds1000.jsonl`; JSONL or one JSON array. Record: `prompt`, `reference_code`,
`code_context`, `metadata` (`problem_id`, `library`, `perturbation_type`, ...) and, in ReST-RL's
own file only, `code` (the starter text). id = `metadata.problem_id` as a string; prompt;
init_state = `code` when present and non-empty, else the starter text below; test =
`code_context`; meta = `reference_code`, `metadata`.

Starter text when `code` is absent (a decision of ours; ReST-RL's `code` is not public): the
official prompts end with the line the answer follows, `<code>` (after "BEGIN SOLUTION"),
`    ### BEGIN SOLUTION` (inside a function) or `# SOLUTION START` (Matplotlib). init_state is the
prompt from the start of its last line holding one of `<code>`, `BEGIN SOLUTION` or
`SOLUTION START` to its end (the last non-empty line when none does). It is never empty, so
ReST-RL's `completion.split(init_state)[-1]` is always defined (the original raises on an empty
one), and a model prompted with the prompt and this prefix continues with the snippet itself.

How a program is judged (as the official evaluation and ReST-RL's verifier): a program is the full
text, starter plus generated part; the snippet is the text after the last occurrence of
init_state (the whole program when it does not occur), cut at the first DS-1000 end marker
(`</code>`, `END SOLUTION`, `SOLUTION END`, ...: ReST-RL's stop strings, which its sampler cuts at
before verifying; a no-op on programs already cut). In the sandbox child, `code_context` runs,
then `test_execution(snippet)` and, when the context defines `test_string(`, `test_string(snippet)`.
Reward 1 when both raise nothing, else 0. The snippet is passed as data, never compiled on its own
(a function body is not a program), so a syntax error in it is a runtime_error of the tests.

Limits: 60 s for the whole run (ReST-RL's; the official script allows 120 s, pass `--timeout`),
16 GiB of address space (ReST-RL's). Guard off (`guard="none"`): the official evaluation runs
without reliability_guard because the libraries need system and file operations (Matplotlib
saves figures, TensorFlow saves models); the sandbox's outer layer contains the program.
Deviations from ReST-RL: its human-eval guard (see above), and the end-marker cut done here.

Environment: the libraries at the versions of ReST-RL's `data/DS1000/environment.yml`
(`config/envs/ds1000.txt`); build with `python -m data.build_env --domain DS1000`.
"""
from __future__ import annotations

import pickle
import re

from data.benchmark import Benchmark
from data.jsonl import DataError, read_json_records, require
from data.records import GIB, Job, Limits, Problem

FIELDS = ("prompt", "reference_code", "code_context", "metadata")
STARTER_MARKERS = ("<code>", "BEGIN SOLUTION", "SOLUTION START")
# ReST-RL's DS1000 stop strings (prompts/stops.py); its sampler cuts completions at the first one.
END_MARKERS = ("</code>", "### SOLUTION END", "### END SOLUTION", "# SOLUTION END", "# END SOLUTION",
               "END SOLUTION", "SOLUTION END")
# ReST-RL's format_sample for DS1000 cuts at these markers, tried in this order, as the original does
EXTRACT_MARKERS = ("</code>", "### SOLUTION END", "# SOLUTION END", "### END SOLUTION", "# END SOLUTION",
                   "END SOLUTION", "SOLUTION END")
IMPORT_LINE = re.compile(r"^[ \t]*(?:import|from)[ \t]+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)
MEMORY_BYTES = 16 * GIB
ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
# metadata.library -> the module it names; import lines give the rest
LIBRARY_MODULES = {"Pandas": ("pandas",), "Numpy": ("numpy",), "Matplotlib": ("matplotlib",),
                   "Scipy": ("scipy",), "Sklearn": ("sklearn",), "Pytorch": ("torch",),
                   "Tensorflow": ("tensorflow",)}


def starter_text(prompt: str) -> str:
    """The prompt from its last line holding a solution marker (or its last non-empty line)."""
    lines = prompt.splitlines(keepends=True)
    for index in range(len(lines) - 1, -1, -1):
        if any(marker in lines[index] for marker in STARTER_MARKERS):
            return "".join(lines[index:])
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].strip():
            return "".join(lines[index:])
    return ""


def solution_code(program: str, init_state: str) -> str:
    """The snippet DS-1000's tests receive: after the starter text, before the first end marker."""
    code = program.split(init_state)[-1] if init_state else program
    cut = min((position for position in (code.find(marker) for marker in END_MARKERS) if position >= 0),
              default=len(code))
    return code[:cut]


# (how a prompt's code section opens, the marker that closes it) for training targets
CLOSING_MARKERS = (("<code>", "</code>"), ("### BEGIN SOLUTION", "### END SOLUTION"),
                   ("# SOLUTION START", "# SOLUTION END"))


class DS1000(Benchmark):
    name = "DS1000"
    files = ("data.jsonl", "ds1000.jsonl.gz", "ds1000.jsonl")
    default_timeout = 60.0
    binary = True

    def parse(self, path: str) -> list[Problem]:
        return [self.problem(record, path, line) for line, record in read_json_records(path)]

    def problem(self, record: dict, path: str, line: int | None) -> Problem:
        require(record, FIELDS, path, line)
        metadata = record["metadata"]
        if not isinstance(metadata, dict) or "problem_id" not in metadata:
            raise DataError(path, line, "field 'metadata': missing 'problem_id'")
        code = record.get("code")
        init_state = code if isinstance(code, str) and code else starter_text(record["prompt"])
        if not init_state:
            raise DataError(path, line, "field 'prompt': empty, and no 'code' to start from")
        return Problem(id=str(metadata["problem_id"]), domain=self.name, prompt=record["prompt"],
                       init_state=init_state, test={"code_context": record["code_context"]},
                       meta={"reference_code": record["reference_code"], "metadata": metadata})

    stop_strings = END_MARKERS

    def user_message(self, problem: Problem) -> str:
        return "Please directly complete the required program to solve the following problem.\n" + problem.prompt

    def response_prefix(self, problem: Problem, state: str) -> str:
        return state  # no fence, no preamble: the model continues the program

    # --use_thought: the original's literals say "program" for "script"; the act turn continues the
    # program bare
    think_request = "The program is not yet complete. How should we proceed to complete this program?"
    act_request = "Based on these ideas, please provide a complete program to the problem.\n"

    def act_prefix(self, problem: Problem, state: str) -> str:
        return state

    def extract_code(self, sample: str) -> str:
        """The original's cut: at the first occurrence of each end marker, in this order."""
        for marker in EXTRACT_MARKERS:
            sample = sample.split(marker)[0]
        return sample

    def close_sample(self, formatted_prompt: str, sample: str) -> str:
        """The end marker that answers the prompt's opening one (the original's process_sample)."""
        opening = formatted_prompt.rstrip()
        for start, end in CLOSING_MARKERS:
            if opening.endswith(start):
                return sample + end
        return sample

    def reference_program(self, problem: Problem) -> str:
        return problem.init_state + problem.meta["reference_code"]

    def libraries(self, problem: Problem) -> list[str]:
        """The modules the problem needs: its metadata.library's and every module an import line
        of its code_context names (the test code's and, inside its string, the program's)."""
        names = set(LIBRARY_MODULES.get(problem.meta["metadata"].get("library"), ()))
        names.update(IMPORT_LINE.findall(problem.test["code_context"]))
        return sorted(names)

    def job(self, problem, program, prepared=None, store="", timeout=None) -> Job:
        context = problem.test["code_context"]
        tests = ["test_execution(__sandbox_data__)"]
        if "test_string(" in context:  # the official rule
            tests.append("test_string(__sandbox_data__)")
        snippet = solution_code(program, problem.init_state)
        return Job("", harness=[context], tests=tests, data=pickle.dumps(snippet, protocol=4),
                   timeout=timeout or self.default_timeout, fail_fast=True, guard="none",
                   limits=Limits(memory_bytes=MEMORY_BYTES), env=dict(ENV))
