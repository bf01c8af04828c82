"""Grading final answers of math problems: no model code runs, so no sandbox.

Two rules, each returning a `Verdict` whose status is one of `MATH_STATUSES`, so that a completion
without an answer or a grader that ran out of time is counted, never a silent zero:

- GSM8K (and TinyMath): the answer is the number on the line after the last `####`, read
  leniently (`$`, thousands separators, units, a trailing period, a Unicode minus, `####18`,
  fractions, decimals, mixed numbers such as `7 1/2`) and compared with the reference as an exact
  `fractions.Fraction`, never as a float.
- MATH: the answer is the last `\\boxed{...}` (nested braces handled); it equals the reference when
  the two strings match once spaces are removed, or else when `math-verify` says so. math-verify's
  own time limit uses signals and so works only on a main thread; here it runs in a small pool of
  worker processes (`MathVerifyPool`), and a call that overruns its limit kills its worker.

Strict rules are for training rewards. `flexible=True` (evaluation only) also accepts an answer
given as `\\boxed{X}` or "The answer is X" when the strict form is missing; for MATH it hands the whole
completion to math-verify's own extraction.
"""
from __future__ import annotations

import argparse
import atexit
import json
import logging
import queue
import re
import select
import subprocess
import sys
import threading
import time
from fractions import Fraction

from data.records import Verdict

logger = logging.getLogger(__name__)

MATH_STATUSES = ("passed", "failed", "no_answer", "timeout", "harness_error")
DEFAULT_MATH_VERIFY_TIMEOUT = 5.0  # seconds for one comparison
MATH_VERIFY_MEMORY_BYTES = 4 * 1024 ** 3  # address space of a math-verify worker

# A number as models write it: sign (ASCII or Unicode minus), digits with optional thousands
# separators, decimals, an exponent, then an optional "/denominator" or, after a space, a proper
# fraction (a mixed number).
_NUMBER = re.compile(
    r"(?P<sign>[-\u2212\u2013]\s*)?\$?\s*(?P<sign_after>[-\u2212]\s*)?"
    r"(?:(?P<integer>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<decimal>\.\d+)?|(?P<fraction_part>\.\d+))"
    r"(?P<exponent>[eE][-+]?\d+)?"
    r"(?:\s*/\s*(?P<denominator>\d+)|\s+(?P<numerator>\d+)\s*/\s*(?P<mixed>\d+))?")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*:?\s*([^\n]*)", re.IGNORECASE)
_CALCULATOR_NOTE = re.compile(r"<<[^<>]*>>")


# -- reading answers (pure) ------------------------------------------------------------------------


def parse_number(text: str) -> Fraction | None:
    """The first number in `text` as an exact fraction, or None; after an `=` sign the number
    after the last one counts (`2 * 9 = 18` answers 18).

    >>> [parse_number(t) for t in ("$1,080.", "\u22127 apples", "7 1/2", "3/2", "18.50", "x = 4", "none")]
    [Fraction(1080, 1), Fraction(-7, 1), Fraction(15, 2), Fraction(3, 2), Fraction(37, 2), Fraction(4, 1), None]
    """
    text = text.rsplit("=", 1)[-1]
    match = _NUMBER.search(text)
    if match is None:
        return None
    digits = (match["integer"] or "0").replace(",", "") + (match["decimal"] or match["fraction_part"] or "")
    value = Fraction(digits + (match["exponent"] or ""))
    if match["denominator"]:
        if int(match["denominator"]) == 0:
            return None
        value /= int(match["denominator"])
    elif match["mixed"] and int(match["mixed"]) != 0:
        value += Fraction(int(match["numerator"]), int(match["mixed"]))
    return -value if match["sign"] or match["sign_after"] else value


