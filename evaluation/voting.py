"""Voting over several completions of one problem: self-consistency (a majority over final answers) and its
value-weighted form (each vote weighs the value model's score of its completion), as ReST-MCTS* compares.

"The same answer" (`answer_key`):
- math (a benchmark of kind "math"): the number after the last `####` as an exact fraction, else the text of the
  last `\\boxed{}` without spaces, else the number of "The answer is X"; a completion with none casts no vote;
- code: the program text with trailing spaces and blank lines removed (programs that differ in any other way,
  even equivalent ones, are different answers).

    majority_vote("math", ["#### 4", "#### 5", "4 = 4\\n#### 4.0"])              # '#### 4'
    weighted_vote("math", ["#### 4", "#### 5"], [0.3, 0.6])                    # '#### 5'
"""
from __future__ import annotations

from typing import Sequence

from data.math_grading import gsm8k_answer, last_boxed


def answer_key(kind: str, completion: str) -> str | None:
    """What two completions must share to vote together (module docstring); None: no answer.

    >>> answer_key("math", "#### 1,080.00"), answer_key("math", r"\\boxed{x + 1}"), answer_key("math", "so")
    ('1080', 'x+1', None)
    """
    if kind != "math":
        lines = [line.rstrip() for line in completion.splitlines()]
        return "\n".join(line for line in lines if line)
    number = gsm8k_answer(completion)
    if number is not None:
        return str(number)
    boxed = last_boxed(completion)
    if boxed:
        return "".join(boxed.split())
    number = gsm8k_answer(completion, flexible=True)  # "The answer is X"
    return str(number) if number is not None else None


def _tally(kind: str, completions: Sequence[str], weights: Sequence[float]) -> str:
    """The first completion of the key with the largest total weight (ties: the key seen first); without any
    key, the completion of largest weight (the first among equals); "" for no completion."""
    totals: dict[str, float] = {}
    first: dict[str, str] = {}
    for completion, weight in zip(completions, weights, strict=True):
        key = answer_key(kind, completion)
        if key is not None:
            totals[key] = totals.get(key, 0.0) + weight
            first.setdefault(key, completion)
    if totals:
        return first[max(totals, key=totals.__getitem__)]
    if not completions:
        return ""
    return completions[max(range(len(completions)), key=lambda index: weights[index])]


def majority_vote(kind: str, completions: Sequence[str]) -> str:
    """Self-consistency: the answer most completions give (one of its completions, the first)."""
    return _tally(kind, completions, [1.0] * len(completions))


def weighted_vote(kind: str, completions: Sequence[str], values: Sequence[float]) -> str:
    """Value-weighted self-consistency: the answer whose completions' values sum highest."""
    if len(values) != len(completions):
        raise ValueError(f"weighted_vote: {len(values)} values for {len(completions)} completions")
    return _tally(kind, completions, [float(value) for value in values])
