"""Shared fixtures. Real benchmark data is read from ../shared/data (beside the checkout); tests
that need it skip with a reason when it is absent, and fail under CI=true."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
SHARED_DATA = Path(os.environ.get("RESTRL_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("OMP_NUM_THREADS", "1")


def shared_data(relative: str) -> Path:
    """Path to a file of ../shared/data, or skip (fail under CI=true) when it is missing."""
    path = SHARED_DATA / relative
    if not path.exists():
        message = f"shared benchmark data not found: {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true requires it)")
        pytest.skip(message)
    return path


def fixture_records(name: str) -> list[dict]:
    """The records of a JSONL fixture of ours (tests/fixtures/)."""
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def sandbox():
    from evaluation.sandbox import Sandbox

    with Sandbox(workers=2) as pool:
        yield pool


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Qwen2 policy with a tokenizer trained on TinyCode text, saved in a second: for
    stage smoke tests (mechanics, not quality)."""
    from data.tinycode import generate
    from models.tiny import build_model, build_tokenizer

    train, _ = generate(seed=0, n_train=200, n_test=0)
    tokenizer = build_tokenizer([record["prompt"] + record["solution"] for record in train], vocab_size=400)
    path = tmp_path_factory.mktemp("tiny-policy")
    build_model(tokenizer, hidden_size=64, layers=2).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_math_policy(tmp_path_factory) -> str:
    """The tiny TinyMath policy: $RESTRL_TINY_MATH or models/ckpts/tiny-math when it is there (trained by
    `python -m models.tiny --task TinyMath`), else one trained here for 150 steps on 400 tasks (about two
    minutes; it writes GSM8K's format and solves little: the end-to-end tests check mechanics, not quality)."""
    policy = os.environ.get("RESTRL_TINY_MATH", str(REPO / "models" / "ckpts" / "tiny-math"))
    if os.path.isdir(policy):
        return policy
    from data import tinymath
    from models.tiny import parse_args, train_tiny_policy

    work = tmp_path_factory.mktemp("tiny-math")
    tinymath.write(str(work / "data"), seed=0, n_train=400, n_test=4)
    train_tiny_policy(parse_args(["--task", "TinyMath", "--output", str(work / "policy"), "--data_directory",
                                  str(work / "data"), "--steps", "150", "--eval_n", "1", "--max_eval_problems", "4"]))
    return str(work / "policy")
