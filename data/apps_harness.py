"""Runs inside the sandbox child only (never imported by the project): the APPS judgement of one
program, one test at a time. The rules, and where they differ from APPS' `testing_util.py`, are
in `data/apps.py`. Standard library only; Python >= 3.8.

The job puts `__sandbox_data__ = {"fn_name", "time_limit", "solution_class"[, "tests"]}` in the
namespace; the tests, `(inputs, outputs)`, are inline or pickled in `__sandbox_files__[0]`. The
program arrives compiled as `__sandbox_program__` (`run_program=False`). Each test is
`_apps_call(i)` (call-based) or `_apps_stdin(i)` (standard input): it returns when the program
passes test i, raises AssertionError on a wrong answer, and lets the program's own exception (or
SandboxTimeout from the per-test timer) through, so the sandbox classifies it.
"""
import builtins as _builtins
import gc as _gc
import io as _io
import math as _math
import os as _os
import pickle as _pickle
import signal as _signal
import sys as _sys

# The import block the original prepends to every program; numpy, its `np`, is added below.
_HEADER = (
    "import sys\nimport time\nimport itertools\n"
    "from itertools import accumulate, product, permutations, combinations\n"
    "import collections\nfrom collections import Counter, OrderedDict, deque, defaultdict, ChainMap\n"
    "from functools import lru_cache\nimport math\n"
    "from math import sqrt, sin, cos, tan, ceil, fabs, floor, gcd, exp, log, log2\n"
    "import fractions\nfrom typing import List, Tuple\nimport random\nimport heapq\nfrom heapq import *\n")

_apps = __sandbox_data__  # noqa: F821  (set by the sandbox harness)
if "tests" in _apps:
    _inputs, _outputs = _apps["tests"]
else:  # a large test set travels as a file of the problem's store
    _inputs, _outputs = _pickle.load(__sandbox_files__[0])  # noqa: F821
_program = __sandbox_program__  # noqa: F821
_limit = float(_apps["time_limit"])
_alarm_handler = _signal.getsignal(_signal.SIGALRM)  # the sandbox's: raises SandboxTimeout
_returned = globals().get("__sandbox_returned__")  # the hardened judge's value check, or None


def _exit(code=None):
    raise SystemExit(code)


_base = {"__builtins__": _builtins}
exec(_HEADER, _base)
if "numpy" in _sys.modules:  # the job's setup imported it, before the guard (numpy needs os.putenv)
    _base["np"] = _sys.modules["numpy"]


def _namespace(name):
    namespace = dict(_base)
    namespace["__name__"] = name
    return namespace


def _arm():
    _signal.signal(_signal.SIGALRM, _alarm_handler)  # an earlier test may have replaced it
    # Fires again every 50 ms: a program that swallows one timeout meets the next (one that
    # swallows them all, in a loop, meets the whole-run limit).
    _signal.setitimer(_signal.ITIMER_REAL, _limit, 0.05)


def _disarm():
    _signal.setitimer(_signal.ITIMER_REAL, 0)


# -- call-based ----------------------------------------------------------------------------------


def _load_solution():
    """The function under test, loaded once under the time limit, as the original does; a failure
    fails every test the same way."""
    namespace = _namespace("tmp_sol")  # the original's module name: a __main__ block does not run
    _arm()
    try:
        exec(_program, namespace)
        if _apps["solution_class"]:  # the original's test: "class Solution" in the code
            return getattr(namespace["Solution"](), _apps["fn_name"]), None
        return namespace[_apps["fn_name"]], None
    except BaseException as exc:
        return None, exc
    finally:
        _disarm()


_solution = []


def _call_case(index):
    """Arguments and expected value with the original's coercions (JSON has only string keys)."""
    args, expected = _inputs[index], _outputs[index]
    try:
        if isinstance(args[0], dict):
            args = [dict((int(k), v) for k, v in args[0].items())]
    except Exception:
        pass
    try:
        if isinstance(expected, dict):
            expected = [dict((int(k), v) for k, v in expected.items())]
    except Exception:
        pass
    try:
        if isinstance(expected[0], dict):
            expected = [dict((int(k), v) for k, v in expected[0].items())]
    except Exception:
        pass
    return args, expected


def _call_matches(output, expected):
    if isinstance(output, tuple):  # expected sequences are lists
        output = list(output)
    ok = output == expected
    if isinstance(expected, list) and expected:  # results are often wrapped in a one-element list
        ok = ok or output == expected[0]
    try:
        if isinstance(output[0], tuple):
            ok = ok or [list(item) for item in output] == expected[0]
    except Exception:
        pass
    return ok


def _apps_call(index):
    if not _solution:
        _solution.append(_load_solution())
    method, error = _solution[0]
    if error is not None:
        raise error.with_traceback(None)
    args, expected = _call_case(index)
    _arm()
    try:
        output = method(*args)
    finally:
        _disarm()
    if _returned is not None:
        _returned(output)
    assert _call_matches(output, expected), "wrong answer"


# -- standard input ------------------------------------------------------------------------------


