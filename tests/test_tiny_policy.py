"""`python -m models.tiny` mechanics with a tiny config on a few problems: the saved folder loads
with the Auto classes offline, keeps the chat template and one token per digit, the loss falls, the
evaluation goes through the sandbox, and a rerun with --if_missing does nothing; `--task TinyMath`
trains on the math prompt and solution and grades without the sandbox."""
from __future__ import annotations

import json
import os
import random

import pytest

from data import tinycode, tinymath
from models.tiny import (
    TinyPolicyArguments,
    collate,
    completion_text,
    encode_examples,
    learning_rate_at,
    length_bucketed_batches,
    parse_args,
    train_tiny_policy,
)


@pytest.fixture(scope="module")
def data_directory(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tinycode")
    tinycode.write(str(directory), seed=0, n_train=24, n_test=4)
    return str(directory)


@pytest.fixture(scope="module")
def trained(data_directory, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("ckpts") / "tiny-coder")
    os.makedirs(output + ".tmp-99999999")  # left by a killed run (no such pid): removed by the next run
    argv = ["--output", output, "--data_directory", data_directory, "--steps", "40", "--batch_size", "8",
            "--learning_rate", "5e-3", "--warmup_steps", "4", "--hidden_size", "48", "--intermediate_size", "96",
            "--layers", "1", "--heads", "2", "--kv_heads", "1", "--threads", "1", "--log_every", "10",
            "--eval_n", "2", "--eval_max_tokens", "24", "--max_eval_problems", "2"]
    figures = train_tiny_policy(parse_args(argv))
    return output, figures, argv


def test_saved_policy_loads_offline_with_template_and_digit_tokens(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output, _, _ = trained
    assert os.listdir(os.path.dirname(output)) == ["tiny-coder"]  # no temporary folder left, nor a stale one
    tokenizer = AutoTokenizer.from_pretrained(output)
    model = AutoModelForCausalLM.from_pretrained(output)
    assert model.config.model_type == "qwen2" and model.config.eos_token_id == tokenizer.eos_token_id
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.padding_side == "left"
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    pieces = tokenizer.convert_ids_to_tokens(tokenizer("x = 2025 + 13", add_special_tokens=False)["input_ids"])
    assert [piece for piece in pieces if piece.strip("Ġ").isdigit()] == ["2", "0", "2", "5", "1", "3"]


def test_loss_falls_and_figures_are_written(trained):
    output, figures, argv = trained
    curve = figures["loss_curve"]
    assert [point["step"] for point in curve] == [10, 20, 30, 40]
    assert curve[-1]["loss"] < 0.7 * curve[0]["loss"]
    written = json.loads(open(os.path.join(output, "eval.json")).read())
    assert written["final_loss"] == curve[-1]["loss"] and written["training_s"] > 0
    evaluation = written["eval"]
    assert evaluation["n_problems"] == 2 and evaluation["n_programs"] == 4
    assert 0.0 <= evaluation["pass@1"] <= 1.0 and sum(evaluation["statuses"].values()) == 4
    args = json.loads(open(os.path.join(output, "training_args.json")).read())
    assert args["steps"] == 40 and args["hidden_size"] == 48 and args["seed"] == 0


def test_if_missing_leaves_an_existing_policy_alone(trained):
    output, _, argv = trained
    before = os.path.getmtime(os.path.join(output, "model.safetensors"))
    assert train_tiny_policy(parse_args(argv + ["--if_missing"])) == {}
    assert os.path.getmtime(os.path.join(output, "model.safetensors")) == before


def test_examples_carry_loss_on_the_completion_only(data_directory):
    from data.registry import get_benchmark
    from models.tiny import build_tokenizer, tokenizer_texts
    from prompts import format_prompt

    problems = get_benchmark("TinyCode").load(data_directory, "train.jsonl")[:3]
    tokenizer = build_tokenizer(tokenizer_texts(problems), vocab_size=400)
    examples = encode_examples(problems, tokenizer)
    input_ids, attention_mask, labels = collate(examples, tokenizer.pad_token_id)
    for row, (problem, (ids, prompt_length)) in enumerate(zip(problems, examples)):
        # the prompt is exactly what sampling feeds the model, the target the rest of the solution
        assert tokenizer.decode(ids[:prompt_length]) == format_prompt(problem, tokenizer)
        target = [token for token in labels[row].tolist() if token != -100]
        assert tokenizer.decode(target) == completion_text(problem) + "<|im_end|>"
        assert completion_text(problem).endswith("\n```") and problem.init_state + completion_text(problem)[:-3] \
            == problem.meta["solution"]
        assert attention_mask[row].sum() == len(ids)


def test_batches_are_length_bucketed_and_cover_each_epoch():
    examples = [([0] * length, 1) for length in random.Random(1).choices(range(5, 200), k=64)]
    batches = length_bucketed_batches(examples, batch_size=8, rng=random.Random(0), pool_batches=8)
    epoch = [next(batches) for _ in range(8)]
    assert sorted(len(ids) for batch in epoch for ids, _ in batch) == sorted(len(ids) for ids, _ in examples)
    padding = lambda batches: sum(max(len(ids) for ids, _ in b) * len(b) - sum(len(ids) for ids, _ in b)  # noqa: E731
                                  for b in batches)
    in_given_order = [examples[start:start + 8] for start in range(0, 64, 8)]
    assert padding(epoch) < 0.25 * padding(in_given_order)


def test_learning_rate_warms_up_then_decays():
    args = TinyPolicyArguments(steps=100, learning_rate=1.0, warmup_steps=10)
    rates = [learning_rate_at(step, args) for step in range(100)]
    assert rates[:10] == sorted(rates[:10]) and rates[9] == 1.0
    assert rates[10:] == sorted(rates[10:], reverse=True) and abs(rates[-1] - 0.1) < 1e-9


def test_same_seed_same_policy(trained, tmp_path):
    from safetensors.torch import load_file

    output, figures, argv = trained
    again = str(tmp_path / "again")
    rerun = train_tiny_policy(parse_args(argv[2:] + ["--output", again, "--eval_n", "0"]))
    assert [point["loss"] for point in rerun["loss_curve"]] == [point["loss"] for point in figures["loss_curve"]]
    first, second = (load_file(os.path.join(folder, "model.safetensors")) for folder in (output, again))
    assert first.keys() == second.keys() and all(first[name].equal(second[name]) for name in first)
    assert open(os.path.join(output, "tokenizer.json")).read() == open(os.path.join(again, "tokenizer.json")).read()


def test_bad_data_file_is_one_line_error(tmp_path):
    import subprocess
    import sys

    (tmp_path / "train.jsonl").write_text('{"task_id": "TinyCode/train/0"}\n')
    run = subprocess.run([sys.executable, "-m", "models.tiny", "--data_directory", str(tmp_path), "--output",
                          str(tmp_path / "policy")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2  # bad input, as every stage
    assert run.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'train.jsonl'}:1: missing field 'prompt'"
    assert sorted(os.listdir(tmp_path)) == ["train.jsonl"]


def test_command_line_is_the_dataclass():
    """Every field is a flag with its default (also spelled with dashes); --if_missing bare or with a value."""
    assert parse_args([]) == TinyPolicyArguments()
    assert parse_args(["--if_missing"]).if_missing and not parse_args(["--if_missing", "false"]).if_missing
    assert parse_args(["--learning-rate", "0.5", "--steps", "3"]) == TinyPolicyArguments(learning_rate=0.5, steps=3)


def test_task_picks_the_default_paths():
    assert (TinyPolicyArguments().output, TinyPolicyArguments().data_directory) == \
        (os.path.join("models", "ckpts", "tiny-coder"), os.path.join("data", "TinyCode"))
    math = parse_args(["--task", "TinyMath"])
    assert (math.output, math.data_directory) == (os.path.join("models", "ckpts", "tiny-math"),
                                                  os.path.join("data", "TinyMath"))
    assert parse_args(["--task", "TinyMath", "--output", "elsewhere"]).output == "elsewhere"
    with pytest.raises(SystemExit):
        parse_args(["--task", "TinyChess"])


@pytest.fixture(scope="module")
def math_directory(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tinymath")
    tinymath.write(str(directory), seed=0, n_train=24, n_test=4)
    return str(directory)


def test_math_examples_end_with_the_answer_and_end_of_turn(math_directory):
    from data.registry import get_benchmark
    from models.tiny import build_tokenizer, tokenizer_texts
    from prompts import format_prompt

    problems = get_benchmark("TinyMath").load(math_directory, "train.jsonl")[:3]
    tokenizer = build_tokenizer(tokenizer_texts(problems), vocab_size=400)
    for problem, (ids, prompt_length) in zip(problems, encode_examples(problems, tokenizer)):
        prompt = tokenizer.decode(ids[:prompt_length])
        assert prompt == format_prompt(problem, tokenizer) and prompt.endswith("<|im_start|>assistant\n")
        assert f"Question: {problem.prompt}" in prompt
        completion = tokenizer.decode(ids[prompt_length:])
        assert completion == problem.meta["solution"] + "<|im_end|>"
        assert completion.endswith(f"\n#### {problem.test['answer']}<|im_end|>")


def test_math_policy_trains_and_is_graded_without_the_sandbox(math_directory, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output = str(tmp_path / "tiny-math")
    argv = ["--task", "TinyMath", "--output", output, "--data_directory", math_directory, "--steps", "20",
            "--batch_size", "8", "--warmup_steps", "4", "--hidden_size", "48", "--intermediate_size", "96",
            "--layers", "1", "--heads", "2", "--kv_heads", "1", "--log_every", "10", "--eval_n", "2",
            "--eval_max_tokens", "24", "--max_eval_problems", "2"]
    figures = train_tiny_policy(parse_args(argv))
    assert AutoModelForCausalLM.from_pretrained(output).config.model_type == "qwen2"
    assert AutoTokenizer.from_pretrained(output).eos_token == "<|im_end|>"
    written = json.loads(open(os.path.join(output, "eval.json")).read())
    assert written["eval"] == figures["eval"] and written["eval"]["n_programs"] == 4
    assert set(written["eval"]["statuses"]) <= {"passed", "failed", "no_answer"}  # the GSM8K rule's verdicts
    assert sum(written["eval"]["statuses"].values()) == 4
    assert json.loads(open(os.path.join(output, "training_args.json")).read())["task"] == "TinyMath"
