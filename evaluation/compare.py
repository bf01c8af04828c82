"""Paired comparison of two evaluation runs on the same problems, with a seeded bootstrap interval.

Reads   two evaluation outputs, A and B: `evaluation.eval`'s `..._results.jsonl` (its `..._verified.jsonl`
        beside it holds the per-problem rewards) or the `..._verified.jsonl` itself. An arm trained with
        several seeds is several files joined by commas, one per training seed.
Prints  the mean over problems of (score of A - score of B), its 95% paired-bootstrap interval, the number
        of problems, and whether the interval excludes 0 (`resolved`); `--json` prints one JSON object.

A problem's score is the share of its programs that pass every test (strict, as `strict_acc`), or with
`--metric average` its mean reward; a problem that could not be judged scores 0. The bootstrap resamples
problems with replacement, the same problems for both arms (paired); with several seeds per arm it also
resamples each arm's seeds (a two-level bootstrap), so the interval covers the spread between trainings.
Both arms, and every seed of an arm, must hold exactly the same problem ids: anything else is refused.

    python -m evaluation.compare output/tinycode_results/Common/A/temp_0.7_tokens_128_n_4_results.jsonl \
        output/tinycode_results/Common/B/temp_0.7_tokens_128_n_4_results.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from typing import Sequence

from data.jsonl import DataError, read_unique
from evaluation.metrics import STRICT_THRESHOLD

RESAMPLES = 10000


@dataclass
class Comparison:
    difference: float
    ci95: list[float]
    n_problems: int
    resolved: bool
    n_seeds: list[int]

    def line(self, label: str = "A - B") -> str:
        verdict = "resolved" if self.resolved else "not resolved (the interval holds 0)"
        return (f"{label}: {self.difference:+.4f}, 95% interval [{self.ci95[0]:+.4f}, {self.ci95[1]:+.4f}] "
                f"over {self.n_problems} problems, seeds {self.n_seeds[0]} vs {self.n_seeds[1]}: {verdict}")


def verified_path(path: str) -> str:
    """The per-problem file of an evaluation output (its results file names it by suffix)."""
    return path[: -len("_results.jsonl")] + "_verified.jsonl" if path.endswith("_results.jsonl") else path


def problem_scores(path: str, metric: str = "strict") -> dict[str, float]:
    """{problem id: score} from an evaluation's verified records (or its results file)."""
    source = verified_path(path)
    scores = {}
    for line, record in read_unique(source):
        if "id" not in record or not isinstance(record.get("rewards", []), list):
            raise DataError(source, line, "field 'id' or 'rewards' missing: not an evaluation's verified record")
        rewards = [float(value) for value in record.get("rewards") or []]
        if not rewards:
            scores[str(record["id"])] = 0.0
        elif metric == "strict":
            scores[str(record["id"])] = sum(value >= STRICT_THRESHOLD for value in rewards) / len(rewards)
        else:
            scores[str(record["id"])] = sum(rewards) / len(rewards)
    if not scores:
        raise DataError(source, None, "no problems in this file")
    return scores


def same_problems(named: dict[str, dict[str, float]]) -> list[str]:
    """The common problem ids, sorted; a ValueError naming the files when any two sets differ."""
    (first_name, first), *others = named.items()
    for name, scores in others:
        if scores.keys() != first.keys():
            only_first, only_other = sorted(first.keys() - scores.keys()), sorted(scores.keys() - first.keys())
            example = (only_first or only_other)[0]
            raise ValueError(f"{first_name} and {name} hold different problems ({len(only_first)} only in the "
                             f"first, {len(only_other)} only in the second, e.g. {example!r}); a paired comparison "
                             "needs the same problems")
    return sorted(first)