def _memory_file(name):
    if hasattr(_os, "memfd_create"):
        return _os.memfd_create(name)
    return _os.open(name, _os.O_RDWR | _os.O_CREAT | _os.O_TRUNC, 0o600)  # in the job's own directory


# The program's fds 0 and 1 are real files, so `open(0)`, `os.read(0, n)`, `sys.stdin.buffer`,
# `fileno()` and fast-IO templates that write to fd 1 all work.
_stdin_fd, _stdout_fd = _memory_file("apps-stdin"), _memory_file("apps-stdout")
_saved_fds = (_os.dup(0), _os.dup(1))
_gc.freeze()  # the collection after each run then scans only what programs made (numpy: 3 ms a test)


def _as_text(value):
    return "\n".join(value) if isinstance(value, list) else value


def _rewind(fd, data):
    _os.ftruncate(fd, 0)
    _os.lseek(fd, 0, _os.SEEK_SET)
    view = memoryview(data)
    while view:
        view = view[_os.write(fd, view):]
    _os.lseek(fd, 0, _os.SEEK_SET)


def _read_all(fd):
    size, chunks, offset = _os.fstat(fd).st_size, [], 0
    while offset < size:
        chunk = _os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _flush(stream):
    try:
        stream.flush()
    except Exception:
        pass


def _program_threads():
    threading = _sys.modules.get("threading")
    if threading is None:
        return []
    current = threading.current_thread()
    return [thread for thread in threading.enumerate() if thread is not current and not thread.daemon]


def _finish_run(namespace, stdout):
    """What the interpreter does when a script ends: wait for its threads, run its atexit
    functions, flush stdout; then drop its objects, whose finalizers may still print."""
    for thread in _program_threads():
        thread.join()
    atexit = _sys.modules.get("atexit")
    if atexit is not None:
        atexit._run_exitfuncs()
        atexit._clear()
    _flush(_sys.stdout)
    namespace.clear()
    _gc.collect()
    _flush(stdout)


def _run_stdin(text):
    """The program's stdout when run as a script on `text`; its own exception goes through."""
    if _program_threads():
        raise RuntimeError("a thread of an earlier test is still running")
    _rewind(_stdin_fd, text.encode("utf-8"))
    _rewind(_stdout_fd, b"")
    _os.dup2(_stdin_fd, 0)
    _os.dup2(_stdout_fd, 1)
    saved = (_sys.stdin, _sys.stdout, _sys.__stdin__, _sys.__stdout__)
    stdin = _io.TextIOWrapper(_io.BufferedReader(_io.FileIO(0, "r", closefd=False)), encoding="utf-8")
    stdout = _io.TextIOWrapper(_io.BufferedWriter(_io.FileIO(1, "w", closefd=False)), encoding="utf-8")
    _sys.stdin = _sys.__stdin__ = stdin
    _sys.stdout = _sys.__stdout__ = stdout
    namespace = _namespace("__main__")
    namespace.update(exit=_exit, quit=_exit)  # a bare exit() works as sys.exit() does
    _arm()
    try:
        try:
            exec(_program, namespace)
        except SystemExit:  # as in the original: judged on what it printed until then
            pass
        _finish_run(namespace, stdout)
    finally:
        _disarm()
        _sys.stdin, _sys.stdout, _sys.__stdin__, _sys.__stdout__ = saved
        _os.dup2(_saved_fds[0], 0)
        _os.dup2(_saved_fds[1], 1)
    return _read_all(_stdout_fd).decode("utf-8", "replace")


def _floats_close(got, want):
    """`len(got) == len(want) and numpy.allclose(got, want)` on the lines read as floats."""
    try:
        got, want = [float(item) for item in got], [float(item) for item in want]
    except Exception:
        return False
    if len(got) != len(want):
        return False
    for a, b in zip(got, want):
        if a == b:
            continue
        if not (_math.isfinite(a) and _math.isfinite(b)) or abs(a - b) > 1e-08 + 1e-05 * abs(b):
            return False
    return True


def _token_sets(lines):
    return set(frozenset(line) for line in lines)


def _stdin_matches(text, expected):
    """The original's output comparison, stage by stage, stopping at the first that accepts (its
    stages that can never accept once the expected output is a string are left out)."""
    lines = text.splitlines()
    if "\n".join(lines).strip() == expected.strip():
        return True
    if "\n".join(line.strip() for line in lines).strip() == expected.strip():
        return True
    want = [line.strip() for line in expected.split("\n") if line]  # dropped before stripping
    if lines == want:
        return True
    got = [line for line in lines if line]
    if got == want or _floats_close(got, want):
        return True
    got_tokens = [tokens for tokens in (line.split() for line in got) if tokens]
    want_tokens = [line.split() for line in want]
    if _token_sets(got_tokens) == _token_sets(want_tokens):  # order and repeats ignored
        return True
    try:
        rounded = [[round(float(t), 3) for t in tokens] for tokens in got_tokens]
        return _token_sets(rounded) == _token_sets([[round(float(t), 3) for t in tokens] for tokens in want_tokens])
    except Exception:
        return False


def _apps_stdin(index):
    text = _run_stdin(_as_text(_inputs[index]))
    assert _stdin_matches(text, _as_text(_outputs[index])), "wrong answer"
