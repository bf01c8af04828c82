"""ReST-GRPO training: the reward scores known completions right (TinyCode and APPS), the command
line keeps the original flags and exposes every GRPOConfig field, bad data fails in one line; slow:
GRPO steps on ReST data made by process_gen_data (the saved policy loads and generates), resume
continues exactly, and a run under `accelerate launch` with the ZeRO-2 config on CPU."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO
from rest_data import (
    changed_weights,
    log_history,
    run_script,
    sft_policy_and_grpo_data,
    tiny_problems,
)

from data.jsonl import DataError
from data.registry import get_benchmark
from models.rewards import CodeReward, split_at_stop
from models.training import load_records

SYMBOL, PENALTY = 1e-3, 1e-6


@pytest.fixture()
def reward(sandbox):
    scorer = CodeReward(symbol_reward=SYMBOL, trailing_penalty=PENALTY)
    scorer._sandboxes[None] = sandbox  # the session's sandbox; CodeReward would otherwise start its own
    yield scorer
    scorer._sandboxes = {}


def grpo_columns(problem, partial: str = "") -> dict:
    """The GRPO data columns of one record (as process_gen_data writes them)."""
    return {"partial_state": problem.init_state + partial, "domain": problem.domain,
            "test": json.dumps(problem.test), "id": problem.id, "init_state": problem.init_state}


def score(reward, problem, completions: list[str], partial: str = "", **kwargs) -> list[float]:
    columns = grpo_columns(problem, partial)
    batch = {name: [value] * len(completions) for name, value in columns.items()}
    return reward(prompts=["p"] * len(completions), completions=completions, **batch, **kwargs)


def test_split_at_stop_takes_the_earliest_stop_and_strips_it():
    assert split_at_stop("a\n```\ntail", ["```"]) == ("a\n", True, "\ntail")
    assert split_at_stop("a</code>b```c", ["```", "</code>"]) == ("a", True, "b```c")
    assert split_at_stop("no stop", ["```"]) == ("no stop", False, "")
    assert split_at_stop("```", ["```"]) == ("", True, "")


def test_tinycode_rewards_of_known_completions(reward):
    problem = tiny_problems(1)[0]
    body = problem.meta["solution"][len(problem.init_state):]
    trailing = "\nThis function filters the list."
    wrong = "    return \"wrong\"\n"
    rewards = score(reward, problem, [body + "```", body + "```" + trailing, wrong, wrong + "```", body])
    assert rewards[0] == pytest.approx(1 + SYMBOL)
    assert rewards[1] == pytest.approx(1 + SYMBOL - PENALTY * len(trailing))
    assert rewards[2] == 0.0
    assert rewards[3] == pytest.approx(SYMBOL)  # wrong, but it closed its block
    assert rewards[4] == pytest.approx(1.0)  # right, never closed: no bonus, no penalty


def test_partial_state_is_continued_not_repeated(reward):
    problem = tiny_problems(2)[1]
    lines = problem.meta["solution"][len(problem.init_state):].splitlines(keepends=True)
    partial, rest = "".join(lines[:2]), "".join(lines[2:])
    assert score(reward, problem, [rest + "```"], partial=partial) == [pytest.approx(1 + SYMBOL)]
    assert score(reward, problem, ["".join(lines) + "```"], partial=partial)[0] < 1  # repeats two lines


def test_apps_rewards_of_known_completions(reward):
    apps = get_benchmark("APPS")
    sum_two, add, _ = apps.load(str(FIXTURES), "apps_tiny.jsonl")
    assert score(reward, add, ["return a + b\n```", "return a - b\n```", "return a + b\n```\n# done"]) == [
        pytest.approx(1 + SYMBOL), pytest.approx(SYMBOL), pytest.approx(1 + SYMBOL - PENALTY * len("\n# done"))]
    solution = sum_two.meta["solutions"][0]
    assert score(reward, sum_two, [solution + "```", "print(3)\n```", "print(1 +)\n"]) == [
        pytest.approx(1 + SYMBOL), pytest.approx(0.5 + SYMBOL), 0.0]  # print(3) passes one test of two


def test_parts_and_statuses_are_logged_separately(reward, tmp_path):
    problem = tiny_problems(1)[0]
    body = problem.meta["solution"][len(problem.init_state):]
    metrics, extra = {}, {}
    reward.log_path = str(tmp_path / "rewards.jsonl")
    score(reward, problem, [body + "```xy", "    return (\n"], log_metric=metrics.__setitem__,
          log_extra=extra.__setitem__)
    assert metrics["reward/execution"] == pytest.approx(0.5)
    assert metrics["reward/symbol"] == pytest.approx(SYMBOL / 2)
    assert metrics["reward/trailing_penalty"] == pytest.approx(PENALTY)
    assert metrics["status/passed"] == 0.5 and metrics["status/syntax_error"] == 0.5
    assert extra["status"] == ["passed", "syntax_error"]
    logged = json.loads((tmp_path / "rewards.jsonl").read_text())
    assert logged["ids"] == [problem.id] * 2 and [s["status"] for s in logged["scores"]] == ["passed", "syntax_error"]


def test_one_batch_of_many_problems_is_judged_in_one_call(reward):
    problems = tiny_problems(6)
    bodies = [p.meta["solution"][len(p.init_state):] + "```" for p in problems]
    columns = [grpo_columns(p) for p in problems]
    batch = {name: [c[name] for c in columns for _ in range(2)] for name in columns[0]}
    completions = [text for body in bodies for text in (body, "    return None\n```")]
    rewards = reward(prompts=["p"] * len(completions), completions=completions, **batch)
    assert rewards[0::2] == [pytest.approx(1 + SYMBOL)] * 6
    assert all(value < 1 for value in rewards[1::2])


# -- command line and data --------------------------------------------------------------------------


def test_original_flags_and_every_grpo_config_field(tmp_path):
    from trl import GRPOConfig

    from models.train_grpo import build_arguments
    from models.training import split_namespace

    argv = ["model", str(tmp_path / "out"), "data.jsonl", "--bf16", "false", "--gradient_accumulation_steps", "2"]
    config, script = split_namespace(GRPOConfig, build_arguments().parse_args(argv))
    assert (config.temperature, config.num_generations, config.learning_rate, config.max_completion_length) == \
        (0.7, 8, 1e-6, 1024)  # the original script's defaults
    assert (config.per_device_train_batch_size, config.save_steps, config.report_to) == (4, 0.5, ["wandb"])
    assert (script.max_prompt_length, script.symbol_reward, script.trailing_penalty) == (1024, 1e-3, 1e-6)
    assert config.output_dir == str(tmp_path / "out") and not config.bf16
    argv += ["--lr", "1e-7", "--epochs", "2", "--batch_size_per_device", "2", "--log_completions", "--beta", "0.04",
             "--loss_type", "dapo", "--num_generations", "4", "--epsilon_high", "0.28", "--scale_rewards", "none",
             "--save_only_model", "--report_to", "none", "--generation_kwargs", '{"top_k": 20}',
             "--symbol_reward", "0.01"]
    config, script = split_namespace(GRPOConfig, build_arguments().parse_args(argv))
    assert (config.learning_rate, config.num_train_epochs, config.per_device_train_batch_size) == (1e-7, 2.0, 2)
    assert config.log_completions and config.save_only_model and config.beta == 0.04
    assert (config.loss_type, config.epsilon_high, config.scale_rewards) == ("dapo", 0.28, "none")
    assert config.generation_kwargs == {"top_k": 20} and script.symbol_reward == 0.01
    with pytest.raises(SystemExit):
        build_arguments().parse_args(argv + ["--beta", "lots"])  # a typed flag


def test_bad_data_fails_in_one_line(tmp_path):
    path = tmp_path / "grpo.jsonl"
    good = {"prompt": "p", "init_state": "", "partial_state": "", "domain": "TinyCode", "test": "{}", "id": "1"}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "test": {"tests": []}}) + "\n")
    with pytest.raises(DataError, match=r"grpo.jsonl:2: field 'test' must be a string"):
        load_records(str(path), list(good))
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "partial_state"}) + "\n")
    with pytest.raises(DataError, match=r"grpo.jsonl:1: missing field 'partial_state'"):
        load_records(str(path), list(good))


# -- runs (slow) -------------------------------------------------------------------------------------

GRPO_FLAGS = ["--num_generations", "4", "--batch_size_per_device", "4", "--max_completion_length", "40",
              "--temperature", "1.0", "--report_to", "none", "--logging_steps", "1", "--gradient_checkpointing",
              "false", "--seed", "3"]


@pytest.fixture(scope="module")
def rest(tmp_path_factory, sandbox):
    return sft_policy_and_grpo_data(tmp_path_factory.mktemp("rest"), sandbox)


def assert_loads_and_generates(save_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(save_dir)
    model = AutoModelForCausalLM.from_pretrained(save_dir)
    inputs = tokenizer(["def f(xs):\n"], return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert output.shape[1] == inputs["input_ids"].shape[1] + 5


@pytest.mark.slow
def test_grpo_steps_on_rest_data(rest):
    directory, model, data = rest
    records = [json.loads(line) for line in data.read_text().splitlines()]
    assert any(r["partial_state"] != r["init_state"] for r in records)  # ReST prefixes, not just prompts
    save_dir = directory / "models" / "ckpts" / "grpo" / "tiny" / "1"
    done = run_script([str(REPO / "models" / "train_grpo.py"), str(model), str(save_dir), str(data), *GRPO_FLAGS,
                       "--max_steps", "3", "--save_steps", "2", "--lr", "1e-4"], cwd=directory)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [entry for entry in log_history(save_dir) if "loss" in entry]
    assert [entry["step"] for entry in steps] == [1, 2, 3]
    assert min(entry["frac_reward_zero_std"] for entry in steps) < 1  # some group had rewards that differ
    assert changed_weights(model, save_dir)
    for key in ("reward/execution", "reward/symbol", "reward/trailing_penalty", "status/syntax_error",
                "frac_reward_zero_std", "rewards/code_reward/mean"):
        assert key in steps[0], key
    logged = [json.loads(line) for line in (save_dir / "rewards.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged] == [1, 2, 3] and all(len(entry["ids"]) == 4 for entry in logged)
    assert (save_dir / "checkpoint-2").is_dir() and Path(str(save_dir) + ".args.json").exists()
    assert_loads_and_generates(save_dir)


@pytest.mark.slow
def test_resume_continues_step_learning_rate_and_prompt_order(rest):
    directory, model, data = rest
    script = str(REPO / "models" / "train_grpo.py")
    whole, part = directory / "whole", directory / "part"
    flags = [*GRPO_FLAGS, "--lr", "1e-3", "--save_steps", "2"]
    done = run_script([script, str(model), str(whole), str(data), *flags, "--max_steps", "4"], cwd=directory)
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_script([script, str(model), str(part), str(data), *flags, "--max_steps", "4", "--stop_after_steps", "2"],
                      cwd=directory)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [entry["step"] for entry in log_history(part) if "loss" in entry] == [1, 2]
    done = run_script([script, str(model), str(part), str(data), *flags, "--max_steps", "4",
                       "--resume_from_checkpoint", "last"], cwd=directory)
    assert done.returncode == 0, done.stderr[-3000:]

    def after(save_dir, key):
        return [(entry["step"], entry[key]) for entry in log_history(save_dir)
                if "loss" in entry and entry["step"] > 2]

    assert after(part, "learning_rate") == after(whole, "learning_rate") and len(after(whole, "learning_rate")) == 2
    # the same weights and random state: the same completions, so the same rewards
    rewards = [[value for _, value in after(save_dir, "reward")] for save_dir in (part, whole)]
    assert rewards[0] == pytest.approx(rewards[1])

    def order(save_dir):
        return [(entry["step"], entry["ids"]) for entry in map(json.loads, (save_dir / "rewards.jsonl").open())]

    assert order(part)[2:] == order(whole)[2:]
    assert [step for step, _ in order(part)] == [1, 2, 3, 4]
    import torch

    optimizer = torch.load(part / "checkpoint-4" / "optimizer.pt", weights_only=False)
    assert {state["step"].item() for state in optimizer["state"].values()} == {4.0}
    assert_loads_and_generates(part)


def accelerate_launcher(*options: str) -> list[str]:
    launcher = [str(Path(REPO / ".venv" / "bin" / "accelerate")), "launch", *options]
    if not Path(launcher[0]).exists():
        launcher[0] = shutil.which("accelerate") or "accelerate"
    return launcher


@pytest.mark.slow
@pytest.mark.parametrize("zero2", [True, False], ids=["zero2", "ddp"])
def test_accelerate_launch_two_processes_on_cpu(rest, zero2):
    """Two ranks, with ZeRO-2 (the README's launch) and without DeepSpeed (DDP over gloo); each rank
    scores its own completions, so both reward logs exist and the two ranks saw different prompts."""
    directory, model, data = rest
    save_dir = directory / ("ds" if zero2 else "ddp")
    if zero2:
        launcher = accelerate_launcher("--config_file", str(REPO / "config" / "accelerate" / "cpu_deepspeed.yaml"),
                                       "--num_processes", "2")
        extra = ["--deepspeed_config", str(REPO / "config" / "zero2_config.json")]
    else:
        # `--cpu --num_processes 2` would start one process: accelerate runs several CPU processes only through
        # mpirun; --multi_gpu starts them with torchrun, and train_grpo.py then trains on CPU over gloo
        launcher, extra = accelerate_launcher("--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                                              "--mixed_precision", "no", "--dynamo_backend", "no"), []
    flags = [*GRPO_FLAGS[:3], "2", *GRPO_FLAGS[4:]]  # 2 per device x 2 processes = one group of 4
    done = run_script([str(REPO / "models" / "train_grpo.py"), str(model), str(save_dir), str(data), *flags, *extra,
                       "--max_steps", "2", "--save_steps", "2"], cwd=directory, launcher=launcher, timeout=480)
    assert done.returncode == 0, done.stderr[-3000:]
    if zero2:
        assert (save_dir / "checkpoint-2" / "global_step2").is_dir()  # a DeepSpeed engine checkpoint
    assert [entry["step"] for entry in log_history(save_dir) if "loss" in entry] == [1, 2]
    ranks = [[json.loads(line) for line in (save_dir / name).read_text().splitlines()]
             for name in ("rewards.jsonl", "rewards.rank1.jsonl")]
    assert [len(entry["ids"]) for log in ranks for entry in log] == [2, 2, 2, 2]
    assert_loads_and_generates(save_dir)


@pytest.mark.slow
def test_two_ranks_refuse_a_partial_group_in_one_line_each(rest):
    directory, model, data = rest
    launcher = accelerate_launcher("--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                                   "--mixed_precision", "no", "--dynamo_backend", "no")
    done = run_script([str(REPO / "models" / "train_grpo.py"), str(model), str(directory / "refused"), str(data),
                       "--batch_size_per_device", "2", "--num_generations", "8", "--report_to", "none"],
                      cwd=directory, launcher=launcher, timeout=300)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) >= 2 and all(line.startswith("error: ") and line.count("error:") == 1 for line in errors)
    assert "--gradient_accumulation_steps 2" in errors[0] and "--prompts_per_step" in errors[0]


@pytest.mark.slow
def test_empty_data_is_one_line_error(tmp_path, tiny_model_dir):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    data = tmp_path / "grpo.jsonl"
    data.write_text("")
    done = subprocess.run([sys.executable, str(REPO / "models" / "train_grpo.py"), str(tiny_model_dir),
                           str(tmp_path / "out"), str(data), "--report_to", "none", "--num_generations", "4"],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"error: {data}: no training records"
    assert "Traceback" not in done.stderr
    default_batch = subprocess.run([sys.executable, str(REPO / "models" / "train_grpo.py"), str(tiny_model_dir),
                                    str(tmp_path / "out"), str(data), "--report_to", "none"],
                                   capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert default_batch.returncode == 2 and "not whole groups of --num_generations 8" in default_batch.stderr
    assert "Traceback" not in default_batch.stderr
