"""The ReST-GRPO reward, as the original computes it, as a TRL reward function.

For completion i of a GRPO batch the program judged is `partial_state[i] + valid`, where `valid`
is the completion cut at the earliest stop string of its domain (for code: the closing fence):

    reward = execution reward of that program                       (in [0, 1], from the sandbox)
           + symbol_reward                        if a stop string was emitted
           - trailing_penalty * len(trailing)     if so, `trailing` = the text after that stop string

Prompts hold the chat template and the partial solution already, so TRL hands us completions that
continue `partial_state`. The whole batch is judged in one parallel call to one long-lived sandbox
(`evaluation.judging.verify`), created lazily in the process that first scores and closed at exit.
The parts of the reward and the verifier statuses are logged separately through TRL's
`log_metric` (`reward/execution`, `reward/symbol`, `reward/trailing_penalty`, `status/<status>`);
with `log_path`, each call also appends one JSON line (the step, ids, parts and statuses).
"""
from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Sequence

from data.jsonl import JsonlAppender
from data.records import STATUSES, Problem, problem_from_record
from data.registry import get_benchmark
from evaluation.env_check import interpreter_for
from evaluation.judging import verify
from evaluation.sandbox import Sandbox

logger = logging.getLogger(__name__)


def split_at_stop(completion: str, stop_strings: Sequence[str]) -> tuple[str, bool, str]:
    """(valid, emitted, trailing): `valid` is the text before the earliest stop string, `emitted`
    whether one occurs, `trailing` the text after it (the first stop string, in list order, that
    the rest starts with is removed first, as in the original).

    >>> split_at_stop("return x\\n```\\nDone.", ["```"])
    ('return x\\n', True, '\\nDone.')
    >>> split_at_stop("return x", ["```"])
    ('return x', False, '')
    """
    cut = min((index for index in (completion.find(stop) for stop in stop_strings) if index >= 0),
              default=-1)
    if cut < 0:
        return completion, False, ""
    rest = completion[cut:]
    for stop in stop_strings:
        if rest.startswith(stop):
            return completion[:cut], True, rest[len(stop):]
    return completion[:cut], True, rest  # unreachable: `rest` starts with the stop string found


@dataclass
class Score:
    """One completion's reward and its parts."""

    execution: float
    symbol: float
    penalty: float
    status: str

    @property
    def reward(self) -> float:
        return self.execution + self.symbol - self.penalty


def shape(execution: float, emitted: bool, trailing: str, symbol_reward: float, trailing_penalty: float,
          status: str) -> Score:
    """The symbol bonus and trailing penalty around an execution reward.

    >>> round(shape(1.0, True, "ab", 1e-3, 1e-6, "passed").reward, 9)
    1.000998
    """
    if not emitted:
        return Score(execution, 0.0, 0.0, status)
    return Score(execution, symbol_reward, trailing_penalty * len(trailing), status)


