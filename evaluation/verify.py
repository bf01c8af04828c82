"""Verify programs against a benchmark's tests in the sandbox.

Reads   X.jsonl, one line per problem: {"id": ..., "completions": [program, ...]}, each program the
        full code (starter text plus the generated part).
Writes  Y.jsonl (default X_verified.jsonl), one line per id: {"id", "rewards", "statuses",
        "tests", "errors", "times"} aligned with the completions; resumable by id; Y.jsonl.args.json.
Prints  progress on stderr; as the last stdout line one JSON summary: n_problems, n_programs,
        average_acc, strict_acc, pass@1, programs_per_s, statuses, hardened, hardened_rejected.

Official verdicts by default (evaluation agrees with the benchmarks' harnesses); each pass is judged
again by the hardened judge of training rewards, and `hardened_rejected` counts those it rejects (per
program in the records). With --hardened the hardened judge's verdicts are the results. X.jsonl may
also be a completions file our stages write (sampling's `result.completions[].formatted_completion`,
MCTS traces' `completions[].completion`).

    python -m evaluation.verify --domain HumanEval --input samples.jsonl --workers 2

With --check_ground_truth (no --input) it verifies each problem's reference solution instead, as
bigcodebench's --check-gt-only does, and writes output/ground_truth/<Domain>.jsonl: the tasks whose
reference fails in this environment (--exec_python) are listed in the summary, and a later run's
--exclude_failed_ground_truth FILE leaves them out of the metrics (counted as n_excluded).

Exit 0 when the run completed (whatever the programs did); 2 with one line naming the file, line
and field on bad input; 1 with one line when the sandbox cannot run (finished lines are kept).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import Counter
from contextlib import ExitStack

from data.jsonl import DataError, JsonlAppender, output_lock, read_done, read_unique, write_json
from data.records import STATUSES
from data.registry import domains, get_benchmark
from evaluation.env_check import check_interpreters
from evaluation.judging import verify
from evaluation.metrics import STRICT_THRESHOLD, summarize
from evaluation.sandbox import Sandbox
from experiment.stage import stage_main

logger = logging.getLogger("evaluation.verify")
# a change in any of these changes results: a resumed run must not mix them
RESULT_ARGS = ("domain", "directory", "file", "timeout", "exec_python", "check_ground_truth", "hardened",
               "flexible_answers")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domain", required=True, help=f"benchmark: {', '.join(domains())}")
    parser.add_argument("--directory", default=None, help="data directory (default data/<Domain>)")
    parser.add_argument("--file", default=None, help="data file name inside --directory")
    parser.add_argument("--input", default=None, help="JSONL of {id, completions: [program, ...]}")
    parser.add_argument("--check_ground_truth", action="store_true",
                        help="verify the benchmark's reference solutions instead of --input")
    parser.add_argument("--exclude_failed_ground_truth", default=None, metavar="FILE",
                        help="a --check_ground_truth output: leave its failed tasks out of the metrics")
    parser.add_argument("--output", default=None, help="default: the input's name with _verified added")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds for one program's whole run (default: the benchmark's own)")
    parser.add_argument("--workers", type=int, default=None, help="parallel programs (default: cores)")
    parser.add_argument("--exec_python", default=None, help="interpreter that runs programs (default: this one)")
    parser.add_argument("--hardened", action="store_true",
                        help="judge as training rewards do: builtins and the tests' modules untouched, plain returned "
                             "values (else status tampered); default: the official verdicts, with the passes the "
                             "hardened judge rejects counted as hardened_rejected")
    parser.add_argument("--flexible_answers", action="store_true",
                        help="math domains, evaluation only: a completion without the strict final-answer form may "
                             "give it as \\boxed{X} or 'The answer is X' (training rewards never take these)")
    parser.add_argument("--no_recheck", action="store_true",
                        help="official verdicts only: skip judging the passes again hardened (no hardened_rejected)")
    args = parser.parse_args(argv)
    if not args.input and not args.check_ground_truth:
        parser.error("--input is required (or --check_ground_truth)")
    return args


def default_output(path: str) -> str:
    for suffix in (".jsonl.gz", ".jsonl"):
        if path.endswith(suffix):
            return path[: -len(suffix)] + "_verified.jsonl"
    return path + "_verified.jsonl"


def read_requests(path: str, known_ids: set[str]) -> list[tuple[str, list[str]]]:
    """The (id, programs) of each line; a DataError for an unknown id or one that appears twice."""
    requests = []
    for line, record in read_unique(path):
        programs = programs_of_record(record)
        if programs is None:
            raise DataError(path, line, "missing field 'completions'")
        problem_id = str(record["id"])
        if problem_id not in known_ids:
            raise DataError(path, line, f"field 'id': unknown id {problem_id!r} for this benchmark")
        if not isinstance(programs, list) or not all(isinstance(p, str) for p in programs):
            raise DataError(path, line, "field 'completions': expected a list of program strings")
        requests.append((problem_id, programs))
    return requests


def programs_of_record(record: dict):
    """The programs of an input line: `completions` as program strings, or as our stages write them:
    sampling's `result.completions[].formatted_completion`, MCTS traces' `completions[].completion`."""
    completions = record.get("completions")
    if completions is None and isinstance(record.get("result"), dict):
        completions = record["result"].get("completions")
    if isinstance(completions, list) and all(isinstance(item, dict) for item in completions):
        key = "formatted_completion" if any("formatted_completion" in item for item in completions) else "completion"
        return [item.get(key) for item in completions]
    return completions


def ground_truth_requests(benchmark, problems) -> list[tuple[str, list[str]]]:
    """Each problem's reference solution as its one program (none: no program, a failure)."""
    requests = []
    for problem in problems.values():
        try:
            requests.append((problem.id, [benchmark.reference_program(problem)]))
        except (ValueError, KeyError, IndexError):
            requests.append((problem.id, []))
    return requests


