"""The harness: a job's sources compiled in the worker, run in the fresh child, reported line by line.

Worker side: standard library only, any Python >= 3.8 (imported by plain name beside worker.py).
The child writes its report to REPORT_FD, one line per event ("T <json>" per test, "R <json>" at the
end), so a kill keeps what was already known; the worker reads it back with `parse_report`.
"""
import builtins
import json
import os
import signal
import sys
import time

from guard import apply_guard
from hardening import Tampered, Watch

REPORT_FD = 3
CODE_CACHE_SIZE = 20000
# Bound here, before any program runs: a program that replaces os.write or json.dumps does not
# silence the report.
_write, _dumps, _perf, _exit = os.write, json.dumps, time.perf_counter, os._exit


class SandboxTimeout(BaseException):
    """Raised by the per-test timer; a BaseException so `except Exception` in a program cannot
    swallow it."""


def on_alarm(signum, frame):
    """The SIGALRM handler (set once in the worker, inherited by every child)."""
    raise SandboxTimeout("test time limit exceeded")


class Compiled:
    """A job's code objects: setup, harness and tests (lists), and the program."""

    def __init__(self, setup, harness, tests, program):
        self.setup, self.harness, self.tests, self.program = setup, harness, tests, program


class Compiler:
    """Compiles every source of a job in the worker, before the fork: the child then skips the
    parser's allocations (about a third of its page faults), a syntax error needs no child at all,
    and benchmark sources repeated across jobs are compiled once (cached). Compiling runs no code;
    CPython bounds what its optimizer folds."""

    def __init__(self):
        self.cache = {}

    def compile(self, job):
        """(Compiled, None), or (None, the result dict of a job that cannot run)."""
        try:
            setup, harness, tests = ([self._cached(source, "<%s>" % kind) for source in job.get(kind) or []]
                                     for kind in ("setup", "harness", "tests"))
        except BaseException as exc:
            return None, early_result("harness_error", exc, "harness")
        try:  # SyntaxError, ValueError (null bytes), MemoryError, RecursionError, ...
            program = compile(job["program"], "<program>", "exec", dont_inherit=True)
        except BaseException as exc:
            return None, early_result("syntax_error", exc, "compile")
        return Compiled(setup, harness, tests, program), None

    def _cached(self, source, name):
        code = self.cache.get(source)
        if code is None:
            if len(self.cache) > CODE_CACHE_SIZE:
                self.cache.clear()
            code = self.cache[source] = compile(source, name, "exec", dont_inherit=True)
        return code


def early_result(status, exc, stage):
    """The result of a job that never reached a child."""
    return {"status": status, "reported": True, "tests": [], "error": describe(exc), "stage": stage,
            "time": 0.0, "stdout": "", "stderr": ""}


def describe(exc):
    """`Type: message`, at most 1000 characters, whatever the exception's str() does."""
    try:
        text = "%s: %s" % (type(exc).__name__, exc)
    except BaseException:
        text = type(exc).__name__
    return text[:1000]


def _classify(exc):
    if isinstance(exc, Tampered):
        return "tampered"
    if isinstance(exc, SandboxTimeout):
        return "timeout"
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, AssertionError):
        return "failed"
    return "runtime_error"


# ----------------------------------------------------------------------------------------------
# inside the child


def emit(kind, payload, _write=_write, _dumps=_dumps):
    """Write one report line; a closed or broken pipe loses it (the worker sees the rest missing).
    The writers are bound as defaults: a program that rebinds this module's globals does not reach them."""
    try:
        _write(REPORT_FD, kind + b" " + _dumps(payload).encode("utf-8") + b"\n")
    except BaseException:
        pass


def _finish(status, error=None, stage=None, token=None, emit=emit, _exit=_exit):
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:  # a program may have replaced or closed them
            pass
    emit(b"R", {"status": status, "error": error, "stage": stage, "token": token})
    _exit(0)


