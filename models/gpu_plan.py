"""How a stage spreads the policy (vLLM) and a reward/value model over the GPUs of one node: pure
arithmetic on the GPU count, the GPU memory and the model's config, so it is tested without GPUs.

Policy (`plan_parallel`): the smallest tensor-parallel size that divides the model's attention heads
(vLLM requires it) and leaves room for the KV cache, then data-parallel replicas over the remaining
GPUs. Qwen2.5-Coder-7B (28 heads, 15 GB in bf16) on 8 x 80 GB: tp 1 x dp 8, eight engines that
sample side by side; a 70B model (64 heads, 141 GB): tp 4 x dp 2. Explicit sizes win.

Reward model (`plan_placement`): with several GPUs it gets the last GPU to itself and the policy the
others (8 GPUs: policy tp 1 x dp 7 on GPUs 0-6, RM on GPU 7); on one GPU both share it and vLLM's
memory fraction is lowered by what the RM needs (its weights plus a margin for activations).

    plan_parallel(gpus=8, num_heads=28, model_bytes=15.2e9, gpu_bytes=80e9)          # (1, 8)
    plan_placement(gpus=1, gpu_bytes=80e9, rm_bytes=16e9, memory_utilization=None)   # rm on cuda:0, 0.66
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass

from models.errors import CudaUnusableError

logger = logging.getLogger(__name__)

GIB = 1024 ** 3
DEFAULT_MEMORY_UTILIZATION = 0.9  # vLLM's own default, with the GPU(s) to itself
KV_CACHE_SHARE = 0.25  # of vLLM's memory the weights must leave for the KV cache
RM_ACTIVATION_BYTES = 4 * GIB  # scoring batches of a 2048-token RM on top of its weights
MIN_POLICY_UTILIZATION = 0.2
PLACEMENT_RULE = ("GPU placement: vLLM takes the smallest tensor-parallel size that divides the policy's heads and "
                  "fits, and data-parallel replicas over the other GPUs; a reward/value model gets the last GPU to "
                  "itself when there are several (the policy the others), or shares a single GPU with the policy, "
                  "vLLM's memory fraction lowered by the reward model's weights + 4 GiB. --vllm_tensor_parallel_size, "
                  "--vllm_data_parallel_size, --vllm_gpu_memory_utilization and --rm_device override the rule.")


def check_parallel_size(name: str, value: int) -> None:
    """A parallel size is -1 (choose) or a positive count; `name` is how the caller's user wrote it."""
    if value == 0 or value < -1:
        raise ValueError(f"{name} must be -1 (choose) or >= 1, got {value}")


