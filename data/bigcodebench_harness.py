"""Runs inside the sandbox child only (never imported by the project): BigCodeBench's unittest
suite over one program, reported one test method at a time.

The job's setup made the program's namespace a module named `__test__` (as the official harness
does) and the program has run in it. Here, in the harness's copy of that namespace:
- the test source (`__sandbox_data__["test"]`, loaded only here, never in the parent) is executed
  into the program's namespace, so the tests see the program's names and
  `patch(__name__ + ".x")` patches what the program's functions see;
- each test is `_bcb_check(i)`, for the i-th of `__sandbox_data__["methods"]` (the `TestCases`
  methods found in the parent by parsing the test source; no code of it ran there). The first call
  runs the whole suite once, as one `unittest` run (class fixtures, sorted order, as
  `TestLoader` would); every call then reports its method: passed (skips, expected failures and
  unexpected successes included, as in the original), failed (an assertion or a failing subtest)
  or an error (any other exception, or a method that did not run).
Stdlib only, Python >= 3.8.
"""
import sys as _sys
import unittest as _unittest

_bcb = __sandbox_data__  # noqa: F821  (set by the sandbox harness)
_bcb_module = _sys.modules.get("__test__")
_bcb_globals = getattr(_bcb_module, "__dict__", None)
if not isinstance(_bcb_globals, dict):  # the program replaced the module: use the harness's copy
    _bcb_globals = globals()
_bcb_wrap = globals().get("__sandbox_wrap__")  # the hardened judge: the tests' calls return checked values
_bcb_entry = _bcb.get("entry_point", "task_func")
if _bcb_wrap is not None and callable(_bcb_globals.get(_bcb_entry)):
    _bcb_globals[_bcb_entry] = _bcb_wrap(_bcb_globals[_bcb_entry])
exec(compile(_bcb["test"], "__test__.py", "exec"), _bcb_globals)
_bcb_state = {}


class _BcbTestError(Exception):
    """A test method that raised something other than an assertion (reported as runtime_error)."""


def _bcb_summary(err):
    kind, value = err[0], err[1]
    try:
        text = "%s: %s" % (kind.__name__, value)
    except BaseException:
        text = getattr(kind, "__name__", "error")
    return text[:500]


class _BcbResult(_unittest.TestResult):
    """Collects one outcome per test method; a subtest's failure fails its method (once)."""

    def __init__(self):
        super().__init__()
        self.outcomes = {}
        self.other_errors = []  # class or module fixtures: no method to charge

    def startTest(self, test):  # noqa: N802  (unittest's name)
        super().startTest(test)
        self.outcomes.setdefault(test._testMethodName, ("passed", None))

    def _bad(self, test, kind, err):
        name = getattr(test, "_testMethodName", None)
        if name is None:
            self.other_errors.append("%s: %s" % (test, _bcb_summary(err)))
        elif self.outcomes.get(name, ("passed",))[0] == "passed":
            self.outcomes[name] = (kind, _bcb_summary(err))

    def addFailure(self, test, err):  # noqa: N802
        self._bad(test, "failure", err)

    def addError(self, test, err):  # noqa: N802
        self._bad(test, "error", err)

    def addSubTest(self, test, subtest, err):  # noqa: N802
        if err is not None:
            self._bad(test, "failure" if issubclass(err[0], test.failureException) else "error", err)


def _bcb_run():
    cases = _bcb_globals.get("TestCases")
    if not (isinstance(cases, type) and issubclass(cases, _unittest.TestCase)):
        raise _BcbTestError("the test code defines no unittest.TestCase named TestCases")
    suite, missing = _unittest.TestSuite(), {}
    for name in _bcb["methods"]:
        try:
            suite.addTest(cases(name))
        except (ValueError, AttributeError) as exc:  # a method the parent saw but the class lacks
            missing[name] = ("error", "%s: %s" % (type(exc).__name__, exc))
    result = _BcbResult()
    suite.run(result)
    outcomes = dict(result.outcomes, **missing)
    why = "; ".join(result.other_errors)[:500] or "the suite did not run it"
    return {name: outcomes.get(name, ("error", "did not run: " + why)) for name in _bcb["methods"]}


def _bcb_check(index):
    if "outcomes" not in _bcb_state:
        _bcb_state["outcomes"] = _bcb_run()
    name = _bcb["methods"][index]
    kind, message = _bcb_state["outcomes"][name]
    if kind == "failure":
        raise AssertionError("%s: %s" % (name, message))
    if kind == "error":
        raise _BcbTestError("%s: %s" % (name, message))
