"""The interface every value model implements (`ValueModel`) and the tokenizer helpers the model
families share. rms/value_models.py (the in-house models and the loader) and rms/third_party_rms.py
build on it; it imports neither.
"""
from __future__ import annotations

from typing import Sequence

import torch

PRM_STEP_TOKEN = "<extra_0>"  # the step separator of the process reward models (Qwen's PRM)


def prepare_tokenizer(tokenizer, model_config=None):
    """Left padding and left truncation (the problem text goes first when too long); pad = eos if unset."""
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    if model_config is not None and getattr(model_config, "pad_token_id", None) is None:
        model_config.pad_token_id = tokenizer.pad_token_id
    return tokenizer


def encode(tokenizer, texts: Sequence[str], max_length: int, add_special_tokens: bool = True) -> dict:
    """Left-padded batch with position ids that start at 0 on each row's first real token, so a text
    scores the same whatever it is batched with."""
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                      add_special_tokens=add_special_tokens, return_tensors="pt")
    batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    return dict(batch)


class ValueModel:
    """A loaded value/reward model. `score(questions, states)` gives one float per pair, in batches."""

    default_rm_type = "prm"
    trust_remote_code = False  # True: the checkpoint's own code is run to load it (config included)

    def __init__(self, model, tokenizer, *, rm_type: str | None = None, max_length: int = 2048,
                 batch_size: int = 8, device: str = "cpu"):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.rm_type = rm_type or self.default_rm_type
        self.max_length, self.batch_size, self.device = max_length, batch_size, device

    def score(self, questions: Sequence[str], states: Sequence[str]) -> list[float]:
        if len(questions) != len(states):
            raise ValueError(f"score: {len(questions)} questions but {len(states)} states")
        scores: list[float] = []
        for start in range(0, len(states), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            with torch.inference_mode():
                scores.extend(self._score_batch(list(questions[chunk]), list(states[chunk])))
        return scores

    def _score_batch(self, questions: list[str], states: list[str]) -> list[float]:
        raise NotImplementedError

    def _encode(self, texts: list[str], add_special_tokens: bool = True) -> dict:
        batch = encode(self.tokenizer, texts, self.max_length, add_special_tokens)
        return {k: v.to(self.device) for k, v in batch.items()}