def failed_ground_truth(path: str) -> set[str]:
    return {str(record["id"]) for _, record in read_unique(path)
            if not record.get("rewards") or min(record["rewards"]) < STRICT_THRESHOLD}


def verify_arguments(domain: str, input_path: str | None, *, directory: str | None = None, file: str | None = None,
                     output: str | None = None, timeout: float | None = None, workers: int | None = None,
                     exec_python: str | None = None, check_ground_truth: bool = False,
                     exclude_failed_ground_truth: str | None = None, hardened: bool = False,
                     flexible_answers: bool = False) -> dict:
    """The arguments `verify_file` writes beside its output (a resumed run must match them in RESULT_ARGS)."""
    return {"domain": domain, "directory": directory, "file": file, "input": input_path,
            "check_ground_truth": check_ground_truth, "exclude_failed_ground_truth": exclude_failed_ground_truth,
            "output": output, "timeout": timeout, "workers": workers, "exec_python": exec_python,
            "hardened": hardened or None,  # None: runs from before the flag resume
            "flexible_answers": flexible_answers or None}


def verify_file(domain: str, input_path: str | None, *, directory: str | None = None, file: str | None = None,
                output: str | None = None, timeout: float | None = None, workers: int | None = None,
                exec_python: str | None = None, check_ground_truth: bool = False,
                exclude_failed_ground_truth: str | None = None,
                sandbox: Sandbox | None = None, hardened: bool = False,
                recheck: bool = True, flexible_answers: bool = False) -> tuple[dict, list[dict]]:
    """Judge the programs of `input_path` (with `check_ground_truth`: each problem's reference instead)
    on `domain`'s tests, written to `output` (default: beside the input, or output/ground_truth/) with
    the arguments in `<output>.args.json`, resuming an earlier run with the same result arguments, in
    `sandbox` (None: one of its own, started only when there is something to run). Returns the summary
    and the records in input order. Raises DataError/ValueError on bad input, SandboxError when the
    sandbox cannot run (lines already finished are kept)."""
    arguments = verify_arguments(domain, input_path, directory=directory, file=file, output=output, timeout=timeout,
                                 workers=workers, exec_python=exec_python, check_ground_truth=check_ground_truth,
                                 exclude_failed_ground_truth=exclude_failed_ground_truth, hardened=hardened,
                                 flexible_answers=flexible_answers)
    start = time.perf_counter()
    if not output:
        output = (os.path.join("output", "ground_truth", f"{domain}.jsonl") if check_ground_truth
                  else default_output(input_path))
    benchmark = get_benchmark(domain)
    problems = {problem.id: problem for problem in benchmark.load(directory, file)}
    check_interpreters(exec_python)
    if check_ground_truth:
        requests = ground_truth_requests(benchmark, problems)
    else:
        if not os.path.exists(input_path):
            raise DataError(input_path, None, "no such input file")
        requests = read_requests(input_path, set(problems))
    excluded = failed_ground_truth(exclude_failed_ground_truth) if exclude_failed_ground_truth else set()
    with output_lock(output):  # one writer: from before the resume read to the last line
        done = read_done(output, arguments, RESULT_ARGS)
        write_json(output + ".args.json", arguments)
        todo = [(problems[pid], programs) for pid, programs in requests if pid not in done and programs]
        n_programs = sum(len(programs) for _, programs in todo)
        logger.info("%s: %d problems to verify (%d programs), %d already done", domain, len(todo), n_programs,
                    len(done))
        records = dict(done)
        with JsonlAppender(output) as out, ExitStack() as stack:
            for pid, programs in requests:  # nothing to run: written at once
                if pid not in done and not programs:
                    records[pid] = empty_record(pid)
                    out.write(records[pid])
            if todo:
                if sandbox is None and benchmark.needs_sandbox:  # math grading runs no code
                    sandbox = stack.enter_context(Sandbox(workers=workers, exec_python=exec_python))
                verify_todo(sandbox, benchmark, todo, timeout, out, records, n_programs, hardened, recheck,
                            flexible_answers)
    elapsed = time.perf_counter() - start
    ordered = [records[pid] for pid, _ in requests if pid not in excluded]
    summary = summarize([record["rewards"] for record in ordered], ks=(1,))
    if exclude_failed_ground_truth:
        summary["n_excluded"] = sum(pid in excluded for pid, _ in requests)
    if check_ground_truth:
        failed = [record["id"] for record in ordered
                  if not record["rewards"] or record["rewards"][0] < STRICT_THRESHOLD]
        summary.update(n_failed=len(failed), failed_ids=failed, output=output)
    statuses = Counter(status for record in ordered for status in record["statuses"])
    summary.update(programs_per_s=round(n_programs / elapsed, 2) if n_programs else 0.0,
                   statuses={status: statuses[status] for status in STATUSES if statuses[status]},
                   hardened=hardened, hardened_rejected=hardened_rejected(ordered))
    return summary, ordered


