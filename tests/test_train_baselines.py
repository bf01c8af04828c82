"""SFT and DPO baselines (models/train.py): the original flags and the TRL config fields, one-line
data errors; slow: one SFT and one DPO step on the files process_gen_data writes from ReST
completions, each saved model loading and generating."""
from __future__ import annotations

import json

import pytest
from conftest import REPO
from rest_data import make_rest_data, run_script, save_tiny_policy, tiny_problems

from data.jsonl import DataError

STEP_FLAGS = ["--max_steps", "1", "--batch_size_per_device", "2", "--report_to", "none", "--logging_steps", "1",
              "--gradient_checkpointing", "false", "--save_steps", "1", "--lr", "1e-3"]


def test_flags_and_config_fields_per_mode(tmp_path):
    from trl import DPOConfig, SFTConfig

    from models.train import build_arguments, read_mode
    from models.training import split_namespace

    base = ["model", str(tmp_path / "out"), "data.jsonl", "--bf16", "false"]
    assert read_mode(base) == "sft"
    config, script = split_namespace(SFTConfig, build_arguments("sft").parse_args(base))
    assert (config.learning_rate, config.max_length, config.per_device_train_batch_size) == (2e-5, 2048, 4)
    assert script.mode == "sft" and script.test_pth is None
    argv = base + ["--mode", "dpo", "--beta", "0.2", "--max_seq_length", "512", "--lr", "5e-7", "--epochs", "3"]
    assert read_mode(argv) == "dpo"
    config, script = split_namespace(DPOConfig, build_arguments("dpo").parse_args(argv))
    assert isinstance(config, DPOConfig) and (config.beta, config.max_length) == (0.2, 512)
    assert (config.learning_rate, config.num_train_epochs, script.max_completion_length) == (5e-7, 3.0, 1024)
    with pytest.raises(SystemExit):
        build_arguments("sft").parse_args(base + ["--beta", "0.2"])  # a DPO field is no SFT flag


def test_dpo_data_without_rejected_fails_in_one_line(tmp_path):
    from models.training import load_records

    path = tmp_path / "dpo.jsonl"
    path.write_text(json.dumps({"prompt": "p", "chosen": "c"}) + "\n")
    with pytest.raises(DataError, match=r"dpo.jsonl:1: missing field 'rejected'"):
        load_records(str(path), ("prompt", "chosen", "rejected"))


@pytest.fixture(scope="module")
def rest(tmp_path_factory, sandbox):
    from transformers import AutoTokenizer

    directory = tmp_path_factory.mktemp("baselines")
    problems = tiny_problems(6)
    model = save_tiny_policy(problems, directory / "policy")
    return directory, model, make_rest_data(directory, problems, AutoTokenizer.from_pretrained(model), sandbox)


def loads_and_generates(save_dir) -> int:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(save_dir)
    model = AutoModelForCausalLM.from_pretrained(save_dir)
    inputs = tokenizer(["def f(xs):\n"], return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    return output.shape[1] - inputs["input_ids"].shape[1]


def changed_weights(before, after) -> bool:
    from safetensors.torch import load_file

    old, new = load_file(before / "model.safetensors"), load_file(after / "model.safetensors")
    return any(not (old[name] == new[name]).all() for name in old)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sft", "dpo"])
def test_one_step_saves_a_model_that_generates(rest, mode):
    directory, model, files = rest
    first = json.loads(files[mode].read_text().splitlines()[0])
    assert set(first) == ({"prompt", "completion"} if mode == "sft" else {"prompt", "chosen", "rejected"})
    save_dir = directory / "models" / "ckpts" / mode / "tiny" / "1"
    done = run_script([str(REPO / "models" / "train.py"), str(model), str(save_dir), str(files[mode]),
                       "--mode", mode, *STEP_FLAGS], cwd=directory)
    assert done.returncode == 0, done.stderr[-3000:]
    history = json.loads((save_dir / "trainer_state.json").read_text())["log_history"]
    assert [entry["step"] for entry in history if "loss" in entry] == [1]
    assert (save_dir / "checkpoint-1").is_dir() and (directory / "models" / "ckpts" / mode / "tiny" / "1.args.json")\
        .exists()
    assert changed_weights(model, save_dir)
    assert loads_and_generates(save_dir) == 4
