"""Runs inside the sandbox child only (never imported by the project): evalplus 0.3.1's judgement of
one program, against the canonical solution's outputs.

It runs in a namespace of its own (the job's first harness source, `data/evalplus.py`'s prelude, turns
the tests' copy of the program's namespace into it), so a program that redefines a builtin (Mbpp/126
defines `sum`) cannot change the judge: there it finds `__sandbox_data__ = {"entry_point", "atol",
"dataset", "group_sizes"}`, `__sandbox_files__ = [inputs pickle, reference stream]`,
`__sandbox_program__` (the compiled program) and `__program_namespace__` (the program's names after the
sandbox's run of it); the tests, run there too, are `_plus_group(0)` (the base inputs) and
`_plus_group(1)` (the plus inputs), in order (the reference stream, one output per input, is read one
input at a time). A program passes when both groups pass, as evalplus's
base_status == plus_status == "pass". The rules are evalplus 0.3.1's (evalplus/eval/__init__.py
`unsafe_execute` / `untrusted_check`, `_special_oracle.py`):
- each group judges a fresh execution of the program (evalplus runs each group in a process of
  its own): the base group the sandbox's run, the plus group a new one in a new namespace;
- the program's output is swallowed while it runs (evalplus's swallow_io);
- per-input time limit max(1 s, 4 x the canonical solution's time on that input), and the group's
  whole run within min(60 s, the sum of those limits) + 2 s (evalplus's process timeout and join);
- inputs in order, stopping at the first failure (evalplus's default fast_check);
- exact `==`, or, when `atol` is non-zero (it becomes 1e-6 at the first float output and then stays
  so for the rest of the group, as in evalplus), same type, same length and allclose with rtol 1e-7;
- the special oracles for find_zero and the MBPP tasks of `_special_oracle.py` (set comparison for
  Mbpp/2, 7, 111, 140, 232, 249, 579, 769; not-None checks; Mbpp/164, 295, 558, 581).
One deviation, kept on purpose: for find_zero (HumanEval/32) a root passes, as on evalplus's main
branch; 0.3.1's `continue` skips the bookkeeping of that input, so 0.3.1 fails every find_zero
program, the canonical one included.
"""
import cmath as _cmath
import math as _math
import pickle as _pickle
import signal as _signal
import struct as _struct
import sys as _sys
import time as _time

_MIN_TIME_LIMIT = 1.0
_GT_TIME_LIMIT_FACTOR = 4.0
_GROUP_TIMEOUT_CAP = 60.0  # EVALPLUS_TIMEOUT_PER_TASK's default
_GROUP_TIMEOUT_EXTRA = 2.0  # untrusted_check: + 1 s (fast_check), then join(timeout + 1)
_MBPP_OUTPUT_NOT_NONE_TASKS = ["check_str", "text_match_three", "text_starta_endb"]
_MBPP_OUTPUT_SET_EQ_TASKS = ["similar_elements", "find_char_long", "common_in_nested_lists",
                             "extract_singly", "larg_nnum", "intersection_array", "find_dissimilar", "Diff"]

_plus = __sandbox_data__  # noqa: F821  (set by the sandbox harness)
_plus_inputs = _pickle.load(__sandbox_files__[0])  # noqa: F821
_plus_reference = __sandbox_files__[1]  # noqa: F821
_plus_state = {"next_group": 0}
# the hardened judge's check of a returned value (sandbox harness; None for the official judgement)
_plus_returned = __sandbox_returned__  # noqa: F821


def _reference_times(stream):
    """The trailer of the reference stream: every input's canonical time (the stream is left at 0)."""
    stream.seek(-8, 2)
    (offset,) = _struct.unpack("<Q", stream.read(8))
    stream.seek(offset)
    times = _pickle.load(stream)
    stream.seek(0)
    return times


_plus_times = _reference_times(_plus_reference)


class _Swallow:
    """evalplus's swallow_io for output: writes go nowhere."""

    def write(self, text):
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


def _poly(xs, x):
    return sum(coeff * _math.pow(x, i) for i, coeff in enumerate(xs))


def _surface_Area(b, h):  # noqa: N802  (evalplus's oracle for Mbpp/581)
    slant = _math.sqrt((b / 2) ** 2 + h ** 2)
    return round(b ** 2 + 4 * (b * slant) / 2)


def _digit_distance_nums(num1, num2):
    str1, str2 = str(num1), str(num2)
    width = max(len(str1), len(str2))
    return sum(abs(int(a) - int(b)) for a, b in zip(str1.zfill(width), str2.zfill(width)))


def _is_floats(x):
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(item, float) for item in x)
    if type(x).__name__ == "ndarray":
        return str(x.dtype) in ("float64", "float32")
    return False


def _allclose(out, exp, atol, rtol=1e-07):
    """numpy.allclose(out, exp, rtol, atol). numpy itself when the child has it loaded (the job loads it
    before the guard for a program that uses numpy; evalplus's parent always has it); otherwise the same
    rule in Python for what reaches it (numbers, and lists/tuples of one shape): |out - exp| <= atol +
    rtol * |exp| elementwise, infinities only equal to themselves, NaN never close; sequences of other
    shapes (which numpy would broadcast or refuse) and integers beyond int64 (an object array numpy
    refuses) are not close."""
    numpy = _sys.modules.get("numpy")
    if numpy is not None:
        return bool(numpy.allclose(out, exp, rtol=rtol, atol=atol))
    return _close(out, exp, atol, rtol)


