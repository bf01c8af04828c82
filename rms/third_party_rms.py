"""Third-party reward models, for best-of-N and MCTS at evaluation (never trained here), behind the
`ValueModel.score(questions, states)` of rms/base.py; rms/value_models.py loads them by class name:

- `skywork`: a sequence-classification ORM (Skywork-Reward); the score is the single logit of the
  chat-formatted conversation [user question, assistant state], unclamped;
- `qwen`: a step-probability PRM (Qwen2.5-Math-PRM); the assistant turn is the state's non-empty lines,
  each followed by `<extra_0>`; the head gives two classes per token and the score is the minimum over
  the separators of P(class 1);
- `intern`: an ORM with its own code (InternLM2-Reward, trust_remote_code); its `get_scores(tokenizer,
  conversations)` scores [user question, assistant state];
- `generalizable`: a sequence-classification ORM (GRM, its own head code allowed); the score is the
  model output [0] of the chat-formatted conversation;
- `rlhflow`: a Math-Shepherd-style PRM (RLHFlow's Llama3.1-8B-PRM), a causal LM; the conversation grows a
  line at a time (user: the line, the first after the question and a space; assistant: "+"), each
  line's score is P("+") among the "+"/"-" tokens at position -3, and the score is the minimum over
  lines.

    value_model = load_value_model("Skywork/Skywork-Reward-Llama-3.1-8B-v0.2", "skywork", rm_type="orm")
"""
from __future__ import annotations

import inspect

import torch

from rms.base import PRM_STEP_TOKEN, ValueModel, prepare_tokenizer


def conversation(question: str, state: str) -> list[dict]:
    """The conversation a third-party ORM judges: the question, then the program as the answer."""
    return [{"role": "user", "content": question}, {"role": "assistant", "content": state}]


class SkyworkORM(ValueModel):
    """Sequence-classification ORM over the chat template; the score is the single logit, unclamped."""

    default_rm_type = "orm"

    @classmethod
    def load(cls, path: str, dtype=None, **kwargs):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
        return cls(model, prepare_tokenizer(AutoTokenizer.from_pretrained(path), model.config), **kwargs)

    def _score_batch(self, questions, states):
        texts = [self.tokenizer.apply_chat_template(conversation(q, s), tokenize=False)
                 for q, s in zip(questions, states)]
        # the template already writes any BOS token
        logits = self.model(**self._encode(texts, add_special_tokens=False)).logits.float()
        return logits[:, 0].tolist()


class QwenPRM(ValueModel):
    """Step-probability PRM: two classes per token, read at each `<extra_0>` step separator; the score is
    the minimum step probability of class 1. Checkpoints that ship their own head code (Qwen2.5-Math-PRM's
    `auto_map`) load with trust_remote_code, as that model requires; others as token classification."""

    default_rm_type = "prm"
    trust_remote_code = True

    @classmethod
    def load(cls, path: str, dtype=None, **kwargs):
        from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification, AutoTokenizer

        config = AutoConfig.from_pretrained(path, trust_remote_code=cls.trust_remote_code)
        if getattr(config, "auto_map", None) and "AutoModel" in config.auto_map:
            model = AutoModel.from_pretrained(path, dtype=dtype, trust_remote_code=cls.trust_remote_code)
        else:
            model = AutoModelForTokenClassification.from_pretrained(path, num_labels=2, dtype=dtype)
        tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(path), model.config)
        step_id = tokenizer.convert_tokens_to_ids(PRM_STEP_TOKEN)
        if step_id is None or step_id == tokenizer.unk_token_id:
            raise ValueError(f"{path}: the tokenizer has no {PRM_STEP_TOKEN} step token")
        return cls(model, tokenizer, **kwargs)

    def _score_batch(self, questions, states):
        texts = []
        for question, state in zip(questions, states):
            steps = [line for line in state.split("\n") if line.strip()] or [""]
            answer = "".join(step + PRM_STEP_TOKEN for step in steps)
            texts.append(self.tokenizer.apply_chat_template(conversation(question, answer), tokenize=False))
        batch = self._encode(texts, add_special_tokens=False)
        output = self.model(**batch)
        logits = (output.logits if hasattr(output, "logits") else output[0]).float()
        step_probs = logits.softmax(-1)[..., 1]
        is_step = batch["input_ids"] == self.tokenizer.convert_tokens_to_ids(PRM_STEP_TOKEN)
        # rows whose separators were all truncated away score 0, never a silent 1
        return step_probs.masked_fill(~is_step, float("inf")).min(-1).values.nan_to_num(posinf=0.0).tolist()


