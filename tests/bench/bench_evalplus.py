"""Benchmark and cross-check: our HumanEval+ / MBPP+ judge against evalplus 0.3.1 itself.

For every task of the dataset: the canonical solution plus `--mutants` seeded mutants of it (a
comparison flipped, a constant moved by one, operands swapped, and/or swapped, a returned
sequence reversed, a returned tuple turned into a list, a returned float moved by a hair), the
same programs judged by

    ours:   python -m evaluation.verify --domain HumanEvalPlus|MBPPPlus ... --workers N
    theirs: evalplus.evaluate.evaluate(dataset, samples, parallel=N) of evalplus==0.3.1, in its own
            venv (`--venv`, default /tmp/evalplus-venv; build it with
            `python -m venv /tmp/evalplus-venv && /tmp/evalplus-venv/bin/pip install evalplus==0.3.1`),
            reading the same data file (HUMANEVAL_OVERRIDE_PATH / MBPP_OVERRIDE_PATH) and computing
            its ground truth afresh (an empty cache directory), as ours does.

evalplus passes a program when base_status == plus_status == "pass"; ours when the reward is 1.
Both judges limit each input to max(1 s, 4 x the canonical time), so on a busy machine a program
near its limit can time out on one side only: the disagreements are judged again by both, alone
(one worker, only those programs), and only those that repeat count. Prints every disagreement
(HumanEval/32 find_zero is counted apart: evalplus 0.3.1 fails every program there, see
data/evalplus_harness.py), both wall times of the whole command side by side, then one JSON line.

    python tests/bench/bench_evalplus.py [--dataset humaneval|mbpp|both] [--mutants 3] [--workers 2]
"""
from __future__ import annotations

import argparse
import ast
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATASETS = {"humaneval": ("HumanEvalPlus", "humanevalplus/HumanEvalPlus.jsonl.gz", "HUMANEVAL"),
            "mbpp": ("MBPPPlus", "mbppplus/MbppPlus.jsonl.gz", "MBPP")}
KNOWN_DEVIATIONS = {"HumanEval/32"}  # find_zero: evalplus 0.3.1 fails every program (see module docstring)
FLIPPED = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq,
           ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
