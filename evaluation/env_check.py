"""The environment check a stage runs before it spends model time.

The reference solutions of a few of the selected problems of each domain run in the sandbox, with
the interpreter that domain will use (GRPO records carry no reference: their starter code runs).
When one fails because a module is missing (a BigCodeBench task needs sklearn, the venv has none),
every program of that domain would score 0 with no word: the stage stops instead, with one line
naming the interpreter and the module. Other failures of a reference (a flaky network task, a slow
machine) are logged, never fatal. `--skip_env_check` skips it all. The check runs in the sandbox the
stage then runs its programs in (one start-up per interpreter); a sandbox that cannot run raises
SandboxError, the stage's `error:` line and exit 1.

`--exec_python` takes one interpreter for every domain, or one per domain (aggregated GRPO data
mixes domains): `BigCodeBench=/path/python DS1000=/path/python`, or the same as a JSON object.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from concurrent.futures import Future
from contextlib import ExitStack
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

from data.jsonl import DataError
from data.records import Problem, Result
from data.registry import get_benchmark

if TYPE_CHECKING:
    from evaluation.sandbox import Sandbox

logger = logging.getLogger(__name__)

MISSING_MODULE = re.compile(r"No module named '([\w.]+)'")
PER_DOMAIN = 3  # references checked per domain: the first this many selected problems that have one


def parse_exec_python(values: str | Sequence[str] | None) -> str | dict[str, str] | None:
    """`--exec_python` as given: None, one path (every domain), or {domain: path}.

    >>> parse_exec_python(["BigCodeBench=/venv-b/bin/python", "DS1000=/venv-d/bin/python"])
    {'BigCodeBench': '/venv-b/bin/python', 'DS1000': '/venv-d/bin/python'}
    >>> parse_exec_python('{"APPS": "/usr/bin/python3"}')
    {'APPS': '/usr/bin/python3'}
    >>> parse_exec_python("/usr/bin/python3")
    '/usr/bin/python3'
    """
    if values is None:
        return None
    items = [values] if isinstance(values, str) else list(values)
    if len(items) == 1 and items[0].lstrip().startswith("{"):
        try:
            mapping = json.loads(items[0])
        except ValueError as exc:
            raise DataError("--exec_python", None, f"not a JSON object of domain -> interpreter: {exc}") from None
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise DataError("--exec_python", None, "the JSON form maps each domain to an interpreter path")
        items = [f"{domain}={path}" for domain, path in mapping.items()]
    if len(items) == 1 and "=" not in items[0]:
        return items[0]
    mapping = {}
    for item in items:
        domain, separator, path = item.partition("=")
        if not separator or not domain or not path:
            raise DataError("--exec_python", None, f"{item!r}: give one path, or Domain=/path/python per domain")
        get_benchmark(domain)  # an unknown domain is an error here
        mapping[domain] = path
    return mapping


def interpreter_for(exec_python: str | Mapping[str, str] | None, domain: str) -> str | None:
    """The interpreter `domain`'s programs run with (None: this process's)."""
    if isinstance(exec_python, Mapping):
        return exec_python.get(domain)
    return exec_python


def check_interpreters(exec_python: str | Mapping[str, str] | None) -> None:
    """DataError unless every interpreter named is executable (the one place every stage's
    `--exec_python` is checked: sampling, MCTS, eval, verify, GRPO)."""
    paths = exec_python.values() if isinstance(exec_python, Mapping) else [exec_python]
    for path in paths:
        if path and not os.access(path, os.X_OK):
            raise DataError(path, None, "--exec_python is not an executable interpreter")


def missing_module(result: Result) -> str | None:
    """The module a failed run could not import, from its error, its tests' errors or stderr."""
    texts = [result.error or "", result.stderr or ""] + [test.error or "" for test in result.tests]
    for text in texts:
        match = MISSING_MODULE.search(text)
        if match:
            return match.group(1)
    return None