class CodeReward:
    """TRL reward function `(prompts, completions, partial_state, domain, test, id, **kwargs)`.

    One sandbox per interpreter serves every call (`exec_python`: one path, or {domain: path} for
    mixed data, domains not named using this interpreter); `close()` (or process exit) stops them."""

    __name__ = "code_reward"  # TRL logs it as rewards/code_reward/*

    def __init__(self, symbol_reward: float = 1e-3, trailing_penalty: float = 1e-6, timeout: float | None = None,
                 workers: int | None = None, exec_python: str | dict[str, str] | None = None,
                 log_path: str | None = None):
        self.symbol_reward = symbol_reward
        self.trailing_penalty = trailing_penalty
        self.timeout = timeout
        self.workers = workers
        self.exec_python = exec_python
        self.log_path = log_path
        self._sandboxes: dict[str | None, Sandbox] = {}
        self._lock = threading.Lock()

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox of the domains `exec_python` does not name."""
        return self.sandbox_for(None)

    def sandbox_for(self, domain: str | None) -> Sandbox:
        interpreter = interpreter_for(self.exec_python, domain)
        with self._lock:
            if interpreter not in self._sandboxes:
                self._sandboxes[interpreter] = Sandbox(workers=self.workers, exec_python=interpreter)
                logger.info("reward sandbox for %s: %d workers, %s", domain, self._sandboxes[interpreter].workers,
                            interpreter or "this interpreter")
            return self._sandboxes[interpreter]

    def close(self) -> None:
        for sandbox in self._sandboxes.values():
            sandbox.close()
        self._sandboxes = {}

    def __call__(self, prompts, completions, partial_state, domain, test, id, init_state=None, log_metric=None,
                 log_extra=None, trainer_state=None, **_) -> list[float]:
        completions = [_text(completion) for completion in completions]
        scores = self.score(completions, partial_state, domain, test, id, init_state)
        self._log(scores, id, log_metric, log_extra, trainer_state)
        return [score.reward for score in scores]

    def score(self, completions: Sequence[str], partial_state: Sequence[str], domain: Sequence[str],
              test: Sequence[str], ids: Sequence[str], init_state: Sequence[str] | None = None) -> list[Score]:
        """Scores of `completions`, judged together: one verify call per domain, run side by side."""
        splits = [split_at_stop(completion, get_benchmark(name).stop_strings)
                  for completion, name in zip(completions, domain)]
        programs = [state + valid for state, (valid, _, _) in zip(partial_state, splits)]
        records = [{"id": str(identifier), "domain": name, "test": payload,
                    "init_state": init_state[i] if init_state is not None else ""}
                   for i, (identifier, name, payload) in enumerate(zip(ids, domain, test))]
        verdicts = self._verify(records, programs)
        return [shape(verdict.reward, emitted, trailing, self.symbol_reward, self.trailing_penalty, verdict.status)
                for verdict, (_, emitted, trailing) in zip(verdicts, splits)]

    def _verify(self, records: list[dict], programs: list[str]) -> list:
        """Verdicts aligned with `programs`: completions of one problem share one item."""
        by_domain: dict[str, dict[tuple, tuple[Problem, list[int]]]] = {}
        for index, record in enumerate(records):
            key = (record["id"], record["test"] if isinstance(record["test"], str) else json.dumps(record["test"]))
            items = by_domain.setdefault(record["domain"], {})
            if key not in items:
                items[key] = (problem_from_record(record), [])
            items[key][1].append(index)
        verdicts: list = [None] * len(programs)

        def run(domain: str) -> None:
            groups = list(by_domain[domain].values())
            items = [(problem, [programs[i] for i in indices]) for problem, indices in groups]
            sandbox = self.sandbox_for(domain)
            judgements = verify(sandbox, get_benchmark(domain), items, self.timeout, hardened=True)
            for (_, indices), judged in zip(groups, judgements):
                for index, verdict in zip(indices, judged):
                    verdicts[index] = verdict

        if len(by_domain) == 1:
            run(next(iter(by_domain)))
        else:
            with ThreadPoolExecutor(len(by_domain)) as threads:
                list(threads.map(run, by_domain))
        return verdicts

    def _log(self, scores: list[Score], ids, log_metric, log_extra, trainer_state) -> None:
        count = max(1, len(scores))
        statuses = Counter(score.status for score in scores)
        metrics = {"reward/execution": sum(s.execution for s in scores) / count,
                   "reward/symbol": sum(s.symbol for s in scores) / count,
                   "reward/trailing_penalty": sum(s.penalty for s in scores) / count}
        metrics.update({f"status/{status}": statuses[status] / count for status in STATUSES})
        if log_metric is not None:
            for name, value in metrics.items():
                log_metric(name, value)
        if log_extra is not None:
            log_extra("status", [score.status for score in scores])
            log_extra("execution_reward", [score.execution for score in scores])
        if statuses.get("harness_error"):
            logger.warning("%d of %d completions could not be judged (harness_error)", statuses["harness_error"],
                           len(scores))
        if self.log_path is not None:
            step = trainer_state.global_step + 1 if trainer_state is not None else None
            with JsonlAppender(self.log_path) as appender:
                appender.write({"step": step, "ids": [str(i) for i in ids],
                                 "scores": [asdict(score) for score in scores]})


def _text(completion) -> str:
    """A completion as text (TRL passes message lists for conversational data)."""
    if isinstance(completion, str):
        return completion
    return "".join(message["content"] for message in completion)
