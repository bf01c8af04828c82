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


INTERN_CODE = '''"""A tiny InternLM2-Reward-shaped model (test fixture): a backbone, a value head read at the reward
token that get_score/get_scores append, right padding, as InternLM2ForRewardModel does."""
import torch
from transformers import PreTrainedModel, Qwen2Config, Qwen2Model


class TinyInternReward(PreTrainedModel):
    config_class = Qwen2Config
    base_model_prefix = "model"

    def __init__(self, config):
        super().__init__(config)
        self.model = Qwen2Model(config)
        self.v_head = torch.nn.Linear(config.hidden_size, 1, bias=False)
        self.reward_token_id = config.reward_token_id
        self.post_init()

    def forward(self, input_ids, attention_mask=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        ends = attention_mask.cumsum(dim=1).argmax(dim=1).view(-1, 1)
        return (self.v_head(hidden).squeeze(-1).gather(1, ends),)

    @torch.no_grad()
    def get_score(self, tokenizer, conversation):
        return self.get_scores(tokenizer, [conversation])

    @torch.no_grad()
    def get_scores(self, tokenizer, conversations):
        rows = [tokenizer.encode(tokenizer.apply_chat_template(c, tokenize=False), add_special_tokens=False)
                + [self.reward_token_id] for c in conversations]
        width = max(len(row) for row in rows)
        pad = tokenizer.pad_token_id or 0
        input_ids = torch.tensor([row + [pad] * (width - len(row)) for row in rows], device=self.device)
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows], device=self.device)
        return self.forward(input_ids, mask)[0].squeeze().cpu().tolist()
'''
INTERN_REWARD_TOKEN = "[UNUSED_TOKEN_130]"


def build_tiny_intern_rm(directory: Path, seed: int = 0) -> Path:
    """A tiny model whose own code (auto_map, loaded with trust_remote_code) has InternLM2-Reward's
    get_score/get_scores interface."""
    import importlib.util

    import torch

    build_tiny_lm(directory, extra_tokens=(INTERN_REWARD_TOKEN,), seed=seed)
    (directory / "modeling_tiny_intern.py").write_text(INTERN_CODE)
    spec = importlib.util.spec_from_file_location("modeling_tiny_intern", directory / "modeling_tiny_intern.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(directory)
    config.reward_token_id = AutoTokenizer.from_pretrained(directory).convert_tokens_to_ids(INTERN_REWARD_TOKEN)
    config.auto_map = {"AutoModel": "modeling_tiny_intern.TinyInternReward"}
    torch.manual_seed(seed)
    module.TinyInternReward(config).save_pretrained(directory)
    return directory
