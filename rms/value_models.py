"""Value and reward models: one loader, one batched `score(questions, states)`.

In-house value models (trained by `rms/train.py`) read the text `"\\n<prompt>\\n{question}\\n<answer>\\n{state}\\n"`
(no chat template), left-padded and left-truncated, so a long problem loses its beginning first:

- `transformers_scalar`: a sequence-classification head with one output on the last token; the raw
  logit, clamped to [min_rw, max_rw], is the value (trained with MSE on targets in [0, 1]);
- `transformers_prob`: the same head with two classes; the value is softmax(logits)[1] (trained with a
  soft cross-entropy on targets [1 - r, r]);
- `standard_scalar`: a causal LM plus a linear head (vocab -> 1) on the LM logits of the last position.

Third-party shapes, for best-of-N and MCTS at evaluation (never trained here), live in
rms/third_party_rms.py: `skywork`, `qwen`, `intern`, `generalizable`, `rlhflow`.

    value_model = load_value_model("rms/ckpts/tiny/1", "transformers_scalar")   # resolves .../1/best
    value_model.score(["Add two numbers."], ["def add(a, b):\\n"])               # -> [0.42]

New shapes register a subclass of `ValueModel` in `IN_HOUSE_MODELS` or rms/third_party_rms.py's
`THIRD_PARTY_MODELS`.
"""
from __future__ import annotations

import json
import logging
import os

import torch
import torch.nn.functional as F

from rms.base import PRM_STEP_TOKEN, ValueModel, encode, prepare_tokenizer  # noqa: F401 (callers import them here)
from rms.third_party_rms import THIRD_PARTY_MODELS

logger = logging.getLogger(__name__)

INPUT_FORMAT = "\n<prompt>\n{p}\n<answer>\n{a}\n"
VALUE_HEAD_FILE = "value_head.safetensors"
METADATA_FILE = "value_model.json"


def format_input(question: str, state: str) -> str:
    """The text an in-house value model reads.

    >>> format_input("Add.", "def f():\\n")
    '\\n<prompt>\\nAdd.\\n<answer>\\ndef f():\\n\\n'
    """
    return INPUT_FORMAT.format(p=question, a=state)


class ModelNotFoundError(FileNotFoundError, ValueError):
    """A reward/value model that is neither a folder nor a model id the Hub (or its local cache) has;
    a ValueError too, so the stages print it as their one-line errors."""


WEIGHT_PATTERNS = ("*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken", "*.py")


def resolve_checkpoint(path: str) -> str:
    """A run directory that holds `best/` stands for its best model; a Hugging Face model id
    (`Skywork/Skywork-Reward-Llama-3.1-8B-v0.2`) for its snapshot folder, from the local cache when
    offline (HF_HUB_OFFLINE=1) and downloaded otherwise; a missing folder is a ModelNotFoundError."""
    best = os.path.join(path, "best")
    if os.path.isdir(best):
        return best
    if os.path.isdir(path):
        return path
    return hub_snapshot(path)


