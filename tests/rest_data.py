"""ReST training data for the training tests, made by the previous stages' code: TinyCode problems,
a completions file in the sampling stage's layout (each problem's reference solution and a wrong
program, judged in the sandbox), and `experiment.process_gen_data` turning it into GRPO, SFT and
DPO files. Plus a tiny policy (random weights) saved with `save_pretrained`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from data.jsonl import write_jsonl
from data.registry import get_benchmark
from data.tinycode import generate
from evaluation.judging import verify
from experiment import paths
from prompts import format_prompt

REPO = Path(__file__).resolve().parent.parent
BACKEND = "tiny"
TEMPERATURE, MAX_TOKENS = 0.7, 64


def tiny_problems(count: int):
    """The first `count` TinyCode train problems (parsed as the benchmark reads them)."""
    train, _ = generate(seed=0, n_train=max(count, 20), n_test=10)
    return _parse(get_benchmark("TinyCode"), train[:count])


def _parse(benchmark, records):
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "train.jsonl")
        write_jsonl(path, records)
        return benchmark.parse(path)


def save_tiny_policy(problems, directory: Path, hidden_size: int = 64, layers: int = 2) -> Path:
    from models.tiny import build_model, build_tokenizer

    tokenizer = build_tokenizer([p.prompt + p.meta["solution"] for p in problems] + ["```"], vocab_size=512)
    model = build_model(tokenizer, hidden_size=hidden_size, layers=layers)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def completions_records(problems, tokenizer, sandbox) -> list[dict]:
    """One sampling-stage record per problem: its reference body and `return None`, judged."""
    benchmark = get_benchmark("TinyCode")
    samples = [[p.meta["solution"][len(p.init_state):], "    return None\n"] for p in problems]
    items = [(p, [p.init_state + s for s in pair]) for p, pair in zip(problems, samples)]
    verdicts = verify(sandbox, benchmark, items)
    records = []
    for problem, pair, judged in zip(problems, samples, verdicts):
        completions = [{"sample": s + "```", "formatted_sample": s, "formatted_completion": problem.init_state + s,
                        "reward": v.reward, "status": v.status} for s, v in zip(pair, judged)]
        records.append({"id": problem.id, "prompt": problem.prompt, "init_state": problem.init_state,
                        "test": problem.test, "token_usage": {},
                        "result": {"formatted_prompt": format_prompt(problem, tokenizer), "completions": completions}})
    return records


def make_rest_data(directory: Path, problems, tokenizer, sandbox) -> dict[str, Path]:
    """GRPO (ReST prefixes), SFT and DPO files under `directory`/generate/, by process_gen_data."""
    source = directory / paths.completions_path("TinyCode", BACKEND, TEMPERATURE, MAX_TOKENS)
    write_jsonl(str(source), completions_records(problems, tokenizer, sandbox))
    outputs = {}
    for mode, extra in (("grpo", ["--n_sample", "2"]), ("sft", []), ("dpo", [])):
        command = [sys.executable, "-m", "experiment.process_gen_data", "--domain", "TinyCode", "--method", "Common",
                   "--mode", mode, "--backend", BACKEND, "--temperature", str(TEMPERATURE),
                   "--max_tokens", str(MAX_TOKENS), *extra]
        done = subprocess.run(command, cwd=directory, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs[mode] = Path(json.loads(done.stdout.strip().splitlines()[-1])["TinyCode"]["output"])
        if not outputs[mode].is_absolute():
            outputs[mode] = directory / outputs[mode]
    return outputs


def run_script(arguments: list[str], cwd: Path, timeout: int = 300, launcher: list[str] | None = None):
    """Run a training script as the README does (a file path, from `cwd`); returns CompletedProcess."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
                   "TOKENIZERS_PARALLELISM": "false"}
    command = (launcher or [sys.executable]) + arguments
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)


def sft_policy_and_grpo_data(directory: Path, sandbox) -> tuple[Path, Path, Path]:
    """TinyCode GRPO data in `directory` and a tiny policy after a short SFT (the baseline script), so that
    GRPO/VinePPO groups have rewards that differ: (directory, policy, grpo data file)."""
    from transformers import AutoTokenizer

    problems = tiny_problems(6)
    model = save_tiny_policy(problems, directory / "policy")
    files = make_rest_data(directory, problems, AutoTokenizer.from_pretrained(model), sandbox)
    policy = directory / "sft_policy"
    done = run_script([str(REPO / "models" / "train.py"), str(model), str(policy), str(files["sft"]), "--mode", "sft",
                       "--max_steps", "80", "--batch_size_per_device", "6", "--lr", "1e-2", "--lr_scheduler_type",
                       "constant", "--save_strategy", "no", "--report_to", "none", "--gradient_checkpointing", "false",
                       "--logging_steps", "20"], cwd=directory)
    assert done.returncode == 0, done.stderr[-3000:]
    return directory, policy, files["grpo"]


def log_history(save_dir: Path) -> list[dict]:
    return json.loads((save_dir / "trainer_state.json").read_text())["log_history"]


def changed_weights(before: Path, after: Path) -> bool:
    from safetensors.torch import load_file

    old, new = load_file(before / "model.safetensors"), load_file(after / "model.safetensors")
    return any(not (old[name] == new[name]).all() for name in old)
