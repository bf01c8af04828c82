"""Verify programs against a benchmark's tests in the sandbox.

Reads   X.jsonl, one line per problem: {"id": ..., "completions": [program, ...]}, each program the
        full code (starter text plus the generated part).
Writes  Y.jsonl (default X_verified.jsonl), one line per id: {"id", "rewards", "statuses",
        "tests", "errors", "times"} aligned with the completions; resumable by id; Y.jsonl.args.json.
Prints  progress on stderr; as the last stdout line one JSON summary: n_problems, n_programs,
        average_acc, strict_acc, pass@1, programs_per_s, statuses.

    python -m evaluation.verify --domain HumanEval --input samples.jsonl --workers 2

With --check_ground_truth (no --input) it verifies each problem's reference solution instead, as
bigcodebench's --check-gt-only does, and writes output/ground_truth/<Domain>.jsonl: the tasks whose
reference fails in this environment (--exec_python) are listed in the summary, and a later run's
--exclude_failed_ground_truth FILE leaves them out of the metrics (counted as n_excluded).

Exit 0 when the run completed (whatever the programs did); 2 with one line naming the file, line
and field on bad input.
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

from data.jsonl import DataError, JsonlAppender, read_done, read_jsonl, write_json
from data.registry import domains, get_benchmark
from evaluation.env_check import check_interpreters
from evaluation.execution import STATUSES, Sandbox, SandboxError
from evaluation.metrics import STRICT_THRESHOLD, summarize
from evaluation.verifier import verify

logger = logging.getLogger("evaluation.verify")
# a change in any of these changes results: a resumed run must not mix them
RESULT_ARGS = ("domain", "directory", "file", "timeout", "exec_python", "check_ground_truth")


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
    requests, seen = [], set()
    for line, record in read_jsonl(path):
        if "id" not in record:
            raise DataError(path, line, "missing field 'id'")
        if "completions" not in record:
            raise DataError(path, line, "missing field 'completions'")
        problem_id, programs = str(record["id"]), record["completions"]
        if problem_id not in known_ids:
            raise DataError(path, line, f"field 'id': unknown id {problem_id!r} for this benchmark")
        if not isinstance(programs, list) or not all(isinstance(p, str) for p in programs):
            raise DataError(path, line, "field 'completions': expected a list of program strings")
        if problem_id in seen:
            raise DataError(path, line, f"field 'id': duplicate id {problem_id!r}")
        seen.add(problem_id)
        requests.append((problem_id, programs))
    return requests


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
    return {str(record["id"]) for _, record in read_jsonl(path)
            if not record.get("rewards") or min(record["rewards"]) < STRICT_THRESHOLD}


def run(args: argparse.Namespace, sandbox: Sandbox | None = None) -> tuple[dict, list[dict]]:
    """Verify what `args` names (resuming an earlier run) in `sandbox` (None: one of its own, started
    only when there is something to run); returns the summary and the records in input order. Raises
    DataError/ValueError on bad input, SandboxError when the sandbox cannot run (lines already
    finished are kept)."""
    start = time.perf_counter()
    if args.check_ground_truth:
        output = args.output or os.path.join("output", "ground_truth", f"{args.domain}.jsonl")
    else:
        output = args.output or default_output(args.input)
    excluded: set[str] = set()
    benchmark = get_benchmark(args.domain)
    problems = {problem.id: problem for problem in benchmark.load(args.directory, args.file)}
    check_interpreters(args.exec_python)
    if args.check_ground_truth:
        requests = ground_truth_requests(benchmark, problems)
    else:
        if not os.path.exists(args.input):
            raise DataError(args.input, None, "no such input file")
        requests = read_requests(args.input, set(problems))
    if args.exclude_failed_ground_truth:
        excluded = failed_ground_truth(args.exclude_failed_ground_truth)
    done = read_done(output, vars(args), RESULT_ARGS)
    write_json(output + ".args.json", vars(args))
    todo = [(problems[pid], programs) for pid, programs in requests if pid not in done and programs]
    n_programs = sum(len(programs) for _, programs in todo)
    logger.info("%s: %d problems to verify (%d programs), %d already done",
                args.domain, len(todo), n_programs, len(done))
    records = dict(done)
    with JsonlAppender(output) as out:
        for pid, programs in requests:  # nothing to run: written at once
            if pid not in done and not programs:
                records[pid] = empty_record(pid)
                out.write(records[pid])
        if todo:
            verify_todo(args, benchmark, todo, out, records, n_programs, sandbox)
    elapsed = time.perf_counter() - start
    ordered = [records[pid] for pid, _ in requests if pid not in excluded]
    summary = summarize([record["rewards"] for record in ordered], ks=(1,))
    if args.exclude_failed_ground_truth:
        summary["n_excluded"] = sum(pid in excluded for pid, _ in requests)
    if args.check_ground_truth:
        failed = [record["id"] for record in ordered
                  if not record["rewards"] or record["rewards"][0] < STRICT_THRESHOLD]
        summary.update(n_failed=len(failed), failed_ids=failed, output=output)
    statuses = Counter(status for record in ordered for status in record["statuses"])
    summary.update(programs_per_s=round(n_programs / elapsed, 2) if n_programs else 0.0,
                   statuses={status: statuses[status] for status in STATUSES if statuses[status]})
    return summary, ordered


def empty_record(problem_id: str) -> dict:
    return {"id": problem_id, "rewards": [], "statuses": [], "tests": [], "errors": [], "times": []}


def verify_todo(args, benchmark, todo, out: JsonlAppender, records: dict, n_programs: int,
                sandbox: Sandbox | None = None) -> None:
    from tqdm import tqdm

    with ExitStack() as stack, tqdm(total=n_programs, unit="prog", file=sys.stderr) as bar:
        if sandbox is None:
            sandbox = stack.enter_context(Sandbox(workers=args.workers, exec_python=args.exec_python))

        def on_done(index: int, verdicts) -> None:
            problem = todo[index][0]
            record = {"id": problem.id, "rewards": [v.reward for v in verdicts],
                      "statuses": [v.status for v in verdicts], "tests": [v.tests for v in verdicts],
                      "errors": [v.error for v in verdicts], "times": [round(v.time, 4) for v in verdicts]}
            out.write(record)
            records[problem.id] = record
            bar.update(len(verdicts))

        verify(sandbox, benchmark, todo, args.timeout, on_done)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    try:
        summary, _ = run(args)
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SandboxError as exc:  # the sandbox itself cannot run; finished lines are kept
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
