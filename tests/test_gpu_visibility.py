"""GPUs that NVML counts but torch cannot use (a driver too old for torch's CUDA build) stop a run with
one line instead of a silent CPU run, unless the CPU was asked for; and the planner reads a reward
model's config with the checkpoint's own code where its loader does (intern). The probes (NVML's
count, the child process that asks torch.cuda.is_available()) are monkeypatched."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from models import generation, gpu_plan
from models.errors import CudaUnusableError, EngineError
from tests.conftest import REPO

DRIVER_TOO_OLD = ("CUDA initialization: The NVIDIA driver on your system is too old (found version 11040). Please "
                  "update your GPU driver.")


@pytest.fixture
def node(monkeypatch):
    """A node where NVML counts `gpus` GPUs and the child probe answers `problem` (None: CUDA works)."""
    import torch

    probes = []

    def set_node(gpus: int, problem: str | None):
        def probe() -> str | None:
            probes.append(os.environ.get("CUDA_VISIBLE_DEVICES"))
            return problem

        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
        monkeypatch.setattr(gpu_plan, "run_cuda_probe", probe)
        monkeypatch.setattr(gpu_plan, "_PROBED", {})
        return probes

    return set_node


def test_gpus_torch_cannot_use_are_an_error_naming_the_reason(node):
    node(8, DRIVER_TOO_OLD)
    with pytest.raises(CudaUnusableError) as error:
        gpu_plan.visible_gpus()
    message = str(error.value)
    assert message.startswith("NVML sees 8 GPU(s) but torch ") and DRIVER_TOO_OLD in message
    assert "CUDA_VISIBLE_DEVICES=" in message and "\n" not in message
    assert isinstance(error.value, EngineError)  # the stages' one-line exit 1


def test_usable_gpus_are_counted_and_probed_once_per_device_list(node, monkeypatch):
    probes = node(8, None)
    assert [gpu_plan.visible_gpus(), gpu_plan.visible_gpus()] == [8, 8] and len(probes) == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "10,11")
    assert gpu_plan.visible_gpus() == 8 and len(probes) == 2  # another device list is asked again


def test_no_gpu_is_the_cpu_without_a_probe(node):
    probes = node(0, DRIVER_TOO_OLD)
    assert gpu_plan.visible_gpus() == 0 and gpu_plan.default_device() == "cpu" and probes == []


def test_engine_auto_stops_instead_of_falling_back_to_the_cpu(node, monkeypatch):
    import importlib.util

    from experiment.common import local_engine

    node(8, DRIVER_TOO_OLD)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else None)
    with pytest.raises(CudaUnusableError):
        generation.resolve_engine("auto")
    with pytest.raises(CudaUnusableError):
        local_engine(argparse.Namespace(engine="auto", device=None))
    # asked for the CPU: no probe, no error
    assert local_engine(argparse.Namespace(engine="auto", device="cpu")) == "hf"
    assert generation.resolve_engine("hf") == "hf"


def test_hf_engine_and_reward_model_stop_unless_given_a_device(node, tiny_model_dir):
    from rms.value_models import load_value_model

    node(8, DRIVER_TOO_OLD)
    with pytest.raises(CudaUnusableError):
        generation.HFBackend(str(tiny_model_dir))
    with pytest.raises(CudaUnusableError):
        load_value_model(str(tiny_model_dir), "transformers_scalar")
    assert generation.HFBackend(str(tiny_model_dir), device="cpu").device == "cpu"


@dataclass
class TrainerConfig:
    output_dir: str = ""
    bf16: bool | None = None
    fp16: bool | None = None
    use_cpu: bool = False
    deepspeed: str | None = None


def test_trainers_stop_unless_use_cpu(node):
    from models.training import split_namespace

    node(8, DRIVER_TOO_OLD)
    namespace = dict(model="unused", save_dir="out", bf16=False, fp16=False, deepspeed=None)
    with pytest.raises(CudaUnusableError):
        split_namespace(TrainerConfig, argparse.Namespace(**namespace, use_cpu=False))
    config, _ = split_namespace(TrainerConfig, argparse.Namespace(**namespace, use_cpu=True))
    assert config.use_cpu


# a process on a node whose driver is too old: NVML counts 8 GPUs, the probe says why torch cannot use them
ON_OLD_DRIVER = f"""
import runpy, sys, torch
import models.gpu_plan as plan
torch.cuda.device_count = lambda: 8
plan.run_cuda_probe = lambda: {DRIVER_TOO_OLD!r}
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def run_on_old_driver(cwd, module: str, *flags: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", ON_OLD_DRIVER, module, *flags], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=300)


def test_value_model_training_stops_with_one_line(tmp_path, tiny_model_dir):
    rows = tmp_path / "values.jsonl"
    rows.write_text("".join(json.dumps({"prompt": f"p{i}", "answer": "a", "reward": 1.0}) + "\n" for i in range(4)))
    done = run_on_old_driver(tmp_path, "rms.train", str(tiny_model_dir), str(tmp_path / "vm"), str(rows),
                             "transformers_scalar", "--report_to", "none")
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: NVML sees 8 GPU(s)") and "driver on your system is too old" in last
    assert "Traceback" not in done.stderr and not (tmp_path / "vm").exists()


def test_eval_with_engine_auto_stops_with_one_line(tmp_path, tiny_model_dir):
    from data.jsonl import write_jsonl
    from data.tinycode import generate

    _, test = generate(seed=0, n_train=0, n_test=2)
    write_jsonl(str(tmp_path / "test.jsonl"), test)
    done = run_on_old_driver(tmp_path, "evaluation.eval", "--domain", "TinyCode", "--directory", str(tmp_path),
                             "--file", "test.jsonl", "--backend", str(tiny_model_dir), "--max_tokens", "8",
                             "--workers", "1", "--output_dir", str(tmp_path / "eval"))
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: NVML sees 8 GPU(s)") and "Traceback" not in done.stderr
    assert not list((tmp_path / "eval").glob("*_results.jsonl"))


# -- the reward model's config with the checkpoint's own code ---------------------------------------

REMOTE_CONFIG = '''
from transformers import PretrainedConfig


class FakeInternConfig(PretrainedConfig):
    model_type = "fake_intern_reward"

    def __init__(self, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                 intermediate_size=128, vocab_size=100, **kwargs):
        self.hidden_size, self.num_hidden_layers = hidden_size, num_hidden_layers
        self.num_attention_heads, self.num_key_value_heads = num_attention_heads, num_key_value_heads
        self.intermediate_size, self.vocab_size = intermediate_size, vocab_size
        super().__init__(**kwargs)
'''


def test_vllm_placement_reads_an_intern_reward_models_own_config(tmp_path, monkeypatch):
    """InternLM2-Reward's config is its own code: the planner reads it with trust_remote_code, as
    rms/third_party_rms.py loads the model; before, `--rm_class intern` with vLLM failed here."""
    from experiment import common
    from rms.value_models import value_model_classes

    (tmp_path / "configuration_fake_intern.py").write_text(REMOTE_CONFIG)
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "fake_intern_reward", "auto_map": {"AutoConfig": "configuration_fake_intern.FakeInternConfig"},
        "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
        "intermediate_size": 128, "vocab_size": 100, "torch_dtype": "bfloat16"}))
    monkeypatch.setattr(common, "visible_gpus", lambda: 1)
    monkeypatch.setattr(common, "gpu_memory_bytes", lambda: 80 * 1024 ** 3)
    args = argparse.Namespace(use_api=False, engine="vllm", device=None, rm_device=None, rm_class="intern",
                              vllm_gpu_memory_utilization=None)
    placement = common.plan_devices(args, str(tmp_path))
    assert placement.rm_device == "cuda:0" and placement.memory_utilization < 0.9  # the RM's share was sized
    assert [name for name, cls in value_model_classes().items() if cls.trust_remote_code] == \
        ["qwen", "intern", "generalizable"]
    with pytest.raises(ValueError, match="trust_remote_code"):  # what the planner did before
        gpu_plan.model_shape(str(tmp_path))