def hash_answer(text: str) -> str | None:
    """The text of the line after the last `####`, or None when there is no `####`.

    >>> hash_answer("3 + 4 = 7\\n#### 7\\n#### 8 apples.\\n")
    '8 apples.'
    """
    if "####" not in text:
        return None
    return text.rsplit("####", 1)[1].strip().split("\n", 1)[0].strip()


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`, or `\\boxed 5`), braces balanced.

    >>> last_boxed(r"so \\boxed{1} or rather $\\boxed{\\frac{1}{2}}$.")
    '\\\\frac{1}{2}'
    """
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    rest = text[start:].removeprefix("\\boxed").removeprefix("\\fbox")
    if not rest.lstrip().startswith("{"):
        if not rest.startswith(" "):
            return None
        return re.split(r"[\s$]", rest.lstrip(), maxsplit=1)[0] or None  # "\boxed 5": up to a space or $
    depth, content = 1, rest.lstrip()[1:]
    for index, char in enumerate(content):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return content[:index].strip()
    return None  # unbalanced: the answer was cut off


def answer_is(text: str) -> str | None:
    """What follows the last "The answer is" (or "answer:") on its line.

    >>> answer_is("The answer is 12.\\nSo the final answer is $14$.")
    '$14$.'
    """
    found = _ANSWER_IS.findall(text)
    return found[-1].strip() if found else None


def strip_calculator_notes(solution: str) -> str:
    """GSM8K's reference solutions without the `<<...>>` calculator annotations.

    >>> strip_calculator_notes("16 - 3 = <<16-3=13>>13 eggs")
    '16 - 3 = 13 eggs'
    """
    return _CALCULATOR_NOTE.sub("", solution)


# -- GSM8K ------------------------------------------------------------------------------------------


def gsm8k_answer(completion: str, flexible: bool = False) -> Fraction | None:
    """The final answer of a GSM8K-format completion: the number after the last `####`; with
    `flexible`, else the last `\\boxed{}`, else "The answer is X".

    >>> boxed = "It is \\\\boxed{3}."
    >>> gsm8k_answer("12 / 4 = 3\\n####3 boxes."), gsm8k_answer(boxed), gsm8k_answer(boxed, flexible=True)
    (Fraction(3, 1), None, Fraction(3, 1))
    """
    candidates = [hash_answer(completion)]
    if flexible:
        candidates += [last_boxed(completion), answer_is(completion)]
    for text in candidates:
        value = parse_number(text) if text is not None else None
        if value is not None:
            return value
    return None


def grade_gsm8k(completion: str, reference: str, flexible: bool = False) -> Verdict:
    """Judge a GSM8K-format completion against the reference answer (e.g. "1,080").

    >>> grade_gsm8k("9 * 2 = 18\\n#### $18.00", "18").status, grade_gsm8k("I give up.", "18").status
    ('passed', 'no_answer')
    """
    start = time.monotonic()
    expected = parse_number(reference)
    if expected is None:
        return Verdict(0.0, "harness_error", error=f"reference answer {reference!r} is not a number")
    value = gsm8k_answer(completion, flexible)
    if value is None:
        return Verdict(0.0, "no_answer", error="no final answer found", time=time.monotonic() - start)
    passed = value == expected
    return Verdict(float(passed), "passed" if passed else "failed",
                   error=None if passed else f"answered {value}, expected {expected}", time=time.monotonic() - start)


# -- MATH -------------------------------------------------------------------------------------------


def same_text(answer: str, reference: str) -> bool:
    """Whether two LaTeX answers are the same string once spaces and `\\left`/`\\right` go.

    >>> same_text(r"\\left( 3, \\frac{\\pi}{2} \\right)", r"(3,\\frac{\\pi}{2})")
    True
    """
    def norm(text: str) -> str:
        return re.sub(r"\s+|\\left|\\right|\\!|\\,|\\;", "", text).replace("dfrac", "frac").replace("tfrac", "frac")
    return norm(answer) == norm(reference)


def grade_math(completion: str, reference: str, flexible: bool = False, timeout: float | None = None,
               pool: MathVerifyPool | None = None) -> Verdict:
    """Judge a MATH completion against the reference answer (LaTeX, without `\\boxed`)."""
    start = time.monotonic()
    boxed = last_boxed(completion)
    if boxed is None and not flexible:
        return Verdict(0.0, "no_answer", error="no \\boxed{} answer")
    if boxed is not None and same_text(boxed, reference):
        return Verdict(1.0, "passed", time=time.monotonic() - start)
    prediction = f"${boxed}$" if boxed is not None else completion
    status, error = (pool or default_pool()).equivalent(f"${reference}$", prediction, timeout)
    return Verdict(float(status == "passed"), status, error=error, time=time.monotonic() - start)


# -- math-verify off the main thread ---------------------------------------------------------------


def serve(memory_bytes: int | None) -> None:
    """A worker's loop: one JSON line `[gold, prediction]` in on stdin, one `[status, error]` out."""
    if memory_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its "timeout disabled" warnings
    answers, sys.stdout = sys.stdout, sys.stderr  # whatever the libraries print must not garble the answers
    from math_verify import parse, verify

    def compare(gold: str, prediction: str) -> tuple[str, str | None]:
        reference, parsed = parse(gold, parsing_timeout=None), parse(prediction, parsing_timeout=None)
        if not reference:
            return "harness_error", f"math-verify cannot read the reference {gold!r}"
        if not parsed:
            return "no_answer", "math-verify found no answer"
        if verify(reference, parsed, timeout_seconds=None):
            return "passed", None
        return "failed", f"answered {parsed[0]}"

    print(json.dumps("ready"), file=answers, flush=True)
    for line in sys.stdin:
        try:
            answer = compare(*json.loads(line))
        except Exception as exc:  # a parser bug is the grader's failure, reported as such
            answer = ("harness_error", f"math-verify: {type(exc).__name__}: {exc}")
        print(json.dumps(answer), file=answers, flush=True)


