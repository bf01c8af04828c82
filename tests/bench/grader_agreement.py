"""Benchmark: our GSM8K grader and math-verify side by side, on real GSM8K reference solutions and
perturbed copies of them, listing every disagreement with its reason.

Each reference solution (calculator notes removed) is graded as it is and after one change to its
final line (units, `$`, thousands separators, `####18`, a Unicode minus, fractions, decimals, a
trailing period, "The answer is X" instead of `####`, `\\boxed{X}`, several `####` lines, a check
line after the answer, a wrong answer). Every variant has the verdict the strict GSM8K rule should
give (`expected`); our grader (`data.math_grading.grade_gsm8k`) and math-verify (whole completion
against `$<answer>$`, its default extraction, as its users call it) are both scored against it
(math-verify is not wrong to pass "The answer is X": it follows another rule; the table says how
often each grader matches the strict one).
Prints one line per disagreement, then a table per perturbation and one JSON line.

    python tests/bench/grader_agreement.py [--data ../shared/data/gsm8k/test.jsonl.gz] [--problems 300]
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from data.gsm8k import GSM8K
from data.math_grading import MathVerifyPool, grade_gsm8k

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "gsm8k" / "test.jsonl.gz"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="a GSM8K file (.jsonl or .jsonl.gz)")
    parser.add_argument("--problems", type=int, default=300, help="first N problems (0: all)")
    parser.add_argument("--workers", type=int, default=2, help="math-verify worker processes")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per math-verify comparison")
    return parser.parse_args()


def _body(solution: str) -> str:
    return solution.rsplit("####", 1)[0].rstrip("\n")


def _plain(answer: str) -> int:
    return int(answer.replace(",", ""))


# name -> (why the graders may differ, function(solution, answer) -> (completion, reference, expected) or None)
PERTURBATIONS = {
    "reference": ("unchanged", lambda s, a: (s, a, "passed")),
    "units": ("a unit word after the number", lambda s, a: (f"{_body(s)}\n#### {a} dollars", a, "passed")),
    "dollar": ("a dollar sign before the number", lambda s, a: (f"{_body(s)}\n#### ${a}", a, "passed")),
    "commas": ("thousands separators added", lambda s, a: (f"{_body(s)}\n#### {_plain(a):,}", a, "passed")
               if _plain(a) >= 1000 else None),
    "no_space": ("`####18`: no space after ####", lambda s, a: (f"{_body(s)}\n####{a}", a, "passed")),
    "unicode_minus": ("a Unicode minus (reference negated)",
                      lambda s, a: (f"{_body(s)}\n#### \u2212{a}", f"-{a}", "passed")),
    "fraction": ("the answer as a fraction 2X/2", lambda s, a: (f"{_body(s)}\n#### {2 * _plain(a)}/2", a, "passed")),
    "decimal": ("trailing zeros: X.00", lambda s, a: (f"{_body(s)}\n#### {a}.00", a, "passed")),
    "mixed_number": ("a mixed number `X 1/2` (reference X.5)",
                     lambda s, a: (f"{_body(s)}\n#### {_plain(a)} 1/2", f"{_plain(a)}.5", "passed")),
    "trailing_period": ("a period after the number", lambda s, a: (f"{_body(s)}\n#### {a}.", a, "passed")),
    "answer_is": ("`The answer is X.` instead of ####: no strict answer",
                  lambda s, a: (f"{_body(s)}\nThe answer is {a}.", a, "no_answer")),
    "boxed": ("`\\boxed{X}` instead of ####: no strict answer",
              lambda s, a: (f"{_body(s)}\n$\\boxed{{{a}}}$", a, "no_answer")),
    "wrong_then_right": ("two #### lines, the last right", lambda s, a: (
        f"{_body(s)}\n#### {_plain(a) + 1}\n#### {a}", a, "passed")),
    "right_then_wrong": ("two #### lines, the last wrong", lambda s, a: (
        f"{_body(s)}\n#### {a}\n#### {_plain(a) + 1}", a, "failed")),
    "check_line": ("a check line with other numbers after the answer",
                   lambda s, a: (f"{s}\nCheck: 2 + 3 = 5", a, "passed")),
    "wrong": ("a wrong answer (X + 1)", lambda s, a: (f"{_body(s)}\n#### {_plain(a) + 1}", a, "failed")),
}


def cases(problems) -> list[dict]:
    found = []
    for problem in problems:
        solution, answer = problem.meta["solution"], problem.test["answer"]
        for name, (reason, make) in PERTURBATIONS.items():
            made = make(solution, answer)
            if made is not None:
                found.append({"id": problem.id, "perturbation": name, "reason": reason, "completion": made[0],
                              "reference": made[1], "expected": made[2]})
    return found


def grade_all(items: list[dict], pool: MathVerifyPool, timeout: float, workers: int) -> None:
    def judge(item: dict) -> None:
        item["ours"] = grade_gsm8k(item["completion"], item["reference"]).status
        item["math_verify"] = pool.equivalent(f"${item['reference']}$", item["completion"], timeout)[0]

    with ThreadPoolExecutor(workers) as threads:
        list(threads.map(judge, items))


def why(item: dict) -> str:
    """The perturbation's reason, and the cause of most other disagreements when it applies."""
    body = _body(item["completion"]).lower()
    if "answer" in body and item["perturbation"] not in ("answer_is",):
        return item["reason"] + "; the reasoning says 'answer', and math-verify reads the number after it"
    return item["reason"]


def report(items: list[dict]) -> dict:
    disagreements = [item for item in items if (item["ours"] == "passed") != (item["math_verify"] == "passed")]
    for item in disagreements:
        tail = item["completion"].rsplit("\n", 2)[-2:]
        print(f"{item['id']:<16} {item['perturbation']:<17} ours={item['ours']:<9} math-verify="
              f"{item['math_verify']:<9} expected={item['expected']:<9} {why(item)}; ends {tail!r}")
    print(f"\n{'perturbation':<17} {'cases':>6} {'ours = strict rule':>19} {'math-verify = strict rule':>26} "
          f"{'disagree':>9}")
    summary = {}
    for name in PERTURBATIONS:
        group = [item for item in items if item["perturbation"] == name]
        if not group:
            continue
        row = {"cases": len(group),
               "ours_right": sum(item["ours"] == item["expected"] for item in group),
               "math_verify_right": sum((item["math_verify"] == "passed") == (item["expected"] == "passed")
                                        for item in group),
               "disagree": sum(item in disagreements for item in group)}
        summary[name] = row
        print(f"{name:<17} {row['cases']:>6} {row['ours_right']:>19} {row['math_verify_right']:>26} "
              f"{row['disagree']:>9}")
    statuses = Counter(item["math_verify"] for item in items)
    return {"cases": len(items), "disagreements": len(disagreements), "math_verify_statuses": dict(statuses),
            "per_perturbation": summary}


def main() -> int:
    args = parse_args()
    path = Path(args.data)
    if not path.exists():
        print(f"no GSM8K file at {path} (pass --data)", file=sys.stderr)
        return 2
    problems = GSM8K().load(str(path.parent), path.name.removesuffix(".gz"))
    problems = problems[:args.problems] if args.problems else problems
    items = cases(problems)
    with MathVerifyPool(workers=args.workers, timeout=args.timeout) as pool:
        grade_all(items, pool, args.timeout, args.workers)
    print(json.dumps(report(items)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