def run_harness(job, code, data_fds, output_fd, token=None):
    """Run setup, program and tests (`code`, compiled by the worker) in this fresh child and stream
    the report to REPORT_FD; never returns. `data_fds`/`output_fd`: the job's files, opened already.
    `token` (a hardened job's): written in every report line, so that lines a program writes to the
    report pipe itself, not knowing it, are dropped by `parse_report`."""
    namespace = {"__name__": "__main__", "__builtins__": builtins} if job.get("run_as_main") else {}
    try:
        for source in code.setup:
            exec(source, namespace)
        data = None
        if job.get("data"):
            import base64
            import pickle
            data = pickle.loads(base64.b64decode(job["data"]))
        files = [os.fdopen(fd, "rb") for fd in data_fds]
        output = os.fdopen(output_fd, "wb") if output_fd is not None else None
    except BaseException as exc:
        _finish("harness_error", describe(exc), "setup")
    apply_guard(job.get("guard", "strict"))
    # Bound before the program runs (it may rebind this module's globals); a hardened job also has its
    # identities taken now (hardening.py).
    watch = _watch(job)

    def finish(status, error=None, stage=None, _finish=_finish):
        _finish(status, error, stage, token)

    if job.get("run_program", True):
        try:
            exec(code.program, namespace)
        except BaseException as exc:
            finish(_classify(exc) if not isinstance(exc, AssertionError) else "runtime_error",
                   describe(exc), "program")

    # Tests see a copy of the program's namespace, so the program's own functions keep its
    # globals and cannot read the test code's names.
    test_namespace = dict(namespace)
    test_namespace.update(__sandbox_data__=data, __sandbox_files__=files, __sandbox_output__=output,
                          __sandbox_program__=code.program)
    if watch is not None:
        _check(watch, finish, "program")
        watch.wrap_program(test_namespace)
        test_namespace.update(__sandbox_returned__=watch.returned, __sandbox_wrap__=watch.wrap)
    try:
        for source in code.harness:
            exec(source, test_namespace)
    except BaseException as exc:
        finish("harness_error", describe(exc), "harness")
    if watch is not None:
        watch.protect(test_namespace)
    status = _run_tests(job, code.tests, test_namespace, watch, finish, token)
    if output is not None:
        try:
            output.close()
        except BaseException as exc:
            finish("harness_error", describe(exc), "output")
    if watch is not None:
        _check(watch, finish, "tests")
    finish(status, None if status == "passed" else "a test did not pass", "tests")


def _watch(job):
    """The hardened judge's Watch for this job (None: an ordinary job)."""
    if not job.get("hardened"):
        return None
    sources = list(job.get("setup") or []) + list(job.get("harness") or []) + list(job.get("tests") or [])
    sources.append("\n".join("import " + name for name in job.get("watch_modules") or []))
    try:
        return Watch(sources, (globals(), Watch.__init__.__globals__))  # this module's and hardening's
    except BaseException as exc:
        _finish("harness_error", describe(exc), "hardening")


def _check(watch, finish, stage):
    why = watch.problem()
    if why is not None:
        finish("tampered", why, stage)


def _run_tests(job, tests, namespace, watch=None, finish=_finish, token=None):
    """Run each test under its own timer, reporting each; returns the first status not "passed".
    With a `watch` (a hardened job), a test after which it finds tampering ends the run as tampered."""
    status = "passed" if tests else "harness_error"
    limits = job.get("test_timeouts")
    for index, test in enumerate(tests):
        limit = limits[index] if isinstance(limits, list) else limits
        started = _perf()
        try:
            if limit:
                signal.setitimer(signal.ITIMER_REAL, float(limit))
            try:
                exec(test, namespace)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            outcome, error = "passed", None
        except BaseException as exc:
            outcome, error = _classify(exc), describe(exc)
        why = watch.problem() if watch is not None else None
        if why is not None:
            outcome, error = "tampered", why
        emit(b"T", {"status": outcome, "time": _perf() - started, "error": error, "token": token})
        if why is not None:
            finish("tampered", why, "tests")
        if outcome != "passed" and status == "passed":
            status = outcome
            if job.get("fail_fast"):
                break
    return status


# ----------------------------------------------------------------------------------------------
# in the worker: the report read back


def parse_report(raw, token=None):
    """The result fields the child's report bytes give: tests, reported, the final line's fields.
    With a `token`, lines without it (written by the program itself) count as bad lines."""
    tests, final, bad_lines = [], None, 0
    for line in raw.split(b"\n"):
        if not line:
            continue
        try:
            kind, payload = line[:1], json.loads(line[2:].decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            bad_lines += 1
            continue
        if not isinstance(payload, dict) or payload.pop("token", None) != token:
            bad_lines += 1
            continue
        if kind == b"T":
            tests.append(payload)
        elif kind == b"R":
            final = payload
    result = {"tests": tests, "reported": final is not None}
    if final is not None:
        result.update(final)
    if bad_lines:
        result["bad_report_lines"] = bad_lines
    return result
