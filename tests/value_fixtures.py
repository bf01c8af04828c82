"""Tiny language models and value data built on the spot, for the value-model tests."""
from __future__ import annotations

import json
import random
from pathlib import Path

QUESTIONS = ["Return the sum of a and b.", "Return the largest element of xs.", "Count the vowels in s."]
GOOD = ["def f(a, b):\n    return a + b\n", "def f(xs):\n    return max(xs)\n",
        "def f(s):\n    return sum(c in 'aeiou' for c in s)\n"]
BAD = ["def f(a, b):\n    pass\n", "def f(xs):\n    print(xs)\n", "def f(s):\n    raise ValueError\n"]


def value_rows(count: int, seed: int = 0) -> list[dict]:
    """Rows {prompt, answer, reward} whose reward follows the answer: 1.0 (whole, correct), 0.0 (wrong),
    0.5 (a first line only)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        index = rng.randrange(len(QUESTIONS))
        kind = rng.choice(["good", "bad", "partial"])
        answer = {"good": GOOD, "bad": BAD, "partial": [g.split("\n")[0] + "\n" for g in GOOD]}[kind][index]
        rows.append({"prompt": QUESTIONS[index], "answer": answer,
                     "reward": {"good": 1.0, "bad": 0.0, "partial": 0.5}[kind]})
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def build_tiny_lm(directory: Path, extra_tokens: tuple[str, ...] = (), head: str = "causal", num_labels: int = 1,
                  seed: int = 0) -> Path:
    """Save a tiny random Qwen2 (causal LM, or with a sequence/token-classification head) and its tokenizer."""
    import torch
    from transformers import Qwen2ForSequenceClassification, Qwen2ForTokenClassification

    from models.tiny import build_model, build_tokenizer

    texts = [f"{q}\n{a}" for q in QUESTIONS for a in GOOD + BAD] * 4
    tokenizer = build_tokenizer(texts, vocab_size=400)
    if extra_tokens:
        tokenizer.add_special_tokens({"additional_special_tokens": list(extra_tokens)})
    model = build_model(tokenizer, hidden_size=32, layers=2, seed=seed)
    if head != "causal":
        torch.manual_seed(seed)
        model.config.num_labels = num_labels
        head_class = {"sequence": Qwen2ForSequenceClassification, "token": Qwen2ForTokenClassification}[head]
        model = head_class(model.config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
