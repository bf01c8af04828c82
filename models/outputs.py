"""What every generation backend returns (`PromptOutput`s of `Generation`s), and the helpers the
backends share. models/generation.py (the hf backend and `build_backend`), models/vllm_backend.py and
models/api_backend.py build on it; it imports none of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

# sequences one vLLM engine decodes at once before it runs near its throughput (a 7B model at batch 2-20
# runs at a small fraction of what it reaches at 256): what a stage's call should give each engine
ENGINE_BATCH_SEQUENCES = 256


@dataclass
class Generation:
    text: str
    completion_tokens: int
    finish_reason: str  # "stop" (a stop string or end of sequence) or "length"


@dataclass
class PromptOutput:
    prompt_tokens: int
    generations: list[Generation] = field(default_factory=list)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """The text before the earliest stop string, and whether one was found.

    >>> cut_at_stop("x = 1\\n```\\nmore", ["```"])
    ('x = 1\\n', True)
    """
    positions = [text.find(s) for s in stop if s and s in text]
    if not positions:
        return text, False
    return text[: min(positions)], True


def prompt_seeds(seed: int | Sequence[int] | None, count: int, n: int) -> list[int | None]:
    """Each prompt's seed for the vllm and api backends, whose sample j of prompt i then draws with
    `seeds[i] + j`: one int gives prompt i `seed + i * n` (no two samples of a call share a seed),
    a sequence is taken as the per-prompt seeds (as the hf backend does).

    >>> prompt_seeds(10, 2, 3), prompt_seeds([5, 9], 2, 3), prompt_seeds(None, 2, 3)
    ([10, 13], [5, 9], [None, None])
    """
    if seed is None:
        return [None] * count
    if isinstance(seed, int):
        return [seed + index * n for index in range(count)]
    if len(seed) != count:
        raise ValueError(f"{len(seed)} seeds for {count} prompts")
    return list(seed)
