"""Verify programs of many problems through one sandbox: every benchmark's preparation jobs,
then every program, all sharing the sandbox's workers."""
from __future__ import annotations

import os
import shutil
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Callable, Iterable, Sequence

from data.records import Problem, Result, Verdict
from data.registry import Benchmark
from evaluation.sandbox import Sandbox


def _result(future: Future) -> Result:
    try:
        return future.result()
    except Exception as exc:  # the sandbox could not run it at all: counted, never silent
        return Result("harness_error", error=f"sandbox: {exc}")


def verify(sandbox: Sandbox, benchmark: Benchmark, items: Sequence[tuple[Problem, Sequence[str]]],
           timeout: float | None = None,
           on_done: Callable[[int, list[Verdict]], None] | None = None,
           hardened: bool = False, recheck: bool = False, flexible: bool = False) -> list[list[Verdict]]:
    """Judge `items` = [(problem, programs)]. Returns verdicts aligned with the programs;
    `on_done(index, verdicts)` is called as each problem completes (from the caller's thread).
    `hardened`: the judge of training rewards (`Job.hardened`): a program that changes builtins or the
    tests' modules, or hands the tests values that are not plain data, gets status "tampered" and
    reward 0; without it, the official harness's verdict. `recheck` (official verdicts only): each passed
    program runs again hardened, as soon as it passed, and its verdict's `hardened_rejected` says whether
    the hardened judge rejects it (False for a hardened pass; None for a program that did not pass).
    A benchmark that runs no code (`needs_sandbox` False: the math domains) is graded by its `grade`
    without the sandbox (`sandbox` may be None), `flexible` answer forms allowed only where asked (evaluation);
    no code runs, so there is nothing to harden."""
    if not benchmark.needs_sandbox:
        return grade_all(benchmark, items, timeout, on_done, flexible)
    run = uuid.uuid4().hex[:8]
    stores = [os.path.join(sandbox.shared_dir, f"{run}-{index}") for index in range(len(items))]
    prepared: list[Future | None] = []
    for (problem, _), store in zip(items, stores):
        os.mkdir(store, 0o700)
        job = benchmark.prepare(problem, store, timeout)
        prepared.append(sandbox.submit(job) if job is not None else None)
    futures: list[list[Future]] = []
    for (problem, programs), preparation, store in zip(items, prepared, stores):
        context = _result(preparation) if preparation is not None else None
        futures.append([_submit(sandbox, benchmark, problem, program, context, store, timeout, hardened,
                                recheck and not hardened) for program in programs])
    verdicts: list[list[Verdict]] = [[] for _ in items]
    for index in _completion_order(futures):
        shutil.rmtree(stores[index], ignore_errors=True)
        problem = items[index][0]
        verdicts[index] = [_verdict(benchmark, problem, future) for future in futures[index]]
        if on_done is not None:
            on_done(index, verdicts[index])
    return verdicts


def grade_all(benchmark: Benchmark, items: Sequence[tuple[Problem, Sequence[str]]], timeout: float | None = None,
              on_done: Callable[[int, list[Verdict]], None] | None = None,
              flexible: bool = False) -> list[list[Verdict]]:
    """Grade final answers in threads (a MATH comparison waits on math-verify's worker processes; a GSM8K
    one takes microseconds); `on_done` from the caller's thread in the order problems finish."""
    def grade(problem: Problem, programs: Sequence[str]) -> list[Verdict]:
        return [benchmark.grade(problem, program, flexible=flexible, timeout=timeout) for program in programs]

    verdicts: list[list[Verdict]] = [[] for _ in items]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {pool.submit(grade, problem, programs): index for index, (problem, programs) in enumerate(items)}
        for future in as_completed(futures):
            index = futures[future]
            verdicts[index] = future.result()
            if on_done is not None:
                on_done(index, verdicts[index])
    return verdicts


def _job(benchmark: Benchmark, problem: Problem, program: str, prepared: Result | None, store: str,
         timeout: float | None, hardened: bool):
    job = benchmark.job(problem, program, prepared, store, timeout)
    job.hardened = hardened
    return job


def _submit(sandbox: Sandbox, benchmark: Benchmark, problem: Problem, program: str, prepared: Result | None,
            store: str, timeout: float | None, hardened: bool, recheck: bool) -> Future:
    """The program's future: of its Result, or with `recheck` of (official Result, hardened Result or None)."""
    first = sandbox.submit(_job(benchmark, problem, program, prepared, store, timeout, hardened))
    if not recheck:
        return first
    both: Future = Future()

    def on_first(future: Future) -> None:
        result = _result(future)
        if result.status != "passed":
            both.set_result((result, None))
            return
        try:  # from the sandbox's thread: submit only queues the job
            second = sandbox.submit(_job(benchmark, problem, program, prepared, store, timeout, True))
        except Exception as exc:
            both.set_result((result, Result("harness_error", error=f"sandbox: {exc}")))
            return
        second.add_done_callback(lambda future: both.set_result((result, _result(future))))

    first.add_done_callback(on_first)
    return both


def _verdict(benchmark: Benchmark, problem: Problem, future: Future) -> Verdict:
    outcome = _result(future)
    result, rechecked = outcome if isinstance(outcome, tuple) else (outcome, None)
    verdict = benchmark.verdict(problem, result)
    if verdict.status == "tampered":  # never paid, whatever share of the tests it passed first
        verdict.reward = 0.0
    if rechecked is not None:
        verdict.hardened_rejected = rechecked.status != "passed"
    return verdict


def hardened_rejections(sandbox: Sandbox, benchmark: Benchmark, items: Sequence[tuple[Problem, Sequence[str]]],
                        verdicts: Sequence[Sequence[Verdict]], timeout: float | None = None) -> list[list[bool]]:
    """Which programs the official judge passed (`verdicts`, aligned with `items`) that the hardened
    judge rejects; only the passed ones run again, so this costs little where few pass."""
    again = [(problem, [program for program, verdict in zip(programs, judged) if verdict.status == "passed"])
             for (problem, programs), judged in zip(items, verdicts)]
    hardened = verify(sandbox, benchmark, again, timeout, hardened=True)
    rejected = []
    for judged, rejudged in zip(verdicts, hardened):
        second = iter(rejudged)
        rejected.append([verdict.status == "passed" and next(second).status != "passed" for verdict in judged])
    return rejected


def _completion_order(futures: list[list[Future]]) -> Iterable[int]:
    """Problem indices in the order their last program finishes."""
    done_event = threading.Condition()
    remaining = [len(group) for group in futures]
    finished: list[int] = []

    def callback(index: int) -> Callable[[Future], None]:
        def on_future(_: Future) -> None:
            with done_event:
                remaining[index] -= 1
                if remaining[index] == 0:
                    finished.append(index)
                    done_event.notify()
        return on_future

    for index, group in enumerate(futures):
        if not group:
            finished.append(index)
        for future in group:
            future.add_done_callback(callback(index))
    yielded = 0
    while yielded < len(futures):
        with done_event:
            while len(finished) <= yielded:
                done_event.wait()
            index = finished[yielded]
        yielded += 1
        yield index
