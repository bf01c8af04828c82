"""Benchmark: where a TinyMath policy's test gap comes from, composition or fresh instances.

TinyMath's test split differs from train by held-out two-event templates. This probe asks the
policy fresh tasks outside them, in three groups (`--per_group` each, none a train question):
two-event templates that train holds, three-event templates that train holds, and three-event
templates train never drew (none ending in a held-out one). If the policy scores on these about
what it scores on the test split, its gap is to new instances (numbers, names, distractors), not to
new compositions. Greedy decoding through `evaluation.eval`, judged by the GSM8K rule; prints one
line per group with a bootstrap 95% interval over its tasks (as `evaluation.eval`'s) and one JSON line.

    python tests/bench/tinymath_probe.py [--policy models/ckpts/tiny-math] [--per_group 100]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from collections import defaultdict

from data import tinymath
from data.jsonl import read_jsonl, write_jsonl
from evaluation.eval import bootstrap_interval

GROUPS = ("seen_2_events", "seen_3_events", "unseen_3_events")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default=os.path.join("models", "ckpts", "tiny-math"))
    parser.add_argument("--seed", type=int, default=0, help="TinyMath's seed (the train split the policy saw)")
    parser.add_argument("--n_train", type=int, default=tinymath.N_TRAIN, help="train tasks the policy saw")
    parser.add_argument("--per_group", type=int, default=100, help="tasks per group")
    parser.add_argument("--probe_seed", type=int, default=123, help="seed of the fresh tasks")
    parser.add_argument("--max_tokens", type=int, default=128)
    parser.add_argument("--work", default=None, help="folder for the probe file and results (default: a temp dir)")
    return parser.parse_args()


def probe_tasks(seed: int, n_train: int, per_group: int, probe_seed: int) -> list[dict]:
    """Fresh tasks without a held-out pair, `per_group` in each of GROUPS."""
    train, _ = tinymath.generate(seed, n_train, 0)
    seen_templates = {record["template"] for record in train}
    seen_questions = {record["question"] for record in train}
    held = set(tinymath.held_out(seed)[0])
    rng = random.Random(probe_seed)
    groups: dict[str, list] = {group: [] for group in GROUPS}
    for _ in range(200_000):
        if all(len(tasks) == per_group for tasks in groups.values()):
            break
        kinds, question = tinymath.random_template(rng)
        if len(kinds) < 2 or tinymath.ending(kinds, question) in held:
            continue
        template = tinymath.template_name(kinds, question)
        group = f"{'seen' if template in seen_templates else 'unseen'}_{len(kinds)}_events"
        if group not in groups or len(groups[group]) == per_group:
            continue
        task = tinymath.make_task(kinds, question, "train", rng, [])
        if task is not None and task.question not in seen_questions:
            seen_questions.add(task.question)
            groups[group].append(task)
    records = []
    for group, tasks in groups.items():
        for task in tasks:
            record = tinymath.task_record(task, f"TinyMath/probe/{len(records)}", held_out=False)
            records.append({**record, "probe_group": group})
    return records


def main() -> int:
    args = parse_args()
    work = args.work or tempfile.mkdtemp(prefix="tinymath_probe_")
    records = probe_tasks(args.seed, args.n_train, args.per_group, args.probe_seed)
    write_jsonl(os.path.join(work, "probe.jsonl"), records)
    out = os.path.join(work, "results")
    subprocess.run([sys.executable, "-m", "evaluation.eval", "--domain", "TinyMath", "--directory", work,
                    "--file", "probe.jsonl", "--backend", args.policy, "--temperature", "0", "--n", "1",
                    "--max_tokens", str(args.max_tokens), "--output_dir", out], check=True,
                   stdout=subprocess.DEVNULL)
    group_of = {record["task_id"]: record["probe_group"] for record in records}
    rewards = defaultdict(list)
    (verified,) = [name for name in os.listdir(out) if name.endswith("_verified.jsonl")]
    for _, row in read_jsonl(os.path.join(out, verified)):
        rewards[group_of[row["id"]]].append(row["rewards"][0])
    summary = {}
    for group in GROUPS:
        values = rewards[group]
        mean = sum(values) / max(len(values), 1)
        low, high = bootstrap_interval(values, args.probe_seed)  # as evaluation.eval's strict_acc_ci95
        summary[group] = {"n": len(values), "pass@1": mean, "ci95": [low, high]}
        print(f"{group:>16}: greedy pass@1 {mean:.3f} [{low:.3f}, {high:.3f}] ({len(values)} tasks)")
    print(json.dumps({"policy": args.policy, "groups": summary, "work": work}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