class InternORM(ValueModel):
    """InternLM2-Reward style: the checkpoint's own code (trust_remote_code) formats and scores each
    conversation [user question, assistant state] in `get_scores(tokenizer, conversations)` (it appends
    its reward token and reads its value head there), as the original calls it."""

    default_rm_type = "orm"
    trust_remote_code = True

    @classmethod
    def load(cls, path: str, dtype=None, **kwargs):
        from transformers import AutoModel, AutoTokenizer

        model = AutoModel.from_pretrained(path, dtype=dtype, trust_remote_code=cls.trust_remote_code)
        if not callable(getattr(model, "get_scores", None)):
            raise ValueError(f"{path}: the model has no get_scores(tokenizer, conversations) (not an "
                             "InternLM2-Reward-style checkpoint)")
        return cls(model, AutoTokenizer.from_pretrained(path, trust_remote_code=cls.trust_remote_code), **kwargs)

    def _score_batch(self, questions, states):
        scores = self.model.get_scores(self.tokenizer, [conversation(q, s) for q, s in zip(questions, states)])
        scores = scores.tolist() if isinstance(scores, torch.Tensor) else scores
        return [float(score) for score in (scores if isinstance(scores, list) else [scores])]


class GeneralizableORM(ValueModel):
    """GRM (Generalizable Reward Model) style: sequence classification over the chat-formatted
    conversation, a checkpoint's own head code allowed (trust_remote_code); the score is the model's
    output [0] (the logits of a standard head) of each row, as the original reads it."""

    default_rm_type = "orm"
    trust_remote_code = True

    @classmethod
    def load(cls, path: str, dtype=None, **kwargs):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype,
                                                                   trust_remote_code=cls.trust_remote_code)
        return cls(model, prepare_tokenizer(AutoTokenizer.from_pretrained(path), model.config), **kwargs)

    def _score_batch(self, questions, states):
        texts = [self.tokenizer.apply_chat_template(conversation(q, s), tokenize=False)
                 for q, s in zip(questions, states)]
        batch = self._encode(texts, add_special_tokens=False)
        if "position_ids" not in inspect.signature(self.model.forward).parameters:
            batch.pop("position_ids")  # custom heads that take no position ids are scored as they are
        output = self.model(**batch)[0].float()
        return output.reshape(len(texts), -1)[:, 0].tolist()


class RLHFlowPRM(ValueModel):
    """Math-Shepherd style PRM (RLHFlow/Llama3.1-8B-PRM-*), a causal LM judging a step at a time. For
    line k of the state (its non-empty lines; none: one empty step) the conversation is, per line up to
    k, a user turn with the line (the first as `question + " " + line`) and an assistant turn "+"; the
    step's score is P("+") of the softmax over the "+" and "-" token logits at position -3 (the
    original's reading, the token that predicts the last "+" under Llama 3's template). The score is
    the minimum over lines. Every prefix conversation is one sequence; they are scored in batches."""

    default_rm_type = "prm"

    @classmethod
    def load(cls, path: str, dtype=None, **kwargs):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        return cls(model, prepare_tokenizer(AutoTokenizer.from_pretrained(path), model.config), **kwargs)

    def step_texts(self, question: str, state: str) -> list[str]:
        """One chat-formatted conversation per line: the lines so far, each answered "+"."""
        lines = [line for line in state.split("\n") if line.strip()] or [""]
        turns, texts = [], []
        for index, line in enumerate(lines):
            turns += [{"role": "user", "content": question + " " + line if index == 0 else line},
                      {"role": "assistant", "content": "+"}]
            texts.append(self.tokenizer.apply_chat_template(turns, tokenize=False))
        return texts

    def _score_batch(self, questions, states):
        plus, minus = self.tokenizer.encode("+")[-1], self.tokenizer.encode("-")[-1]
        steps = [self.step_texts(q, s) for q, s in zip(questions, states)]
        flat = [text for texts in steps for text in texts]
        probabilities: list[float] = []
        for start in range(0, len(flat), self.batch_size):
            batch = self._encode(flat[start:start + self.batch_size], add_special_tokens=False)
            logits = self.model(**batch).logits[:, -3, [plus, minus]].float()
            probabilities += logits.softmax(-1)[:, 0].tolist()
        scores, start = [], 0
        for texts in steps:
            scores.append(min(probabilities[start:start + len(texts)]))
            start += len(texts)
        return scores


THIRD_PARTY_MODELS = {
    "skywork": SkyworkORM,
    "qwen": QwenPRM,
    "intern": InternORM,
    "generalizable": GeneralizableORM,
    "rlhflow": RLHFlowPRM,
}
