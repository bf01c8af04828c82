"""`evaluation.eval` as a subprocess: metrics against hand-computed values from fixed answers, a problem
that cannot be judged counting as a failure, each method end to end with tiny local models, and agreement
with `evaluation.verify` on real HumanEval and MBPP data."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from data.jsonl import write_jsonl
from experiment import paths
from tests.conftest import REPO, shared_data

ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def run(cwd, *flags, expect=0):
    completed = subprocess.run([sys.executable, "-m", "evaluation.eval", *flags], cwd=cwd, env=ENV,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == expect, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1]) if expect == 0 else completed.stderr


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Three TinyCode test problems; the third has lost its tests (it cannot be judged)."""
    from data.tinycode import generate

    _, test = generate(seed=0, n_train=0, n_test=3)
    test[2]["tests"] = []
    path = tmp_path_factory.mktemp("tinycode")
    write_jsonl(str(path / "test.jsonl"), test)
    return path, test


def eval_flags(data_dir, *flags):
    return ["--domain", "TinyCode", "--directory", str(data_dir[0]), "--file", "test.jsonl", "--max_tokens", "16",
            "--workers", "2", *flags]


def test_fixed_answers_give_hand_computed_metrics(tmp_path, data_dir):
    _, test = data_dir
    good = [record["solution"] for record in test]
    bad = [record["signature"] + "\n    return None\n" for record in test]
    answers = [{"id": test[0]["task_id"], "init_succeeded": True, "completions": [good[0], bad[0], good[0], bad[0]],
                "samples": 4, "token_usage": {"prompt": 40, "completion": 60}},
               {"id": test[1]["task_id"], "init_succeeded": True, "completions": [bad[1], bad[1], good[1], bad[1]],
                "samples": 4, "token_usage": {"prompt": 40, "completion": 20}},
               {"id": test[2]["task_id"], "init_succeeded": False, "completions": [], "samples": 0,
                "token_usage": {}}]
    directory = tmp_path / paths.eval_dir("TinyCode", "Common", "no-model")
    directory.mkdir(parents=True)
    write_jsonl(str(directory / "temp_0.7_tokens_16_n_4_completions.jsonl"), answers)
    results = run(tmp_path, *eval_flags(data_dir, "--backend", "no-model", "--n", "4"))
    # pass@1: (2/4 + 1/4 + 0) / 3; pass@2: (1 - C(2,2)/C(4,2) + 1 - C(3,2)/C(4,2) + 0) / 3
    assert results["n_problems"] == 3 and results["n_load_failed"] == 1
    assert results["pass@1"] == pytest.approx((0.5 + 0.25) / 3)
    assert results["pass@2"] == pytest.approx((5 / 6 + 0.5) / 3)
    assert results["pass@4"] == pytest.approx(2 / 3) and "pass@5" not in results
    assert results["strict_acc"] == pytest.approx(results["pass@1"])
    assert results["samples_per_problem"] == pytest.approx(8 / 3)
    assert results["tokens_per_problem"] == pytest.approx(160 / 3)
    low, high = results["strict_acc_ci95"]
    assert 0 <= low <= results["strict_acc"] <= high <= 1
    saved = json.loads((directory / "temp_0.7_tokens_16_n_4_results.jsonl").read_text())
    assert saved["pass@2"] == results["pass@2"] and saved["statuses"]["passed"] == 3


def test_common_end_to_end_counts_unjudgeable_problem(tmp_path, data_dir, tiny_model_dir):
    results = run(tmp_path, *eval_flags(data_dir, "--backend", str(tiny_model_dir), "--n", "2"))
    assert results["n_problems"] == 3 and results["n_load_failed"] == 1
    assert results["samples_per_problem"] == pytest.approx(4 / 3)
    directory = tmp_path / paths.eval_dir("TinyCode", "Common", str(tiny_model_dir))
    answers = [json.loads(line) for line in open(directory / "temp_0.7_tokens_16_n_2_completions.jsonl")]
    assert [a["init_succeeded"] for a in sorted(answers, key=lambda a: a["id"])] == [True, True, False]
    assert all(len(a["completions"]) == 2 for a in answers if a["init_succeeded"])
    verified = [json.loads(line) for line in open(directory / "temp_0.7_tokens_16_n_2_verified.jsonl")]
    assert len(verified) == 3
    # a rerun resumes: nothing generated again, the same figures
    assert run(tmp_path, *eval_flags(data_dir, "--backend", str(tiny_model_dir), "--n", "2")) == results


def test_best_of_n_with_a_value_model(tmp_path, data_dir, tiny_model_dir):
    flags = eval_flags(data_dir, "--backend", str(tiny_model_dir), "--n", "2", "--num_sample", "3",
                       "--rm_backend", str(tiny_model_dir), "--rm_class", "transformers_scalar", "--rm_type", "orm",
                       "--idx_list", "0", "1")
    results = run(tmp_path, *flags)
    assert results["n_problems"] == 2 and results["samples_per_problem"] == 6
    directory = tmp_path / paths.eval_dir("TinyCode", "Common", str(tiny_model_dir))
    name = (f"rm_{paths.short_slug(str(tiny_model_dir))}_transformers_scalar_orm_sample_3_temp_0.7_tokens_16_n_2"
            "_results.jsonl")
    assert (directory / name).exists()
    answers = [json.loads(line) for line in open(directory / name.replace("results", "completions"))]
    assert all(len(a["completions"]) == 2 for a in answers)