def plan_parallel(gpus: int, num_heads: int, model_bytes: float, gpu_bytes: float,
                  memory_utilization: float = DEFAULT_MEMORY_UTILIZATION, tensor_parallel_size: int = -1,
                  data_parallel_size: int = -1) -> tuple[int, int]:
    """(tensor_parallel_size, data_parallel_size) for `gpus` GPUs; -1 means "choose".

    >>> plan_parallel(8, 28, 15.2e9, 80e9), plan_parallel(8, 64, 141e9, 80e9), plan_parallel(0, 28, 15e9, 0)
    ((1, 8), (4, 2), (1, 1))
    >>> plan_parallel(8, 28, 15.2e9, 80e9, tensor_parallel_size=2), plan_parallel(3, 28, 15.2e9, 80e9)
    ((2, 4), (1, 3))
    """
    check_parallel_size("--vllm_tensor_parallel_size", tensor_parallel_size)
    check_parallel_size("--vllm_data_parallel_size", data_parallel_size)
    if gpus == 0:  # a CPU build of vLLM: one engine
        return 1, 1
    if tensor_parallel_size == -1:
        budget = gpu_bytes * memory_utilization * (1 - KV_CACHE_SHARE)
        fitting = [size for size in range(1, gpus + 1) if num_heads % size == 0 and model_bytes / size <= budget]
        if not fitting:
            raise ValueError(f"the policy ({model_bytes / GIB:.1f} GiB, {num_heads} heads) fits no tensor-parallel "
                             f"size of at most {gpus} GPUs of {gpu_bytes / GIB:.0f} GiB at memory fraction "
                             f"{memory_utilization}; set --vllm_tensor_parallel_size")
        tensor_parallel_size = fitting[0]
    tensor_parallel_size = min(tensor_parallel_size, gpus)
    replicas = max(1, gpus // tensor_parallel_size)
    if data_parallel_size == -1:
        data_parallel_size = replicas
    if data_parallel_size * tensor_parallel_size > gpus:
        raise ValueError(f"--vllm_data_parallel_size {data_parallel_size} x tensor parallel {tensor_parallel_size} "
                         f"needs more than the {gpus} GPUs for the policy")
    return tensor_parallel_size, data_parallel_size


@dataclass
class Placement:
    policy_gpus: list[int]  # indices among the visible GPUs
    rm_device: str | None  # torch device of the reward model (None: no reward model)
    memory_utilization: float  # vLLM's share of each policy GPU


def plan_placement(gpus: int, gpu_bytes: float, rm_bytes: float | None, memory_utilization: float | None = None,
                   rm_device: str | None = None) -> Placement:
    """Which GPUs the policy uses, where the reward model goes and vLLM's memory fraction.

    >>> plan_placement(8, 80e9, 16e9)
    Placement(policy_gpus=[0, 1, 2, 3, 4, 5, 6], rm_device='cuda:7', memory_utilization=0.9)
    >>> plan_placement(1, 80 * GIB, 16 * GIB)
    Placement(policy_gpus=[0], rm_device='cuda:0', memory_utilization=0.65)
    >>> plan_placement(4, 80e9, None), plan_placement(0, 0, 1e9).rm_device
    (Placement(policy_gpus=[0, 1, 2, 3], rm_device=None, memory_utilization=0.9), 'cpu')
    """
    if gpus == 0:
        return Placement([], (rm_device or "cpu") if rm_bytes is not None else None,
                         memory_utilization or DEFAULT_MEMORY_UTILIZATION)
    if rm_bytes is None:
        return Placement(list(range(gpus)), None, memory_utilization or DEFAULT_MEMORY_UTILIZATION)
    if rm_device is None:
        rm_device = f"cuda:{gpus - 1}"  # the last GPU: its own when there are several, the shared one otherwise
    rm_index = _cuda_index(rm_device)
    policy = [index for index in range(gpus) if index != rm_index] or list(range(gpus))
    if memory_utilization is None:
        memory_utilization = DEFAULT_MEMORY_UTILIZATION
        if rm_index in policy:  # shared: vLLM leaves the reward model its weights and a margin
            memory_utilization = round(DEFAULT_MEMORY_UTILIZATION - (rm_bytes + RM_ACTIVATION_BYTES) / gpu_bytes, 2)
            if memory_utilization < MIN_POLICY_UTILIZATION:
                raise ValueError(f"the reward model ({rm_bytes / GIB:.1f} GiB) leaves the policy too little of one "
                                 f"{gpu_bytes / GIB:.0f} GiB GPU; use a second GPU or --rm_device cpu")
    return Placement(policy, rm_device, memory_utilization)


def _cuda_index(device: str | None) -> int | None:
    if device is None or not device.startswith("cuda"):
        return None
    return int(device.partition(":")[2] or 0)


# -- what the plans read: the model's config, the GPUs (without initialising CUDA) ------------------

def model_shape(path: str, trust_remote_code: bool = False) -> tuple[int, float]:
    """(attention heads, weight bytes in the checkpoint's dtype) from the config alone (no weights read).
    `trust_remote_code`: the config is the checkpoint's own code (InternLM2-Reward), as its loader reads it."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    text = getattr(config, "get_text_config", lambda: config)()
    hidden, layers = text.hidden_size, text.num_hidden_layers
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or hidden // heads
    intermediate = getattr(text, "intermediate_size", None) or 4 * hidden
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    embeddings = text.vocab_size * hidden * (1 if getattr(text, "tie_word_embeddings", False) else 2)
    parameters = layers * (attention + 3 * hidden * intermediate) + embeddings
    dtype = str(getattr(text, "dtype", None) or getattr(config, "dtype", None) or "bfloat16")
    return heads, parameters * (4 if "float32" in dtype else 2)


def visible_gpus() -> int:
    """The visible CUDA devices torch can use. They are counted through NVML, and whether CUDA works is
    asked of `torch.cuda.is_available()` in a child process (here only when this process has initialised
    CUDA already): initialising CUDA here would poison the engine process vLLM forks later. Raises
    CudaUnusableError when NVML counts GPUs that torch cannot use (a driver too old for torch's CUDA
    build): a run then stops instead of going on on the CPU. CUDA_VISIBLE_DEVICES= asks for the CPU."""
    import torch

    count = torch.cuda.device_count()
    problem = cuda_problem() if count else None
    if problem is not None:
        raise CudaUnusableError(
            f"NVML sees {count} GPU(s) but torch {torch.__version__} (built for CUDA {torch.version.cuda}) cannot "
            f"use them ({problem}): update the driver or install a torch built for it, or set "
            "CUDA_VISIBLE_DEVICES= to run on the CPU")
    return count


_PROBED: dict[str | None, str | None] = {}  # CUDA_VISIBLE_DEVICES -> why torch cannot use CUDA (None: it can)
CUDA_PROBE = "import torch; print(torch.cuda.is_available())"


def cuda_problem() -> str | None:
    """None when `torch.cuda.is_available()`, else why not (torch's own warning, e.g. "The NVIDIA
    driver on your system is too old"). Asked of a child process unless CUDA is initialised here."""
    import torch

    if torch.cuda.is_initialized():
        return None if torch.cuda.is_available() else "torch.cuda.is_available() is False"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible not in _PROBED:
        _PROBED[visible] = run_cuda_probe()
    return _PROBED[visible]


def run_cuda_probe() -> str | None:
    """`torch.cuda.is_available()` in a fresh interpreter: None when True, else why not."""
    environment = {**os.environ}
    environment.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)  # the real check, not NVML's count again
    done = subprocess.run([sys.executable, "-c", CUDA_PROBE], env=environment, capture_output=True, text=True,
                          timeout=300)
    return None if done.stdout.strip().endswith("True") else probe_reason(done.stderr)


def probe_reason(stderr: str) -> str:
    """The reason in the probe's stderr: torch's CUDA warning, else its last line.

    >>> probe_reason("x.py:1: UserWarning: CUDA initialization: The NVIDIA driver on your system is too old "
    ...              "(found version 11040). (Triggered internally at c10/cuda/CUDAFunctions.cpp:108.)")
    'CUDA initialization: The NVIDIA driver on your system is too old (found version 11040).'
    """
    for line in stderr.splitlines():
        if "UserWarning: " in line:
            return line.split("UserWarning: ", 1)[1].split(" (Triggered internally")[0].strip()
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "torch.cuda.is_available() is False"


def default_device() -> str:
    """`cuda` when torch can use a GPU, `cpu` when none is visible; CudaUnusableError when GPUs are
    there but torch cannot use them (see `visible_gpus`): never a silent run on the CPU."""
    return "cuda" if visible_gpus() else "cpu"


def gpu_memory_bytes() -> float:
    """Total memory of the first visible GPU through NVML (no CUDA initialisation); 80 GiB if unknown."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            first = visible.split(",")[0].strip() if visible else "0"
            handle = (pynvml.nvmlDeviceGetHandleByIndex(int(first)) if first.isdigit()
                      else pynvml.nvmlDeviceGetHandleByUUID(first))
            return float(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML bindings or no driver: plan for the common 80 GB card
        logger.warning("GPU memory unknown (no NVML); planning for 80 GiB GPUs")
        return 80.0 * GIB


def physical_gpu_ids() -> list[str]:
    """The ids to put in CUDA_VISIBLE_DEVICES for the visible GPUs 0..n-1 (the parent's own list, if set)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [part.strip() for part in visible.split(",") if part.strip()]
    return [str(index) for index in range(visible_gpus())]