def check_environment(problems: Mapping[str, Iterable[Problem]], exec_python: str | Mapping[str, str] | None,
                      per_domain: int = PER_DOMAIN, timeout: float | None = None,
                      sandbox_for: Callable[[str], "Sandbox"] | None = None) -> str | None:
    """Run the references of the first `per_domain` problems of each domain that can be judged; None
    when no module is missing, else the one line to print. `sandbox_for(domain)` is the sandbox the
    stage runs that domain's programs in (started once, used by the check and then by the stage);
    without it the check starts one of its own per interpreter. Raises SandboxError when a sandbox
    cannot run (the stage's `error:` line, exit 1)."""
    chosen = [item for domain, selected in problems.items() for item in _programs(domain, selected, per_domain)]
    if not chosen:
        return None
    with ExitStack() as own:
        if sandbox_for is None:
            sandbox_for = _own_sandboxes(own, exec_python, workers=min(len(chosen), 4))
        sandboxes = [sandbox_for(problem.domain) for problem, _, _ in chosen]
        results = _run([(problem, program, sandbox) for (problem, program, _), sandbox in zip(chosen, sandboxes)],
                       timeout)
    for (problem, _, is_reference), result, sandbox in zip(chosen, results, sandboxes):
        module = missing_module(result) if not result.passed else None
        if module:
            hint = f"{problem.domain}=/path/to/python" if isinstance(exec_python, Mapping) else "/path/to/python"
            return (f"error: {sandbox.exec_python} cannot import {module!r}, which {problem.domain} problem "
                    f"{problem.id} needs: every program of {problem.domain} would score 0; pass --exec_python {hint} "
                    f"of an environment that has it (python -m data.build_env builds one), or --skip_env_check")
        if is_reference and not result.passed:
            logger.warning("environment check: the reference of %s/%s is %s in %s (%s)", problem.domain,
                           problem.id, result.status, sandbox.exec_python, (result.error or "")[:200])
    return None


def _own_sandboxes(stack: ExitStack, exec_python: str | Mapping[str, str] | None,
                   workers: int) -> Callable[[str], "Sandbox"]:
    """A sandbox per interpreter, started on first use and closed with `stack`."""
    from evaluation.sandbox import Sandbox

    started: dict[str | None, Sandbox] = {}

    def sandbox_for(domain: str) -> Sandbox:
        interpreter = interpreter_for(exec_python, domain)
        if interpreter not in started:
            started[interpreter] = stack.enter_context(Sandbox(workers=workers, exec_python=interpreter))
        return started[interpreter]

    return sandbox_for


def _programs(domain: str, selected: Iterable[Problem], count: int) -> list[tuple[Problem, str, bool]]:
    """(problem, program, is the reference) for the first `count` problems that can be judged. A
    record without its reference (GRPO data keeps only the test payload) gets its starter code with
    an empty body: it fails its tests, but a missing module still shows in how it fails."""
    benchmark, chosen = get_benchmark(domain), []
    if not getattr(benchmark, "needs_sandbox", True):  # math: graded without running anything
        return chosen
    for problem in selected:
        if len(chosen) == count:
            break
        if benchmark.load_error(problem) is not None:
            continue
        try:
            chosen.append((problem, benchmark.reference_program(problem), True))
        except Exception:  # no reference here (GRPO records, APPS rows without solutions, ...)
            body = "    pass\n" if problem.init_state.rstrip().endswith(":") else ""
            chosen.append((problem, problem.init_state + body, False))
    return chosen


def _run(items: Sequence[tuple[Problem, str, "Sandbox"]], timeout: float | None) -> list[Result]:
    """The result of each (problem, program, sandbox), on the path `evaluation.judging.verify` takes:
    every preparation submitted at once, then each program as its preparation finishes (a failed
    preparation is the result: a missing module shows there too), the stores removed at the end.
    A SandboxError (the sandbox cannot run) is raised, not turned into a status."""
    stores = [os.path.join(sandbox.shared_dir, f"env-check-{uuid.uuid4().hex[:8]}") for _, _, sandbox in items]
    try:
        preparations = []
        for (problem, _, sandbox), store in zip(items, stores):
            os.mkdir(store, 0o700)
            job = get_benchmark(problem.domain).prepare(problem, store, timeout)
            preparations.append(sandbox.submit(job) if job is not None else None)
        pending: list[Result | Future] = []
        for (problem, program, sandbox), preparation, store in zip(items, preparations, stores):
            prepared = preparation.result() if preparation is not None else None
            if prepared is not None and not prepared.passed:
                pending.append(prepared)
                continue
            job = get_benchmark(problem.domain).job(problem, program, prepared, store, timeout)
            pending.append(sandbox.submit(job))
        return [item if isinstance(item, Result) else item.result() for item in pending]
    finally:
        for store in stores:
            shutil.rmtree(store, ignore_errors=True)


def run_check(args, problems: Sequence[Problem], sandbox: "Sandbox | None" = None) -> str | None:
    """A stage's check (args.domain, args.exec_python, args.skip_env_check) in `sandbox`, the one the
    stage then runs its programs in (None: one of the check's own); None when it may go on."""
    if getattr(args, "skip_env_check", False) or not problems:
        return None
    return check_environment({args.domain: problems}, parse_exec_python(args.exec_python),
                             timeout=getattr(args, "timeout", None),
                             sandbox_for=None if sandbox is None else lambda domain: sandbox)