@pytest.mark.slow
@pytest.mark.parametrize("rm_type", ["prm", "orm"])
def test_mcts_end_to_end(tmp_path, data_dir, tiny_model_dir, rm_type):
    flags = eval_flags(data_dir, "--method", "MCTS", "--backend", str(tiny_model_dir), "--rm_backend",
                       str(tiny_model_dir), "--rm_type", rm_type, "--iteration_limit", "2", "--num_sample", "2",
                       "--num_decision", "2")
    results = run(tmp_path, *flags)
    assert results["n_problems"] == 3 and results["n_load_failed"] == 1
    assert 0 < results["samples_per_problem"] <= 2 * 2 * 2 / 3 + 1e-9
    directory = tmp_path / paths.eval_dir("TinyCode", "MCTS", str(tiny_model_dir))
    assert any(f"_transformers_scalar_{rm_type}_time_None_iter_2_sample_2_decision_2_" in name
               for name in os.listdir(directory))


def test_mcts_needs_a_value_model(tmp_path, data_dir):
    assert "--rm_backend" in run(tmp_path, *eval_flags(data_dir, "--method", "MCTS"), expect=2)


@pytest.mark.parametrize("domain, relative", [("HumanEval", "humaneval/HumanEval.jsonl.gz"),
                                              ("MBPP", "mbpp/mbpp.jsonl")])
def test_fixed_completions_agree_with_verify(tmp_path, domain, relative):
    source = shared_data(relative)
    from data.registry import get_benchmark

    benchmark = get_benchmark(domain)
    problems = benchmark.load(str(source.parent), source.name)[:12]
    answers = []
    for index, problem in enumerate(problems):
        reference = benchmark.reference_program(problem)
        broken = reference.replace("return", "return None and", 1) if index % 3 else reference
        answers.append({"id": problem.id, "init_succeeded": True, "completions": [reference, broken],
                        "samples": 2, "token_usage": {}})
    directory = tmp_path / paths.eval_dir(domain, "Common", "fixed")
    directory.mkdir(parents=True)
    completions = directory / "temp_0.7_tokens_16_n_2_completions.jsonl"
    write_jsonl(str(completions), answers)
    ids = ",".join(str(i) for i in range(len(problems)))
    results = run(tmp_path, "--domain", domain, "--directory", str(source.parent), "--file", source.name,
                  "--backend", "fixed", "--n", "2", "--max_tokens", "16", "--idx_list", ids)
    verify = subprocess.run([sys.executable, "-m", "evaluation.verify", "--domain", domain, "--directory",
                             str(source.parent), "--file", source.name, "--input", str(completions), "--output",
                             str(tmp_path / "verify.jsonl")], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr[-2000:]
    summary = json.loads(verify.stdout.strip().splitlines()[-1])
    for key in ("n_problems", "average_acc", "strict_acc", "pass@1"):
        assert results[key] == pytest.approx(summary[key]), key
    assert 0 < results["strict_acc"] < 1


def test_budget_plot(tmp_path):
    points = {"a": [(4, 0.2, [0.1, 0.3]), (8, 0.3, [0.2, 0.4])], "b": [(6, 0.35, [0.25, 0.45])]}
    specs = []
    for label, rows in points.items():
        for index, (samples, accuracy, interval) in enumerate(rows):
            path = tmp_path / f"{label}{index}_results.jsonl"
            path.write_text(json.dumps({"samples_per_problem": samples, "tokens_per_problem": samples * 100,
                                        "strict_acc": accuracy, "strict_acc_ci95": interval}) + "\n")
            specs.append(f"{label}={path}")
    completed = subprocess.run([sys.executable, "-m", "evaluation.plot", "--output", str(tmp_path / "b.png"),
                                *specs[::-1]], env=ENV, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    printed = [json.loads(line) for line in completed.stdout.splitlines()]
    assert [(p["label"], p["x"]) for p in printed] == [("b", 6), ("a", 4), ("a", 8)]
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    missing = subprocess.run([sys.executable, "-m", "evaluation.plot", str(tmp_path / "none.jsonl")], env=ENV,
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no such results file" in missing.stderr


@pytest.mark.parametrize("rm_class", ["skywork", "qwen", "intern", "generalizable", "rlhflow"])
def test_best_of_n_with_third_party_reward_model_shapes(tmp_path, data_dir, tiny_model_dir, rm_class):
    """Skywork-style and GRM-style sequence-classification ORMs, an InternLM2-Reward-style ORM with its own
    code, a Qwen2.5-Math-PRM-style step-probability PRM and an RLHFlow-style causal-LM PRM, each a tiny
    local model of the same head, choose the answers of best-of-N."""
    from rms.value_models import PRM_STEP_TOKEN
    from tests.value_fixtures import build_tiny_intern_rm, build_tiny_lm

    if rm_class in ("skywork", "generalizable"):
        reward_model = build_tiny_lm(tmp_path / "orm", head="sequence", num_labels=1)
    elif rm_class == "qwen":
        reward_model = build_tiny_lm(tmp_path / "prm", extra_tokens=(PRM_STEP_TOKEN,), head="token", num_labels=2)
    elif rm_class == "intern":
        reward_model = build_tiny_intern_rm(tmp_path / "intern")
    else:
        reward_model = build_tiny_lm(tmp_path / "rlhflow")
    results = run(tmp_path, *eval_flags(data_dir, "--backend", str(tiny_model_dir), "--n", "1", "--num_sample", "3",
                                        "--rm_backend", str(reward_model), "--rm_class", rm_class, "--rm_type", "orm",
                                        "--idx_list", "0", "1"))
    assert results["n_problems"] == 2 and results["samples_per_problem"] == 3
    directory = tmp_path / paths.eval_dir("TinyCode", "Common", str(tiny_model_dir))
    assert any(f"_{rm_class}_orm_sample_3_" in name for name in os.listdir(directory))
