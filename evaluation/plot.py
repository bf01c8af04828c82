"""Accuracy against budget, as the paper's budget figure: one point per results file, with its 95%
interval, grouped into lines by label.

Reads   `*_results.jsonl` files written by evaluation.eval (a `label=path` argument names its line;
        files of one label are joined in order of budget).
Writes  the PNG at --output, and prints one JSON line per point.

    python -m evaluation.plot --x samples --output output/budget.png \
        "Best-of-N=output/tinycode_results/Common/tiny/rm_..._sample_4_..._results.jsonl" \
        "VM-MCTS=output/tinycode_results/MCTS/tiny/rm_..._iter_4_..._results.jsonl"
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict

from data.jsonl import DataError, read_jsonl

X_FIELDS = {"samples": "samples_per_problem", "tokens": "tokens_per_problem"}
X_LABELS = {"samples": "policy samples per problem", "tokens": "tokens per problem"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="results files, each optionally as label=path")
    parser.add_argument("--x", default="samples", choices=tuple(X_FIELDS), help="budget axis")
    parser.add_argument("--metric", default="strict_acc", help="results field on the y axis")
    parser.add_argument("--output", default=os.path.join("output", "budget.png"), help="PNG to write")
    parser.add_argument("--title", default="Accuracy against budget")
    return parser.parse_args(argv)


def read_points(specs: list[str], x: str, metric: str) -> dict[str, list[dict]]:
    lines: dict[str, list[dict]] = defaultdict(list)
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep:
            label, path = os.path.basename(spec).replace("_results.jsonl", ""), spec
        if not os.path.exists(path):
            raise DataError(path, None, "no such results file")
        for line, record in read_jsonl(path):
            for field in (X_FIELDS[x], metric):
                if field not in record:
                    raise DataError(path, line, f"missing field {field!r}")
            interval = record.get(f"{metric}_ci95") or [record[metric], record[metric]]
            lines[label].append({"label": label, "x": record[X_FIELDS[x]], "y": record[metric],
                                 "low": interval[0], "high": interval[1], "path": path})
    return {label: sorted(points, key=lambda point: point["x"]) for label, points in lines.items()}


def draw(lines: dict[str, list[dict]], x: str, metric: str, title: str, output: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for label, points in lines.items():
        xs = [point["x"] for point in points]
        ys = [point["y"] for point in points]
        errors = [[point["y"] - point["low"] for point in points], [point["high"] - point["y"] for point in points]]
        axis.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=label)
    axis.set(title=title, xlabel=X_LABELS[x], ylabel=metric)
    axis.legend()
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    figure.savefig(output, dpi=150)
    plt.close(figure)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        lines = read_points(args.results, args.x, args.metric)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    draw(lines, args.x, args.metric, args.title, args.output)
    for points in lines.values():
        for point in points:
            print(json.dumps(point))
    return 0


if __name__ == "__main__":
    sys.exit(main())