def hardened_rejected(records: list[dict]) -> int:
    """How many passes of the official judge the hardened judge rejects (records of older runs: none)."""
    return sum(sum(bool(flag) for flag in record.get("hardened_rejected") or []) for record in records)


def empty_record(problem_id: str) -> dict:
    return {"id": problem_id, "rewards": [], "statuses": [], "tests": [], "errors": [], "times": []}


def verified_record(problem_id: str, verdicts) -> dict:
    return {"id": problem_id, "rewards": [v.reward for v in verdicts], "statuses": [v.status for v in verdicts],
            "tests": [v.tests for v in verdicts], "errors": [v.error for v in verdicts],
            "times": [round(v.time, 4) for v in verdicts],
            "hardened_rejected": [v.hardened_rejected is True for v in verdicts]}


def verify_todo(sandbox: Sandbox, benchmark, todo, timeout: float | None, out: JsonlAppender, records: dict,
                n_programs: int, hardened: bool = False, recheck: bool = True,
                flexible_answers: bool = False) -> None:
    """Judge `todo` = [(problem, programs)] in `sandbox`, each problem's record written and kept in
    `records` as it finishes; official verdicts have their passes judged again hardened (`hardened_rejected`)."""
    from tqdm import tqdm

    with tqdm(total=n_programs, unit="prog", file=sys.stderr) as bar:
        def on_done(index: int, verdicts) -> None:
            problem = todo[index][0]
            records[problem.id] = verified_record(problem.id, verdicts)
            out.write(records[problem.id])
            bar.update(len(verdicts))

        verify(sandbox, benchmark, todo, timeout, on_done, hardened=hardened, recheck=recheck and not hardened,
               flexible=flexible_answers)


class BackgroundVerifier:
    """Judges batches of (problem, programs) on one thread while the caller goes on (evaluation.eval
    samples its next chunk meanwhile), each problem's record appended to `output` as it finishes, as
    `verify_file` with `arguments` (`verify_arguments`) would write it: a later `verify_file` on the
    same output resumes after them. Holds the output's lock while open; at most two batches wait (what
    a kill can lose); problems already in the output or without programs are left to `verify_file`.

        with BackgroundVerifier(sandbox, benchmark, verified_path, arguments, timeout) as verifier:
            verifier.submit([(problem, programs), ...])
    """

    def __init__(self, sandbox: Sandbox, benchmark, output: str, arguments: dict, timeout: float | None = None):
        self.sandbox, self.benchmark, self.output, self.arguments = sandbox, benchmark, output, arguments
        self.timeout = timeout
        self.pending: list = []

    def __enter__(self) -> "BackgroundVerifier":
        from concurrent.futures import ThreadPoolExecutor

        with ExitStack() as stack:
            stack.enter_context(output_lock(self.output))
            self.done = set(read_done(self.output, self.arguments, RESULT_ARGS))
            write_json(self.output + ".args.json", self.arguments)
            self.out = stack.enter_context(JsonlAppender(self.output))
            self.thread = stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify"))
            self.stack = stack.pop_all()
        return self

    def submit(self, items) -> None:
        todo = [(problem, programs) for problem, programs in items if programs and problem.id not in self.done]
        if not todo:
            return
        while len(self.pending) >= 2:
            self.pending.pop(0).result()
        self.pending.append(self.thread.submit(self._verify, todo))

    def _verify(self, todo) -> None:
        def on_done(index: int, verdicts) -> None:
            self.out.write(verified_record(todo[index][0].id, verdicts))

        hardened = bool(self.arguments.get("hardened"))
        verify(self.sandbox, self.benchmark, todo, self.timeout, on_done, hardened=hardened, recheck=not hardened,
               flexible=bool(self.arguments.get("flexible_answers")))

    def __exit__(self, *exc) -> None:
        try:
            for future in self.pending:
                future.result()
        finally:
            self.stack.close()


def verify_command(args: argparse.Namespace) -> None:
    """The command line's run: `verify_file` on the flags, its summary printed as one JSON line."""
    summary, _ = verify_file(args.domain, args.input, directory=args.directory, file=args.file, output=args.output,
                             timeout=args.timeout, workers=args.workers, exec_python=args.exec_python,
                             check_ground_truth=args.check_ground_truth,
                             exclude_failed_ground_truth=args.exclude_failed_ground_truth, hardened=args.hardened,
                             recheck=not args.no_recheck, flexible_answers=args.flexible_answers)
    print(json.dumps(summary))


def main(argv=None) -> int:
    return stage_main(verify_command, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
