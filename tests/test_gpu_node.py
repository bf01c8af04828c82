"""What an 8-GPU node with 7B models needs, checked on CPU: the tp/dp planner and the
reward-model placement as arithmetic on a fake node, GPU counting that leaves CUDA alone before vLLM
forks, reward models loaded by hub id from a local Hugging Face cache, GRPO's batch of whole groups on
1/2/4/8 processes, its vLLM memory default, the policy's load precision, one BOS in GRPO prompts, and
the value-data file rms/train.sh reads."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
GIB = 1024 ** 3


# -- item 1, 2: the policy's tensor/data parallel plan and the reward model's GPU ----------------------

def test_qwen_7b_on_8_gpus_is_8_replicas_not_tp_8():
    from models.gpu_plan import plan_parallel

    # Qwen2.5-Coder-7B: 28 heads (28 % 8 != 0: vLLM refuses tp 8), 15.2 GB of bf16 weights
    assert plan_parallel(8, 28, 15.2e9, 80e9) == (1, 8)
    assert plan_parallel(8, 28, 15.2e9, 16 * GIB) == (2, 4)  # two 16 GB cards each: 28 % 2 == 0
    assert plan_parallel(8, 64, 141e9, 80e9) == (4, 2)  # a 70B model
    assert plan_parallel(8, 32, 16e9, 80e9, tensor_parallel_size=8) == (8, 1)  # explicit wins
    assert plan_parallel(8, 28, 15.2e9, 80e9, data_parallel_size=2) == (1, 2)
    with pytest.raises(ValueError, match="fits no tensor-parallel size"):
        plan_parallel(2, 28, 141e9, 80e9)
    with pytest.raises(ValueError, match="needs more than the 8 GPUs"):
        plan_parallel(8, 28, 15.2e9, 80e9, tensor_parallel_size=4, data_parallel_size=4)


def test_vllm_backend_tensor_parallel_size_is_the_planners(tmp_path, monkeypatch):
    """VLLMBackend's tensor-parallel size comes from plan_parallel (one engine: data parallel 1); its
    error for a bad size names the Python argument, the planner's the flag."""
    from transformers import Qwen2Config

    from models import vllm_backend
    from models.gpu_plan import plan_parallel

    resolve = vllm_backend.resolve_tensor_parallel_size
    Qwen2Config(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                num_key_value_heads=4, vocab_size=152064, dtype="bfloat16").save_pretrained(tmp_path)  # 7B, 28 heads
    monkeypatch.setattr(vllm_backend, "gpu_memory_bytes", lambda: 16 * GIB)
    assert resolve(-1, 8, str(tmp_path)) == 2 == plan_parallel(8, 28, 15.2e9, 16 * GIB)[0]  # 28 % 2 == 0
    monkeypatch.setattr(vllm_backend, "gpu_memory_bytes", lambda: 80 * GIB)
    assert [resolve(-1, 8, str(tmp_path)), resolve(3, 8, str(tmp_path)), resolve(16, 8, str(tmp_path))] == [1, 3, 8]
    assert resolve(-1, 0, str(tmp_path / "missing")) == 1  # no GPUs: one engine, the config is not read
    assert [resolve(-1, 4), resolve(2, 0)] == [4, 1]  # no model to plan for: all GPUs; no GPUs: one engine
    with pytest.raises(ValueError) as error:
        resolve(0, 2)
    assert str(error.value) == "tensor_parallel_size must be -1 (choose) or >= 1, got 0"
    with pytest.raises(ValueError) as error:
        plan_parallel(2, 28, 15.2e9, 80e9, data_parallel_size=-3)
    assert str(error.value) == "--vllm_data_parallel_size must be -1 (choose) or >= 1, got -3"
    monkeypatch.setattr(vllm_backend, "gpu_memory_bytes", lambda: 4 * GIB)
    with pytest.raises(ValueError, match="fits no tensor-parallel size of at most 2 GPUs .*; set --vllm_tensor_par"):
        resolve(-1, 2, str(tmp_path))