def _close(out, exp, atol, rtol):
    if isinstance(out, (list, tuple)) or isinstance(exp, (list, tuple)):
        if not (isinstance(out, (list, tuple)) and isinstance(exp, (list, tuple))) or len(out) != len(exp):
            return False
        return all(_close(a, b, atol, rtol) for a, b in zip(out, exp))
    if not all(isinstance(x, (int, float, complex)) for x in (out, exp)):
        raise TypeError("allclose: not numbers")
    if any(isinstance(x, int) and not -2 ** 63 <= x < 2 ** 63 for x in (out, exp)):
        return False
    if not (_cmath.isfinite(out) and _cmath.isfinite(exp)):
        return out == exp
    return abs(out - exp) <= atol + rtol * abs(exp)


def _exact_match(out, exp, inp, atol):
    """`out == exp`, or what the task's special oracle accepts instead (dataset mbpp)."""
    entry_point = _plus["entry_point"]
    exact_match = out == exp
    if _plus["dataset"] == "mbpp":
        if entry_point == "are_equivalent":
            exact_match = exact_match or True
        elif entry_point == "sum_div":
            exact_match = exact_match or out == 0
        elif entry_point == "surface_Area":
            exact_match = exact_match or abs(out - _surface_Area(*inp)) <= atol
        elif entry_point == "digit_distance_nums":
            exact_match = exact_match or out == _digit_distance_nums(*inp)
        elif entry_point in _MBPP_OUTPUT_SET_EQ_TASKS:
            exact_match = set(out) == set(exp)
        elif entry_point in _MBPP_OUTPUT_NOT_NONE_TASKS:
            exact_match = out == exp if isinstance(out, bool) else exp == (out is not None)
    return exact_match


_SCALAR_TYPES = {int, float, complex, bool, str, bytes, type(None)}


def _same_types(out, exp):
    """`out` has exactly the types of `exp`, at every level of its lists, tuples and dicts."""
    if type(out) is not type(exp):
        return False
    if isinstance(exp, (list, tuple)):
        kinds = list(map(type, exp))  # at C speed: large outputs of scalars need no walk
        if len(out) != len(exp) or kinds != list(map(type, out)):
            return False
        return set(kinds) <= _SCALAR_TYPES or all(_same_types(a, b) for a, b in zip(out, exp))
    if isinstance(exp, dict):
        return all(key in exp and _same_types(value, exp[key]) for key, value in out.items())
    return True


def _special_oracle():
    entry_point = _plus["entry_point"]
    if _plus["dataset"] == "humaneval":
        return entry_point == "find_zero"
    return entry_point in ("are_equivalent", "sum_div", "surface_Area", "digit_distance_nums") or \
        entry_point in _MBPP_OUTPUT_SET_EQ_TASKS or entry_point in _MBPP_OUTPUT_NOT_NONE_TASKS


def _check_output(out, exp, inp, atol):
    """Raises unless `out` is right; returns the atol for the next input of the group. The hardened judge
    first requires plain data, and, where no special oracle decides, exactly the reference's types."""
    if _plus_returned is not None:
        _plus_returned(out)
        assert _special_oracle() or _same_types(out, exp), "output types differ from the reference"
    exact_match = _exact_match(out, exp, inp, atol)
    if _plus["dataset"] == "humaneval" and _plus["entry_point"] == "find_zero":
        assert abs(_poly(*inp, out)) <= atol, "find_zero: not a root"
        return atol
    if atol == 0 and _is_floats(exp):
        atol = 1e-6
    if not exact_match and atol != 0:
        assert type(out) is type(exp), "output type differs from the reference"
        if isinstance(exp, (list, tuple)):
            assert len(out) == len(exp), "output length differs from the reference"
        assert _allclose(out, exp, atol), "output not close to the reference"
    else:
        assert exact_match, "output differs from the reference"
    return atol


def _run_group(group, candidate_of, deadline):
    start = sum(_plus["group_sizes"][:group])
    candidate = candidate_of()
    atol = _plus["atol"]
    for index in range(start, start + _plus["group_sizes"][group]):
        exp = _pickle.load(_plus_reference)
        inp = _plus_inputs[index]
        limit = max(_MIN_TIME_LIMIT, _GT_TIME_LIMIT_FACTOR * _plus_times[index])
        # past the group's deadline the call is cut at once: the sandbox's alarm reports a timeout
        _signal.setitimer(_signal.ITIMER_REAL, max(1e-6, min(limit, deadline - _time.monotonic())))
        try:
            out = candidate(*inp)
        finally:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
        atol = _check_output(out, exp, inp, atol)


def _plus_group(group):
    assert group == _plus_state["next_group"], "input groups are checked in order"
    _plus_state["next_group"] += 1
    started = _time.monotonic()
    sizes = _plus["group_sizes"]
    limits = sum(max(_MIN_TIME_LIMIT, _GT_TIME_LIMIT_FACTOR * t)
                 for t in _plus_times[sum(sizes[:group]):sum(sizes[:group + 1])])
    deadline = started + min(_GROUP_TIMEOUT_CAP, limits) + _GROUP_TIMEOUT_EXTRA
    entry_point = _plus["entry_point"]

    def candidate_of():
        if group == 0:  # the sandbox already ran the program
            return __program_namespace__[entry_point]  # noqa: F821
        namespace = {}
        exec(__sandbox_program__, namespace)  # noqa: F821
        return namespace[entry_point]

    streams = _sys.stdout, _sys.stderr
    _sys.stdout = _sys.stderr = _Swallow()
    try:
        _run_group(group, candidate_of, deadline)
    finally:
        _sys.stdout, _sys.stderr = streams