def hub_snapshot(model_id: str) -> str:
    """The local folder of a hub model (config, tokenizer, safetensors weights; .bin weights only when a
    repository has no safetensors)."""
    if model_id.count("/") != 1 or model_id.startswith((".", "/")):
        raise ModelNotFoundError(f"value model not found: {model_id} (no such folder, and not an org/name model id)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(model_id, allow_patterns=list(WEIGHT_PATTERNS))
        if not any(name.endswith(".safetensors") for name in os.listdir(folder)):
            folder = snapshot_download(model_id, allow_patterns=[*WEIGHT_PATTERNS, "*.bin"])
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
        where = "in the Hugging Face cache (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else \
            "in the Hugging Face cache or on the Hub"
        raise ModelNotFoundError(f"value model not found: {model_id} is not a folder, nor a model {where}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    logger.info("%s: %s", model_id, folder)
    return folder


class StandardScalarModel(torch.nn.Module):
    """A causal LM plus Linear(vocab -> 1) on the LM logits of the last position (the real last token
    under left padding); the output is float32."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.value_head = torch.nn.Linear(backbone.config.vocab_size, 1, dtype=torch.float32)
        self.config = backbone.config

    def forward(self, input_ids, attention_mask=None, position_ids=None, **_):
        logits = self.backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               logits_to_keep=1).logits[:, -1, :]
        return self.value_head(logits.float()).squeeze(-1)

    def save_pretrained(self, directory: str) -> None:
        from safetensors.torch import save_file

        self.backbone.save_pretrained(directory)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.value_head.state_dict().items()},
                  os.path.join(directory, VALUE_HEAD_FILE))

    @classmethod
    def from_pretrained(cls, directory: str, dtype=None, head_required: bool = True):
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM

        model = cls(AutoModelForCausalLM.from_pretrained(directory, dtype=dtype))
        head = os.path.join(directory, VALUE_HEAD_FILE)
        if os.path.exists(head):
            model.value_head.load_state_dict(load_file(head))
        elif head_required:
            raise ModelNotFoundError(f"{directory}: no {VALUE_HEAD_FILE} (not a standard_scalar value model)")
        return model


def load_backbone(rm_class: str, path: str, dtype=None):
    """The trainable model of an in-house class, loaded from a base LM or a saved value model."""
    from transformers import AutoModelForSequenceClassification

    if rm_class == "standard_scalar":
        return StandardScalarModel.from_pretrained(path, dtype=dtype, head_required=False)
    num_labels = {"transformers_scalar": 1, "transformers_prob": 2}[rm_class]
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels, dtype=dtype)


def model_outputs(rm_class: str, model, batch: dict) -> torch.Tensor:
    """Float32 head outputs of an in-house model for an encoded batch: one value per row for the scalar
    classes (unclamped), two logits per row for transformers_prob."""
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
    if rm_class == "standard_scalar":
        return model(**inputs).float()
    logits = model(**inputs).logits.float()
    return logits if rm_class == "transformers_prob" else logits.squeeze(-1)


def outputs_to_values(rm_class: str, outputs: torch.Tensor) -> torch.Tensor:
    """The value of each row: the scalar itself, or P(class 1) for transformers_prob."""
    return outputs.softmax(-1)[:, 1] if rm_class == "transformers_prob" else outputs


def value_loss(rm_class: str, outputs: torch.Tensor, labels: torch.Tensor,
               loss_weight_factor: float = 0.5) -> torch.Tensor:
    """MSE (mean over the batch) for the scalar classes; for transformers_prob the soft cross-entropy with
    targets [1-r, r] and class weights [1-w, w], scaled so that w = 0.5 is the plain cross-entropy."""
    labels = labels.float()
    if rm_class != "transformers_prob":
        return F.mse_loss(outputs, labels)
    targets = torch.stack([1 - labels, labels], dim=-1)
    weights = torch.tensor([1 - loss_weight_factor, loss_weight_factor], device=outputs.device) * 2
    return -(targets * weights * outputs.log_softmax(-1)).sum(-1).mean()


class InHouseValueModel(ValueModel):
    rm_class = "transformers_scalar"

    def __init__(self, model, tokenizer, *, min_rw: float = 0.0, max_rw: float = 1.0, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        self.min_rw, self.max_rw = min_rw, max_rw

    @classmethod
    def load(cls, path: str, dtype=None, **kwargs):
        from transformers import AutoTokenizer

        model = load_backbone(cls.rm_class, path, dtype)
        if cls.rm_class == "standard_scalar" and not os.path.exists(os.path.join(path, VALUE_HEAD_FILE)):
            raise ModelNotFoundError(f"{path}: no {VALUE_HEAD_FILE} (not a standard_scalar value model)")
        tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(path), model.config)
        return cls(model, tokenizer, **kwargs)

    def _score_batch(self, questions, states):
        batch = self._encode([format_input(q, s) for q, s in zip(questions, states)])
        values = outputs_to_values(self.rm_class, model_outputs(self.rm_class, self.model, batch))
        return values.clamp(self.min_rw, self.max_rw).tolist()


class TransformersScalarRM(InHouseValueModel):
    rm_class = "transformers_scalar"


class TransformersProbRM(InHouseValueModel):
    rm_class = "transformers_prob"


class StandardScalarRM(InHouseValueModel):
    rm_class = "standard_scalar"


IN_HOUSE_MODELS = {
    "transformers_scalar": TransformersScalarRM,
    "transformers_prob": TransformersProbRM,
    "standard_scalar": StandardScalarRM,
}
IN_HOUSE_CLASSES = tuple(IN_HOUSE_MODELS)


def value_model_classes() -> dict[str, type[ValueModel]]:
    """Every class name `load_value_model` accepts: the in-house ones, then the third-party ones."""
    return {**IN_HOUSE_MODELS, **THIRD_PARTY_MODELS}


def load_value_model(path: str, rm_class: str | None = None, *, rm_type: str | None = None, device: str | None = None,
                     dtype: str | torch.dtype | None = None, max_length: int = 2048, batch_size: int = 8,
                     min_rw: float = 0.0, max_rw: float = 1.0) -> ValueModel:
    """Load a value/reward model for scoring. `path` may be a run directory holding `best/` or a hub model
    id (from the local cache when offline). Without
    `rm_class` (and `rm_type`), what `rms/train.py` recorded in `value_model.json` is used. `dtype` defaults to
    the checkpoint's on a GPU and float32 on the CPU."""
    path = resolve_checkpoint(path)
    metadata = _read_metadata(path)
    recorded = metadata.get("rm_class")
    rm_class = rm_class or recorded
    classes = value_model_classes()
    if rm_class not in classes:
        raise ValueError(f"unknown rm_class {rm_class!r} for {path}; choose one of {', '.join(classes)}")
    if recorded and recorded != rm_class:
        raise ValueError(f"{path} holds a {recorded} value model, not {rm_class}")
    if device is None:
        from models.gpu_plan import default_device

        device = default_device()  # GPUs torch cannot use: CudaUnusableError, not a silent CPU run
    if dtype is None:
        dtype = "auto" if device != "cpu" else torch.float32
    elif isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    options = {"rm_type": rm_type or metadata.get("rm_type"), "max_length": max_length, "batch_size": batch_size,
               "device": device}
    if rm_class in IN_HOUSE_CLASSES:
        options.update(min_rw=min_rw, max_rw=max_rw)
    value_model = classes[rm_class].load(path, dtype=dtype, **options)
    value_model.model.to(device)
    logger.info("loaded %s value model from %s on %s", rm_class, path, device)
    return value_model


def _read_metadata(path: str) -> dict:
    metadata = os.path.join(path, METADATA_FILE)
    if not os.path.exists(metadata):
        return {}
    with open(metadata, encoding="utf-8") as handle:
        return json.load(handle)