def test_replicas_of_an_8_gpu_node_with_its_reward_model(monkeypatch):
    from experiment.common import replica_groups
    from models.gpu_plan import plan_parallel, plan_placement

    placement = plan_placement(8, 80 * GIB, 16 * GIB)
    tensor, data = plan_parallel(len(placement.policy_gpus), 28, 15.2e9, 80 * GIB, placement.memory_utilization)
    groups = replica_groups(placement.policy_gpus, tensor, data, [str(i) for i in range(8)])
    assert groups == [[str(i)] for i in range(7)] and placement.rm_device == "cuda:7"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,6,7")  # a job given four GPUs of the node
    assert replica_groups([0, 1, 2], 1, 3) == [["3"], ["5"], ["6"]]


def test_model_shape_from_config_alone(tmp_path):
    from transformers import Qwen2Config

    from models.gpu_plan import model_shape

    # Qwen2.5-Coder-7B-Instruct's config.json numbers: 7.6 B parameters in bf16
    Qwen2Config(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False,
                dtype="bfloat16").save_pretrained(tmp_path)
    heads, weight_bytes = model_shape(str(tmp_path))
    assert heads == 28 and 15.0e9 < weight_bytes < 15.5e9


def test_reward_model_gets_its_own_gpu_or_a_sized_share():
    from models.gpu_plan import plan_placement

    eight = plan_placement(8, 80 * GIB, 16 * GIB)  # Skywork-Reward-Llama-3.1-8B beside a 7B policy
    assert (eight.policy_gpus, eight.rm_device, eight.memory_utilization) == ([0, 1, 2, 3, 4, 5, 6], "cuda:7", 0.9)
    one = plan_placement(1, 80 * GIB, 16 * GIB)
    assert (one.policy_gpus, one.rm_device) == ([0], "cuda:0")
    # vLLM leaves the RM its weights + 4 GiB: together they stay within 90% of the card
    assert one.memory_utilization * 80 + 16 + 4 <= 0.9 * 80 + 1e-9
    assert plan_placement(8, 80 * GIB, None).policy_gpus == list(range(8))
    assert plan_placement(1, 80 * GIB, 16 * GIB, rm_device="cpu").memory_utilization == 0.9
    with pytest.raises(ValueError, match="use a second GPU"):
        plan_placement(1, 24 * GIB, 16 * GIB)


@pytest.mark.parametrize("stage", ["experiment.sample", "experiment.sample_mcts", "evaluation.eval"])
def test_each_stage_help_states_the_placement_rule(stage):
    done = subprocess.run([sys.executable, "-m", stage, "--help"], env=ENV, capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    text = " ".join(done.stdout.split())
    assert "GPU placement:" in text and "last GPU to itself" in text and "--vllm_data_parallel_size" in text


@pytest.mark.slow
def test_data_parallel_replicas_sample_what_one_engine_samples(tiny_model_dir):
    """Two replica processes (the hf engine stands in for vLLM on CPU) split a call's prompts; with each
    prompt's own seed the samples are those of a single engine, in prompt order."""
    from models.data_parallel import DataParallelBackend
    from models.generation import HFBackend

    prompts = [f"def f{i}(x):\n" for i in range(5)]
    single = HFBackend(str(tiny_model_dir), device="cpu")
    expected = single.generate(prompts, n=2, temperature=1.0, max_tokens=8, seed=[11 * i for i in range(5)])
    replicas = DataParallelBackend(str(tiny_model_dir), 2, engine="hf", gpu_groups=[[], []], device="cpu")
    try:
        got = replicas.generate(prompts, n=2, temperature=1.0, max_tokens=8, seed=[11 * i for i in range(5)])
        assert [[g.text for g in o.generations] for o in got] == [[g.text for g in o.generations] for o in expected]
        assert replicas.generate(prompts[:1], n=1, max_tokens=4, seed=[3])[0].generations  # fewer prompts than replicas
    finally:
        replicas.close()


# -- item 7: no CUDA initialisation before vLLM forks -----------------------------------------------

def test_gpu_checks_before_vllm_do_not_initialise_cuda(monkeypatch):
    """torch.cuda.is_available() runs cudaGetDeviceCount (cuInit) unless PYTORCH_NVML_BASED_CUDA_CHECK
    is set, which poisons the engine process vLLM forks next; the engine choice and the plan count
    GPUs through NVML (torch.cuda.device_count) and ask a child process whether CUDA works."""
    import importlib.util

    import torch

    from models import generation, gpu_plan

    def poisoned():
        raise AssertionError("torch.cuda.is_available() before vLLM starts")

    monkeypatch.setattr(torch.cuda, "is_available", poisoned)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else None)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    probes = []
    monkeypatch.setattr(gpu_plan, "_PROBED", {})
    monkeypatch.setattr(gpu_plan, "run_cuda_probe", lambda: probes.append("child") and None)
    assert generation._vllm_usable() and gpu_plan.visible_gpus() == 8
    assert probes == ["child"]  # asked of a child process once, then remembered


