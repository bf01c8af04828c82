"""Metrics over rewards: average and strict accuracy, the unbiased pass@k estimator."""
from __future__ import annotations

import bisect
import math
from typing import Sequence

STRICT_THRESHOLD = 0.999  # a program "passes" when its reward reaches this (the original's strict_acc)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al., 2021): 1 - C(n-c, k) / C(n, k).

    >>> round(pass_at_k(5, 1, 1), 3), pass_at_k(5, 5, 2), pass_at_k(5, 0, 3)
    (0.2, 1.0, 0.0)
    """
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def summarize(rewards_per_problem: Sequence[Sequence[float]], ks: Sequence[int] = (1, 5, 10, 100)) -> dict:
    """average_acc: mean over problems of the mean reward; strict_acc: mean over problems of the
    share of programs with reward >= 0.999; pass@k for each k that every problem's sample count
    allows. A problem with no programs (it could not be loaded or verified) counts as 0."""
    n_problems = len(rewards_per_problem)
    if n_problems == 0:
        return {"n_problems": 0, "n_programs": 0, "average_acc": 0.0, "strict_acc": 0.0}
    average = [sum(r) / len(r) if r else 0.0 for r in rewards_per_problem]
    strict = [sum(x >= STRICT_THRESHOLD for x in r) / len(r) if r else 0.0 for r in rewards_per_problem]
    summary = {"n_problems": n_problems, "n_programs": sum(len(r) for r in rewards_per_problem),
               "average_acc": sum(average) / n_problems, "strict_acc": sum(strict) / n_problems}
    smallest = min(len(r) for r in rewards_per_problem)
    for k in ks:
        if 1 <= k <= smallest:
            total = sum(pass_at_k(len(r), sum(x >= STRICT_THRESHOLD for x in r), k) for r in rewards_per_problem)
            summary[f"pass@{k}"] = total / n_problems
    if smallest == 0:
        summary["pass@1"] = summary["strict_acc"]
    return summary


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """The probability that a positive outranks a negative (ties count half): the ROC AUC, or None
    when one class is absent.

    >>> auc([0.9, 0.2, 0.5, 0.5], [True, False, True, False])
    0.875
    """
    positives = [score for score, label in zip(scores, labels) if label]
    negatives = [score for score, label in zip(scores, labels) if not label]
    if not positives or not negatives:
        return None
    ranked = sorted(negatives)
    wins = sum(bisect.bisect_left(ranked, score) + 0.5 * (bisect.bisect_right(ranked, score)
                                                           - bisect.bisect_left(ranked, score)) for score in positives)
    return wins / (len(positives) * len(negatives))