EVALPLUS_DRIVER = """
import sys
from evalplus.evaluate import evaluate
evaluate(dataset=sys.argv[1], samples=sys.argv[2], parallel=int(sys.argv[3]), i_just_wanna_run=True)
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=("humaneval", "mbpp", "both"), default="both", help="which dataset(s)")
    parser.add_argument("--mutants", type=int, default=3, help="mutants per task besides the canonical solution")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutation choices")
    parser.add_argument("--workers", type=int, default=2, help="parallel programs, both sides")
    parser.add_argument("--venv", default="/tmp/evalplus-venv", help="the venv holding evalplus==0.3.1")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"),
                        help="the shared data directory (holds humanevalplus/, mbppplus/)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N tasks (a quick look)")
    parser.add_argument("--keep", default=None, help="keep the programs and results in this directory")
    return parser.parse_args()


# ------------------------------------------------------------------------------------------------
# mutants


def _sites(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    sites = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(type(op) in FLIPPED for op in node.ops):
            sites.append(("flip_comparison", node))
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
            sites.append(("constant_by_one", node))
        elif isinstance(node, ast.BinOp) and not isinstance(node.op, (ast.Mult, ast.BitAnd, ast.BitOr)):
            sites.append(("swap_operands", node))
        elif isinstance(node, ast.BoolOp):
            sites.append(("and_or", node))
        elif isinstance(node, ast.Return) and node.value is not None:
            sites.extend([("reverse_returned", node), ("tuple_to_list", node), ("nudge_float", node)])
    return sites


def _mutate(kind: str, node: ast.AST, rng: random.Random) -> None:
    if kind == "flip_comparison":
        index = rng.choice([i for i, op in enumerate(node.ops) if type(op) in FLIPPED])
        node.ops[index] = FLIPPED[type(node.ops[index])]()
    elif kind == "constant_by_one":
        node.value = node.value + rng.choice((-1, 1))
    elif kind == "swap_operands":
        node.left, node.right = node.right, node.left
    elif kind == "and_or":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    else:  # the same elements in another order or container, or a float off by a hair
        wrapper = {"reverse_returned": "(lambda v: type(v)(reversed(v)) if isinstance(v, (list, tuple)) else v)",
                   "tuple_to_list": "(lambda v: list(v) if isinstance(v, tuple) else v)",
                   "nudge_float": "(lambda v: v * (1 + 1e-9) + 1e-9 if isinstance(v, float) else v)"}[kind]
        node.value = ast.Call(ast.parse(wrapper, mode="eval").body, [node.value], [])


def mutants(program: str, count: int, rng: random.Random) -> list[str]:
    """Up to `count` distinct programs, each `program` with one seeded mutation (none equal to it)."""
    canonical = ast.unparse(ast.parse(program))
    found: list[str] = []
    for _ in range(count * 8):
        if len(found) == count:
            break
        tree = ast.parse(program)
        sites = _sites(tree)
        if not sites:
            break
        kinds = sorted({kind for kind, _ in sites})
        kind = rng.choice(kinds)
        _mutate(kind, rng.choice([node for k, node in sites if k == kind]), rng)
        text = ast.unparse(ast.fix_missing_locations(tree))
        if text != canonical and text not in found:
            found.append(text)
    return found


def build_programs(tasks: list[dict], count: int, seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    return {task["task_id"]: [task["prompt"] + task["canonical_solution"]]
            + mutants(task["prompt"] + task["canonical_solution"], count, rng) for task in tasks}


# ------------------------------------------------------------------------------------------------
# the two judges


def run_ours(domain: str, data: Path, programs: dict, workers: int, tmp: Path) -> tuple[float, dict]:
    samples, output = tmp / f"ours_{domain}.jsonl", tmp / f"ours_{domain}_verified.jsonl"
    with open(samples, "w") as out:
        for task_id, texts in programs.items():
            out.write(json.dumps({"id": task_id, "completions": texts}) + "\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "evaluation.verify", "--domain", domain, "--directory", str(data.parent),
                    "--file", data.name, "--input", str(samples), "--output", str(output), "--workers", str(workers)],
                   check=True, env=env, cwd=tmp, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    verdicts = {}
    for line in open(output):
        record = json.loads(line)
        for text, reward, status in zip(programs[record["id"]], record["rewards"], record["statuses"]):
            verdicts[(record["id"], text)] = (reward == 1.0, status)
    return seconds, verdicts


def run_theirs(dataset: str, data: Path, programs: dict, workers: int, venv: str, tmp: Path,
               limited: bool) -> tuple[float, dict]:
    samples = tmp / f"evalplus_{dataset}.jsonl"
    with open(samples, "w") as out:
        for task_id, texts in programs.items():
            for text in texts:
                out.write(json.dumps({"task_id": task_id, "solution": text}) + "\n")
    source = data
    if limited:  # evalplus insists on samples for every task of its file
        source = tmp / f"{dataset}_subset.jsonl"
        with gzip.open(data, "rt") as handle, open(source, "w") as out:
            out.writelines(line for line in handle if line.strip() and json.loads(line)["task_id"] in programs)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(tmp / "evalplus-cache"),
           f"{DATASETS[dataset][2]}_OVERRIDE_PATH": str(source)}
    start = time.perf_counter()
    subprocess.run([os.path.join(venv, "bin", "python"), "-c", EVALPLUS_DRIVER, dataset, str(samples), str(workers)],
                   check=True, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    results = json.load(open(tmp / f"evalplus_{dataset}_eval_results.json"))["eval"]
    verdicts = {}
    for task_id, rows in results.items():
        for row in rows:
            passed = row["base_status"] == "pass" and row["plus_status"] == "pass"
            verdicts[(task_id, row["solution"])] = (passed, f"{row['base_status']}/{row['plus_status']}")
    return seconds, verdicts


def compare(dataset: str, args: argparse.Namespace, tmp: Path) -> dict:
    domain, relative, _ = DATASETS[dataset]
    data = Path(args.data) / relative
    with gzip.open(data, "rt") as handle:
        tasks = [json.loads(line) for line in handle if line.strip()][:args.limit]
    programs = build_programs(tasks, args.mutants, args.seed)
    n_programs = sum(len(texts) for texts in programs.values())
    theirs_s, theirs = run_theirs(dataset, data, programs, args.workers, args.venv, tmp, args.limit is not None)
    ours_s, ours = run_ours(domain, data, programs, args.workers, tmp)
    first = disagree(programs, ours, theirs)
    deviations = [row for row in first if row["task_id"] in KNOWN_DEVIATIONS]
    first = [row for row in first if row["task_id"] not in KNOWN_DEVIATIONS]
    disagreements = recheck(dataset, data, programs, first, args, tmp) if first else []
    for row in disagreements:
        print(f"DISAGREE {dataset} {row['task_id']} program {row['program']}: ours {row['ours']}, "
              f"evalplus {row['evalplus']}")
    print(f"{dataset}: {len(tasks)} tasks, {n_programs} programs ({sum(v[0] for v in theirs.values())} pass "
          f"evalplus); ours {ours_s:.1f} s, evalplus {theirs_s:.1f} s (ours/evalplus {ours_s / theirs_s:.2f}); "
          f"{len(disagreements)} disagreements ({len(first)} before the recheck), {len(deviations)} on the "
          "documented find_zero deviation")
    return {"dataset": dataset, "tasks": len(tasks), "programs": n_programs, "ours_s": round(ours_s, 1),
            "evalplus_s": round(theirs_s, 1), "disagreements": len(disagreements),
            "disagreements_before_recheck": len(first), "find_zero_deviation": len(deviations)}


def disagree(programs: dict, ours: dict, theirs: dict) -> list[dict]:
    rows = []
    for task_id, texts in programs.items():
        for index, text in enumerate(texts):
            mine, other = ours[(task_id, text)], theirs[(task_id, text)]
            if mine[0] != other[0]:
                rows.append({"task_id": task_id, "program": index, "text": text, "ours": mine[1],
                             "evalplus": other[1]})
    return rows


def recheck(dataset: str, data: Path, programs: dict, rows: list[dict], args, tmp: Path) -> list[dict]:
    """The disagreements that repeat when both judges see only those programs, one at a time."""
    subset: dict[str, list[str]] = {}
    for row in rows:
        subset.setdefault(row["task_id"], []).append(row["text"])
    again = tmp / "recheck"
    again.mkdir(exist_ok=True)
    _, theirs = run_theirs(dataset, data, subset, 1, args.venv, again, limited=True)
    _, ours = run_ours(DATASETS[dataset][0], data, subset, 1, again)
    repeated = {(row["task_id"], row["text"]) for row in disagree(subset, ours, theirs)}
    for row in rows:
        if (row["task_id"], row["text"]) not in repeated:
            print(f"not repeated: {dataset} {row['task_id']} program {row['program']} (ours {row['ours']}, "
                  f"evalplus {row['evalplus']} in the first run)")
    return [row for row in rows if (row["task_id"], row["text"]) in repeated]


def main() -> None:
    args = parse_args()
    if not os.path.exists(os.path.join(args.venv, "bin", "python")):
        sys.exit(f"error: no venv at {args.venv}; see this script's docstring")
    datasets = ["humaneval", "mbpp"] if args.dataset == "both" else [args.dataset]
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(args.keep or scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        summary = [compare(dataset, args, tmp) for dataset in datasets]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
