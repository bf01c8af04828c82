"""rms/train.py: arguments, data checks, the seeded split, the DeepSpeed dict, and training runs on a tiny
model (in-process without DeepSpeed by default; under the deepspeed launcher, plain python and DDP as slow)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from data.jsonl import DataError
from rms import train
from rms.trainer import deepspeed_dict, value_metrics
from rms.value_models import load_value_model
from tests.conftest import REPO
from tests.value_fixtures import BAD, GOOD, QUESTIONS, build_tiny_lm, value_rows, write_rows

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    directory = tmp_path_factory.mktemp("rm")
    lm = build_tiny_lm(directory / "lm")
    return lm, write_rows(directory / "values.jsonl", value_rows(60)), directory


def run_args(lm, data, save_dir, *extra):
    return [str(lm), str(save_dir), str(data), *extra, "--lr", "3e-3", "--min_eval_rows", "12",
            "--batch_size_per_device", "8", "--report_to", "none", "--logging_steps", "1"]


def test_rm_class_positional_or_flag(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.jsonl").write_text("")
    base = ["base", "out", "data.jsonl"]
    assert train.parse_args(base + ["transformers_prob", "--deepspeed_config", "none"]).rm_class == "transformers_prob"
    args = train.parse_args(base + ["--rm_class", "standard_scalar"])
    assert (args.rm_class, args.paradigm) == ("standard_scalar", "common")
    assert train.parse_args(base + ["transformers_scalar"]).deepspeed_config.endswith("rms/config/zero3_config.json")
    for bad in (base, base + ["transformers_scalar", "--rm_class", "transformers_prob"],
                base + ["standard_scalar", "--paradigm", "transformers_deepspeed"],
                base + ["transformers_scalar", "--paradigm", "common"],
                base + ["transformers_prob", "--loss_weight_factor", "1.5"],
                base + ["transformers_scalar", "--save_only_model"],
                base + ["transformers_scalar", "--deepspeed_config", "nowhere.json"],
                ["base", "out", "missing.jsonl", "transformers_scalar"]):
        with pytest.raises(SystemExit):
            train.parse_args(bad)


def test_deepspeed_config_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").write_text("")
    args = train.parse_args(["b", "o", "d", "transformers_scalar",
                             "--deepspeed_config", "rms/config/zero2_config.json"])
    assert args.deepspeed_config == os.path.join(REPO, "rms", "config", "zero2_config.json")


def test_read_value_data_names_file_and_line(tmp_path):
    path = tmp_path / "v.jsonl"
    path.write_text('{"prompt": "p", "answer": "a", "reward": 1}\n{"prompt": "p", "reward": 0.5}\n')
    with pytest.raises(DataError, match=r"v.jsonl:2: field 'answer' missing"):
        train.read_value_data(str(path), 0.0, 1.0)
    path.write_text('{"prompt": "p", "answer": "a", "reward": 1.5}\n')
    with pytest.raises(DataError, match=r"v.jsonl:1: reward 1.5 outside \[0.0, 1.0\]"):
        train.read_value_data(str(path), 0.0, 1.0)
    path.write_text('{"prompt": "p", "answer": "a", "reward": 1, "id": 3}\n')
    assert train.read_value_data(str(path), 0.0, 1.0) == [{"prompt": "p", "answer": "a", "reward": 1.0}]


def test_bad_value_data_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "v.jsonl").write_text('{"prompt": "p", "reward": 0.5}\n')
    done = subprocess.run([sys.executable, os.path.join(REPO, "rms", "train.py"), "base", str(tmp_path / "out"),
                           str(tmp_path / "v.jsonl"), "--rm_class", "standard_scalar"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].endswith("v.jsonl:1: field 'answer' missing or not a str")
    assert "Traceback" not in done.stderr


def test_training_scripts_leave_no_process_group_to_interpreter_exit(tmp_path):
    """exit_with_status destroys the process group a script joined before the interpreter finalizes
    (gloo's threads left to finalization can abort a finished rank)."""
    script = tmp_path / "script.py"
    script.write_text(
        "import atexit, os, torch.distributed as dist\n"
        "from models.training import exit_with_status\n"
        "atexit.register(lambda: print('initialized at exit:', dist.is_initialized()))\n"
        "os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=os.environ['PORT'])\n"
        "def main():\n"
        "    dist.init_process_group('gloo', rank=0, world_size=1)\n"
        "    return 3\n"
        "exit_with_status(main)\n")
    from rms.trainer import free_port

    done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PORT": str(free_port()), "PYTHONPATH": str(REPO)})
    assert done.returncode == 3, done.stderr[-2000:]  # main's status still decides the exit code
    assert "initialized at exit: False" in done.stdout


def test_split_is_seeded_disjoint_and_bounded():
    rows = [{"prompt": str(i), "answer": "", "reward": 0.0} for i in range(30)]
    first, held = train.split_rows(rows, 0.05, 100, seed=1)
    assert len(held) == 15 and len(first) == 15  # at most half is held out
    assert {r["prompt"] for r in first}.isdisjoint(r["prompt"] for r in held)
    assert train.split_rows(rows, 0.05, 100, seed=1) == (first, held)
    assert train.split_rows(rows, 0.05, 100, seed=2) != (first, held)
    with pytest.raises(ValueError, match="too few"):
        train.split_rows(rows[:1], 0.05, 100, seed=1)


def test_split_holds_out_whole_problems():
    # 30 problems with 100 programs each: a split by row would put every problem on both sides
    rows = [{"prompt": str(i), "answer": str(j), "reward": 0.0} for j in range(100) for i in range(30)]
    first, held = train.split_rows(rows, 0.05, 100, seed=1)
    assert {r["prompt"] for r in first}.isdisjoint(r["prompt"] for r in held)
    assert len(held) == 200 and len(first) + len(held) == len(rows)  # two whole problems reach 150 rows
    with pytest.raises(ValueError, match="too few"):
        train.split_rows([row for row in rows if row["prompt"] == "3"], 0.05, 100, seed=1)


def test_deepspeed_dict_overwrites_fixed_fields(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"train_micro_batch_size_per_gpu": 16, "gradient_accumulation_steps": "auto",
                                "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "weight_decay": "auto"}}}))
    args = train.parse_args(["b", "o", str(path), "transformers_scalar", "--deepspeed_config", str(path),
                             "--batch_size_per_device", "2", "--lr", "1e-7"])
    config = deepspeed_dict(args.deepspeed_config, args)
    assert config["train_micro_batch_size_per_gpu"] == 2 and config["gradient_accumulation_steps"] == "auto"
    assert config["optimizer"]["params"] == {"lr": 1e-7, "weight_decay": "auto"}


def test_value_metrics():
    metrics = value_metrics([0.5, 1.2, -1.0], [0.5, 0.9, 0.0], 0.0, 1.0, 0.05)  # clipped: errors 0, 0.1, 0
    assert metrics == {"mse": pytest.approx(0.01 / 3), "accuracy": pytest.approx(2 / 3)}


def initial_eval_mse(lm, rm_class, eval_rows) -> float:
    """The eval MSE of the untrained model (same seeded head) that training starts from."""
    import torch
    from transformers import AutoTokenizer

    from rms.trainer import ValueCollator, ValueRows
    from rms.value_models import load_backbone, model_outputs, outputs_to_values, prepare_tokenizer

    torch.manual_seed(42)
    model = load_backbone(rm_class, str(lm), dtype=torch.float32).eval()
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(lm))
    rows = ValueRows(eval_rows)
    batch = ValueCollator(tokenizer, 1024)([rows[i] for i in range(len(rows))])
    with torch.inference_mode():
        values = outputs_to_values(rm_class, model_outputs(rm_class, model, batch)).clamp(0, 1)
    return value_metrics(values.tolist(), batch["labels"].tolist(), 0.0, 1.0, 0.05)["mse"]


@pytest.mark.parametrize("rm_class, extra", [
    ("transformers_scalar", ["--deepspeed_config", "none", "--max_steps", "12", "--save_steps", "4"]),
    ("transformers_prob", ["--deepspeed_config", "none", "--max_steps", "24", "--save_steps", "0.5"]),
    ("standard_scalar", ["--epochs", "4"]),
])
def test_training_lowers_the_held_out_error_and_saves_best(tiny, tmp_path, rm_class, extra):
    lm, data, _ = tiny
    save_dir = tmp_path / "run"
    metrics = train.main(run_args(lm, data, save_dir, rm_class, *extra))
    _, eval_rows = train.split_rows(train.read_value_data(str(data), 0, 1), 0.05, 12, seed=42)
    assert metrics["eval_mse"] < initial_eval_mse(lm, rm_class, eval_rows)
    [result] = [json.loads(line) for line in (save_dir / "test_results.jsonl").read_text().splitlines()]
    assert result["model"] == str(save_dir / "best") and set(result["result"]) >= {"eval_mse", "eval_accuracy"}
    assert json.loads((save_dir / "train.args.json").read_text())["rm_class"] == rm_class
    value_model = load_value_model(str(save_dir))  # the class comes from best/value_model.json
    assert value_model.rm_type == "prm"
    scores = value_model.score(QUESTIONS, GOOD) + value_model.score(QUESTIONS, BAD)
    assert all(0.0 <= score <= 1.0 for score in scores) and len(scores) == 6


def command_env():
    return dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", WANDB_MODE="disabled",
                PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))