def paired_bootstrap(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], seed: int = 0,
                     resamples: int = RESAMPLES) -> Comparison:
    """a[s][p], b[s][p]: the score of problem p under training seed s of each arm (one row per seed).
    The difference of the means, and its percentile 95% interval when problems, and each arm's seeds,
    are resampled with replacement (problems paired across the arms).

    >>> result = paired_bootstrap([[1, 1, 0, 1]], [[0, 1, 0, 0]], seed=0, resamples=2000)
    >>> result.difference, result.n_problems
    (0.5, 4)
    """
    import numpy as np

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise ValueError(f"score arrays {a.shape} and {b.shape}: need (seeds, problems) with the same problems")
    rng = np.random.default_rng(seed)
    n_problems = a.shape[1]
    differences = np.empty(resamples)
    for start in range(0, resamples, 500):  # blocks keep the index arrays small
        count = min(500, resamples - start)
        problems = rng.integers(0, n_problems, size=(count, n_problems))
        seeds_a = rng.integers(0, a.shape[0], size=(count, a.shape[0]))
        seeds_b = rng.integers(0, b.shape[0], size=(count, b.shape[0]))
        # mean over the drawn seeds of each arm, per problem, then over the drawn problems
        mean_a = np.stack([a[seeds_a[i]].mean(axis=0) for i in range(count)])
        mean_b = np.stack([b[seeds_b[i]].mean(axis=0) for i in range(count)])
        per_problem = mean_a - mean_b
        differences[start:start + count] = np.take_along_axis(per_problem, problems, axis=1).mean(axis=1)
    low, high = np.percentile(differences, [2.5, 97.5])
    difference = float(a.mean() - b.mean())
    return Comparison(difference=round(difference, 6), ci95=[round(float(low), 6), round(float(high), 6)],
                      n_problems=n_problems, resolved=bool(low > 0 or high < 0), n_seeds=[a.shape[0], b.shape[0]])


def paired_share_bootstrap(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]], seed: int = 0,
                           resamples: int = RESAMPLES) -> Comparison:
    """a[p] = (hits, count) of arm A on problem p, b[p] the same of arm B (a count may be 0: the arm has no
    item of that problem). The difference of the pooled shares sum(hits) / sum(count), and its percentile 95%
    interval when problems are resampled with replacement, the same problems for both arms (a cluster
    bootstrap: an arm's items of one problem move together).

    >>> result = paired_share_bootstrap([(1, 1), (1, 1), (0, 1)], [(0, 2), (1, 2), (0, 0)], seed=0, resamples=500)
    >>> round(result.difference, 4), result.n_problems
    (0.4167, 3)
    """
    import numpy as np

    a, b = np.asarray(a, dtype=float).reshape(-1, 2), np.asarray(b, dtype=float).reshape(-1, 2)
    if len(a) != len(b) or len(a) == 0 or a[:, 1].sum() == 0 or b[:, 1].sum() == 0:
        raise ValueError(f"{len(a)} and {len(b)} problems with {a[:, 1].sum():.0f} and {b[:, 1].sum():.0f} items: "
                         "need the same problems, and items in both arms")
    rng = np.random.default_rng(seed)
    n_problems = len(a)
    differences = np.empty(resamples)
    for start in range(0, resamples, 500):
        count = min(500, resamples - start)
        drawn = rng.integers(0, n_problems, size=(count, n_problems))
        sums_a, sums_b = a[drawn].sum(axis=1), b[drawn].sum(axis=1)  # (count, 2): hits, items
        with np.errstate(invalid="ignore", divide="ignore"):
            differences[start:start + count] = sums_a[:, 0] / sums_a[:, 1] - sums_b[:, 0] / sums_b[:, 1]
    differences = differences[np.isfinite(differences)]  # a draw without items of one arm has no share
    low, high = np.percentile(differences, [2.5, 97.5])
    difference = float(a[:, 0].sum() / a[:, 1].sum() - b[:, 0].sum() / b[:, 1].sum())
    return Comparison(difference=round(difference, 6), ci95=[round(float(low), 6), round(float(high), 6)],
                      n_problems=n_problems, resolved=bool(low > 0 or high < 0), n_seeds=[1, 1])


def compare_files(a_paths: Sequence[str], b_paths: Sequence[str], metric: str = "strict", seed: int = 0,
                  resamples: int = RESAMPLES) -> Comparison:
    """A - B over the problems both hold; each arm one file per training seed."""
    named = {path: problem_scores(path, metric) for path in [*a_paths, *b_paths]}
    ids = same_problems(named)
    rows = {path: [scores[problem] for problem in ids] for path, scores in named.items()}
    return paired_bootstrap([rows[path] for path in a_paths], [rows[path] for path in b_paths], seed, resamples)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="results (or verified) file of arm A; several seeds joined by commas")
    parser.add_argument("b", help="results (or verified) file of arm B; several seeds joined by commas")
    parser.add_argument("--metric", choices=("strict", "average"), default="strict",
                        help="strict: share of programs passing every test (pass@1); average: mean reward")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--resamples", type=int, default=RESAMPLES, help="bootstrap resamples")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")
    args = parser.parse_args(argv)
    try:
        result = compare_files(args.a.split(","), args.b.split(","), args.metric, args.seed, args.resamples)
    except (DataError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(result)) if args.json else result.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