class _Worker:
    """One `python -m data.math_grading --serve` process (a fresh interpreter: nothing of the caller's
    state, threads or `__main__` is copied into it)."""

    def __init__(self, memory_bytes: int | None, startup_timeout: float = 120.0):
        command = [sys.executable, "-m", "data.math_grading", "--serve", "--memory_bytes", str(memory_bytes or 0)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        encoding="utf-8")
        try:
            ready = self.read(startup_timeout)
        except EOFError:
            ready = None
        if ready != "ready":
            self.close()
            raise RuntimeError("math-verify worker did not start (is math-verify installed?)")

    def ask(self, gold: str, prediction: str, timeout: float):
        self.process.stdin.write(json.dumps([gold, prediction]) + "\n")
        self.process.stdin.flush()
        return self.read(timeout)

    def read(self, timeout: float):
        """The next answer line, or None when none comes within `timeout` seconds."""
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.process.stdout.readline()
        if not line:
            raise EOFError(f"math-verify worker exited with status {self.process.poll()}")
        return json.loads(line)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:  # a pipe whose reader died
                pass


class MathVerifyPool:
    """Up to `workers` processes running math-verify, shared by any number of threads. A comparison
    that takes longer than its timeout gets status "timeout" and its worker is killed (a fresh one
    starts on demand), which is the only way to stop sympy mid-computation."""

    def __init__(self, workers: int = 2, timeout: float = DEFAULT_MATH_VERIFY_TIMEOUT,
                 memory_bytes: int | None = MATH_VERIFY_MEMORY_BYTES):
        self.timeout, self.memory_bytes = timeout, memory_bytes
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(workers)
        self._closed = False

    def equivalent(self, gold: str, prediction: str, timeout: float | None = None) -> tuple[str, str | None]:
        """(status, error): "passed" when math-verify finds `prediction`'s answer equal to `gold`."""
        if self._closed:
            raise RuntimeError("MathVerifyPool is closed")
        timeout = timeout or self.timeout
        with self._slots:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                worker = _Worker(self.memory_bytes)
            try:
                answer = worker.ask(gold, prediction, timeout)
            except (EOFError, OSError) as exc:  # the worker died (e.g. its memory limit)
                worker.close()
                return "harness_error", f"math-verify worker died: {exc}"
            if answer is None:
                worker.close()
                return "timeout", f"math-verify took over {timeout:g} s"
            if self._closed:
                worker.close()
            else:
                self._idle.put(worker)
            return answer[0], answer[1]

    def close(self) -> None:
        self._closed = True
        while not self._idle.empty():
            self._idle.get_nowait().close()

    def __enter__(self) -> MathVerifyPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_default_pool: MathVerifyPool | None = None
_default_lock = threading.Lock()


def default_pool() -> MathVerifyPool:
    """The process-wide pool, started on first use (importing this module starts nothing)."""
    global _default_pool
    with _default_lock:
        if _default_pool is None:
            _default_pool = MathVerifyPool()
            atexit.register(_default_pool.close)
        return _default_pool


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A math-verify worker for MathVerifyPool (not run by hand).")
    parser.add_argument("--serve", action="store_true", help="answer [gold, prediction] lines on stdin")
    parser.add_argument("--memory_bytes", type=int, default=0, help="address-space limit (0: none)")
    args = parser.parse_args(argv)
    if not args.serve:
        parser.error("nothing to do without --serve")
    serve(args.memory_bytes or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