# -- item 3: reward models by hub id from the local cache --------------------------------------------

def place_in_hub_cache(folder: Path, hf_home: Path, model_id: str, commit: str = "0123456789abcdef" * 2 + "01234567"):
    """`folder` laid out as a download leaves it: hub/models--org--name/{refs/main, snapshots/<commit>/}."""
    import shutil

    repo = hf_home / "hub" / ("models--" + model_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)
    return repo / "snapshots" / commit


LOAD_BY_ID = """
import sys
from rms.value_models import load_value_model
for model_id, rm_class in zip(sys.argv[1::2], sys.argv[2::2]):
    print(rm_class, len(load_value_model(model_id, rm_class, rm_type="orm").score(["Add."], ["def f():\\n"])))
"""


def test_every_rm_class_loads_by_hub_id_from_the_cache_offline(tmp_path):
    from rms.value_models import PRM_STEP_TOKEN
    from tests.value_fixtures import build_tiny_lm

    models = {"skywork": build_tiny_lm(tmp_path / "orm", head="sequence", num_labels=1),
              "transformers_scalar": build_tiny_lm(tmp_path / "vm", head="sequence", num_labels=1),
              "qwen": build_tiny_lm(tmp_path / "prm", extra_tokens=(PRM_STEP_TOKEN,), head="token", num_labels=2)}
    argv = []
    for rm_class, folder in models.items():
        place_in_hub_cache(folder, tmp_path / "hf", f"org/{rm_class}")
        argv += [f"org/{rm_class}", rm_class]
    env = {**ENV, "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-c", LOAD_BY_ID, *argv, "org/not-cached", "skywork"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.stdout.split("\n")[:3] == ["skywork 1", "transformers_scalar 1", "qwen 1"], done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("rms.value_models.ModelNotFoundError: value model not found: org/not-cached")


@pytest.mark.slow
def test_readme_best_of_n_command_loads_the_reward_model_by_hub_id(tmp_path, tiny_model_dir):
    """The README's best-of-N command with a tiny Skywork-shaped ORM under the hub id it names, offline."""
    from data.jsonl import write_jsonl
    from data.tinycode import generate
    from tests.value_fixtures import build_tiny_lm

    _, test = generate(seed=0, n_train=0, n_test=2)
    write_jsonl(str(tmp_path / "test.jsonl"), test)
    model_id = "Skywork/Skywork-Reward-Llama-3.1-8B-v0.2"
    place_in_hub_cache(build_tiny_lm(tmp_path / "orm", head="sequence", num_labels=1), tmp_path / "hf", model_id)
    env = {**ENV, "HF_HOME": str(tmp_path / "hf")}
    flags = ["--method", "Common", "--domain", "TinyCode", "--directory", str(tmp_path), "--file", "test.jsonl",
             "--backend", str(tiny_model_dir), "--rm_class", "skywork", "--rm_type", "orm", "--max_length", "2048",
             "--n", "1", "--num_sample", "3", "--temperature", "0.7", "--max_tokens", "16", "--workers", "2"]
    done = subprocess.run([sys.executable, "-m", "evaluation.eval", *flags, "--rm_backend", model_id], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["samples_per_problem"] == 3
    missing = subprocess.run([sys.executable, "-m", "evaluation.eval", *flags, "--rm_backend", "Org/not-cached"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1].startswith("error: value model not found: Org/not-cached")


# -- items 4, 8, 9, 13: GRPO settings ----------------------------------------------------------------

def grpo_config(argv: list[str], processes: int = 1):
    from trl import GRPOConfig

    from models.train_grpo import build_arguments, plan_batch
    from models.training import split_namespace

    namespace = build_arguments().parse_args(["model", "out", "data.jsonl", "--report_to", "none", *argv])
    plan_batch(namespace, processes)
    return namespace, split_namespace(GRPOConfig, namespace)[0] if processes == 1 else None


@pytest.mark.parametrize("processes", [1, 2, 4, 8])
def test_readme_grpo_batch_is_two_groups_per_step_on_any_process_count(processes):
    namespace, config = grpo_config(["--bf16", "false", "--batch_size_per_device", "2", "--num_generations", "8",
                                     "--prompts_per_step", "2"], processes)
    assert namespace.gradient_accumulation_steps == 8 // processes
    assert processes * 2 * namespace.gradient_accumulation_steps == 2 * 8
    if config is not None:  # TRL itself accepts it (one process here)
        assert config.generation_batch_size == 16 and config.steps_per_generation == 8


def test_a_partial_group_is_refused_with_the_flags_that_fix_it():
    from data.jsonl import DataError

    with pytest.raises(DataError, match=r"add --gradient_accumulation_steps 4 .*--prompts_per_step") as error:
        grpo_config(["--batch_size_per_device", "2", "--num_generations", "8"], 1)
    assert "\n" not in str(error.value)
    with pytest.raises(DataError, match="multiples of 2"):
        grpo_config(["--batch_size_per_device", "4", "--num_generations", "8", "--prompts_per_step", "1"], 4)
    # TRL's own generation batch flags are left to TRL
    namespace, config = grpo_config(["--bf16", "false", "--batch_size_per_device", "2", "--num_generations", "8",
                                     "--steps_per_generation", "4"], 1)
    assert config.generation_batch_size == 8


def test_colocated_vllm_leaves_the_trainer_room():
    _, config = grpo_config(["--bf16", "false", "--use_vllm", "--num_generations", "4"])
    assert config.vllm_mode == "colocate" and config.vllm_gpu_memory_utilization == 0.3
    _, config = grpo_config(["--bf16", "false", "--use_vllm", "--num_generations", "4",
                             "--vllm_gpu_memory_utilization", "0.5"])
    assert config.vllm_gpu_memory_utilization == 0.5


def test_policy_loads_in_the_training_precision_under_deepspeed():
    from models.training import model_init_kwargs

    zero2 = str(REPO / "config" / "zero2_config.json")
    assert model_init_kwargs({"deepspeed": zero2, "bf16": True}) == {"dtype": "bfloat16"}
    assert model_init_kwargs({"deepspeed": zero2, "fp16": True}) == {"dtype": "float16"}
    assert model_init_kwargs({"bf16": True}) == {"dtype": "float32"}  # mixed precision without DeepSpeed
    given = {"dtype": "float16", "attn_implementation": "sdpa"}
    assert model_init_kwargs({"deepspeed": zero2, "bf16": True, "model_init_kwargs": json.dumps(given)}) == given
    _, config = grpo_config(["--bf16", "false", "--num_generations", "4"])  # what reaches TRL
    assert config.model_init_kwargs["dtype"] == "float32"


def bos_tokenizer():
    """A tiny tokenizer that adds a BOS on encoding and whose chat template writes one (as Llama-3's)."""
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    from models.tiny import build_tokenizer

    base = build_tokenizer(["def f(x):\n    return x + 1\n"] * 20, vocab_size=300)
    raw, bos = base.backend_tokenizer, "<|endoftext|>"
    raw.post_processor = TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                            special_tokens=[(bos, raw.token_to_id(bos))])
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token=bos, eos_token="<|im_end|>", pad_token="<|pad|>",
                                   chat_template="{{ bos_token }}" + base.chat_template)


def test_grpo_prompts_carry_the_one_bos_the_sampler_used(tmp_path):
    from data.records import Problem
    from models.prompt_tokens import without_added_bos
    from models.train_grpo import load_dataset
    from prompts import format_prompt

    tokenizer = bos_tokenizer()
    problem = Problem(id="1", domain="TinyCode", prompt="Add one to x.", init_state="def f(x):\n", test={})
    prompt = format_prompt(problem, tokenizer, state="def f(x):\n")
    sampled = tokenizer(prompt, add_special_tokens=False)["input_ids"]  # what the hf engine encodes
    assert sampled.count(tokenizer.bos_token_id) == 1
    record = {"prompt": prompt, "init_state": "def f(x):\n", "partial_state": "def f(x):\n", "domain": "TinyCode",
              "test": "{}", "id": "1"}
    (tmp_path / "grpo.jsonl").write_text(json.dumps(record) + "\n")
    dataset = load_dataset(str(tmp_path / "grpo.jsonl"), tokenizer, 1024)
    assert tokenizer(text=[dataset[0]["prompt"]])["input_ids"][0] == sampled  # how TRL 1.16 encodes it
    # vLLM also encodes string prompts with special tokens: the same rule gives it the same ids
    assert tokenizer(without_added_bos(prompt, tokenizer))["input_ids"] == sampled
    raw = "def f(x):\n"  # --do_not_format: no BOS text, the engines that add one keep it
    assert without_added_bos(raw, tokenizer) == raw


# -- item 5: the value data rms/train.sh trains on is what README 2.1/2.2 write ------------------------

def test_train_sh_default_reads_the_file_steps_2_1_and_2_2_write():
    from experiment import paths, process_gen_data

    backend = "Qwen/Qwen2.5-Coder-7B-Instruct"
    script = (REPO / "rms" / "train.sh").read_text()
    line = next(line for line in script.splitlines() if line.startswith("TRAIN_PTH="))
    shown = subprocess.run(["bash", "-c", f'BACKEND={backend}; {line}; echo "$TRAIN_PTH"'], capture_output=True,
                           text=True, check=True).stdout.strip()
    # README 2.2's command (after 2.1's sample_mcts --iteration_limit 100 --num_sample 5 --num_decision 5 ...)
    args = process_gen_data.parse_args(["--domain", "code", "--method", "MCTS", "--backend", backend,
                                        "--temperature", "0.7", "--max_tokens", "1024", "--num_decision", "5",
                                        "--do_aggregate"])
    name = process_gen_data.files(args, "BigCodeBench")[1]
    aggregated = paths.value_data_name(name[: -len("_rewards.jsonl")] + ".jsonl", ["BigCodeBench", "DS1000", "APPS"])
    assert shown == os.path.join(paths.mcts_dir(paths.AGGREGATE, backend), aggregated)
    # the documented 2.3 commands (README, the pipeline page, the value-model section) train on that file
    for page in ("README.md", "docs/pipeline.md", "docs/training.md"):
        text = (REPO / page).read_text()
        assert "sample_5_decision_3_" not in text and "sample_5_decision_5_" in text, page
