"""Typed records passed between stages (ARCHITECTURE.md, "Records")."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from evaluation.execution import STATUSES  # noqa: F401  (re-exported: the one list of statuses)


@dataclass
class Problem:
    """One benchmark problem. `init_state` is the starter code every program begins with;
    `test` is the benchmark's own payload, read only by its module."""

    id: str
    domain: str
    prompt: str
    init_state: str = ""
    test: Any = None
    meta: dict = field(default_factory=dict)


@dataclass
class Verdict:
    """The verifier's judgement of one program."""

    reward: float
    status: str
    tests: list[str] = field(default_factory=list)  # per-test statuses, in order, as far as they ran
    error: str | None = None
    time: float = 0.0


def problem_from_record(record: dict, domain: str | None = None) -> Problem:
    """The `Problem` a downstream record describes (a completions, GRPO-data or MCTS-trace record):
    `id`, `init_state` and `test` (the benchmark payload, or its JSON text as GRPO data stores it).
    Only what judging needs is rebuilt; `prompt` is whatever the record holds.

    >>> problem_from_record({"id": 3, "domain": "TinyCode", "test": '{"tests": []}'}).test
    {'tests': []}
    """
    test = record.get("test")
    if isinstance(test, str):
        test = json.loads(test)
    return Problem(id=str(record["id"]), domain=domain or record["domain"], prompt=record.get("prompt", ""),
                   init_state=record.get("init_state", ""), test=test, meta=record.get("meta") or {})