def run_command(command, cwd, timeout=600):
    completed = subprocess.run(command, cwd=cwd, env=command_env(), capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout + completed.stderr


@pytest.mark.slow
def test_deepspeed_launcher_two_ranks_zero3_from_another_directory(tiny, tmp_path):
    """`deepspeed --num_gpus 2` on CPU: two ranks under ZeRO-3 (before, the Trainer filled train_batch_size
    for one process and DeepSpeed stopped: "4 != 4 * 1 * 2"); best/ holds the full weights, which reload
    and score."""
    lm, data, _ = tiny
    save_dir = tmp_path / "ds3"
    from safetensors.torch import load_file

    from rms.trainer import free_port

    # a port of its own: the launcher's default 29500 may be taken by another run on the machine
    log = run_command(["deepspeed", "--num_gpus", "2", "--master_port", str(free_port()),
                       str(REPO / "rms" / "train.py"),
                       *run_args(lm, data, save_dir, "transformers_scalar", "--max_steps", "4", "--save_steps", "2",
                                 "--deepspeed_config", "rms/config/zero3_config.json")], cwd=tmp_path)
    # the main rank logs (the others log warnings only): the world it reports is the two ranks
    assert "DeepSpeed ZeRO stage 3" in log and "DeepSpeed on CPU: 2 processes" in log
    saved = load_file(str(save_dir / "best" / "model.safetensors"))
    base = load_file(str(lm / "model.safetensors"))
    assert saved["model.embed_tokens.weight"].shape == base["model.embed_tokens.weight"].shape  # not a shard
    value_model = load_value_model(str(save_dir))
    assert all(0.0 <= score <= 1.0 for score in value_model.score(QUESTIONS, GOOD))


@pytest.mark.slow
def test_plain_python_with_zero2_trains_the_prob_class(tiny, tmp_path):
    lm, data, _ = tiny
    save_dir = tmp_path / "ds2"
    log = run_command([sys.executable, "rms/train.py",
                       *run_args(lm, data, save_dir, "--rm_class", "transformers_prob", "--max_steps", "4",
                                 "--save_steps", "2", "--deepspeed_config", "rms/config/zero2_config.json")], cwd=REPO)
    assert "DeepSpeed ZeRO stage 2" in log
    assert 0.0 < load_value_model(str(save_dir)).score(QUESTIONS[:1], GOOD[:1])[0] < 1.0


@pytest.mark.slow
def test_standard_scalar_under_pytorch_ddp(tiny, tmp_path):
    lm, data, _ = tiny
    save_dir = tmp_path / "ddp"
    state = tmp_path / "start.pt"
    run_command([sys.executable, "rms/train.py", *run_args(lm, data, save_dir, "standard_scalar", "--paradigm",
                                                           "pytorch_ddp", "--num_processes", "2", "--epochs", "2")],
                cwd=REPO)
    assert sorted(p.name for p in save_dir.iterdir() if p.name.startswith("epoch")) == ["epoch1", "epoch2"]
    # --state_pth starts from a saved state_dict
    import torch

    from rms.value_models import StandardScalarModel

    torch.save(StandardScalarModel.from_pretrained(str(save_dir / "best")).state_dict(), state)
    run_command([sys.executable, "rms/train.py", *run_args(lm, data, tmp_path / "again", "standard_scalar",
                                                           "--state_pth", str(state), "--max_steps", "1")], cwd=REPO)


@pytest.mark.slow
def test_train_sh_runs_from_the_repository_root(tiny, tmp_path):
    lm, data, _ = tiny
    from rms.trainer import free_port

    env_overrides = {"BACKEND": str(lm), "SAVE_DIR": str(tmp_path / "sh"), "TRAIN_PTH": str(data),
                     "MASTER_PORT": str(free_port())}
    completed = subprocess.run(["bash", "rms/train.sh", "--max_steps", "2", "--min_eval_rows", "12",
                                "--report_to", "none", "--max_length", "256"], cwd=REPO,
                               env={**command_env(), **env_overrides}, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (tmp_path / "sh" / "best" / "value_model.json").exists()
