"""One tokenization of a prompt for every engine and the trainer.

Prompts are whole strings: the chat template (with any BOS it writes) is already applied. The hf
engine encodes them with `add_special_tokens=False`; TRL's GRPOTrainer and vLLM's `generate` encode
string prompts with special tokens added. For a tokenizer that adds a BOS (Llama-3, DeepSeek-Coder)
the prompt would then carry two. `without_added_bos` drops the BOS text at the start of the prompt
when the tokenizer adds it again, so that every path sees the token ids the hf engine sees:

    tokenizer(without_added_bos(p, tokenizer))["input_ids"] == tokenizer(p, add_special_tokens=False)["input_ids"]
"""
from __future__ import annotations

from typing import Sequence


def adds_bos(tokenizer) -> bool:
    """Whether encoding with special tokens puts the BOS token first (a probe on a short text)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("x", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos and tokenizer("x", add_special_tokens=False)["input_ids"][:1] != [bos]


def without_added_bos(prompt: str, tokenizer, adds: bool | None = None) -> str:
    """`prompt` without its leading BOS text when the tokenizer adds a BOS itself; else unchanged.

    A prompt that does not start with the BOS text (`--do_not_format`) is left alone: with special
    tokens it gains the one BOS the model expects."""
    adds = adds_bos(tokenizer) if adds is None else adds
    bos = getattr(tokenizer, "bos_token", None)
    if adds and bos and prompt.startswith(bos):
        return prompt[len(bos):]
    return prompt


def prompts_for_special_tokens(prompts: Sequence[str], tokenizer) -> list[str]:
    """`without_added_bos` of each prompt (the tokenizer probed once)."""
    adds = adds_bos(tokenizer)
    return [without_added_bos(prompt, tokenizer, adds) for prompt in prompts]
