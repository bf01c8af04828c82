"""The math domains: GSM8K and MATH readers on small fixtures, TinyMath's generator (deterministic,
its test split held out by template, every reference right), `data.prepare` for GSM8K, and every
official GSM8K reference solution grading 1 against its own answer."""
from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from fractions import Fraction

import pytest

import data.tinymath as tinymath
from data.gsm8k import GSM8K
from data.hendrycks_math import MATH
from data.jsonl import DataError
from data.math_grading import grade_gsm8k
from data.tinymath import TinyMath
from tests.conftest import FIXTURES, REPO, shared_data

SEED, N_TRAIN, N_TEST = 5, 300, 60


# -- GSM8K ------------------------------------------------------------------------------------------


@pytest.fixture
def gsm8k_dir(tmp_path):
    """A folder holding the fixtures under the official names, train.jsonl and test.jsonl."""
    for split in ("train", "test"):
        shutil.copy(FIXTURES / f"gsm8k_{split}.jsonl", tmp_path / f"{split}.jsonl")
    return tmp_path


def test_gsm8k_reader(gsm8k_dir):
    problems = GSM8K().load(str(gsm8k_dir), "test.jsonl")
    assert [problem.id for problem in problems] == ["GSM8K/test/0", "GSM8K/test/1", "GSM8K/test/2"]
    first, _, third = problems
    assert first.prompt.startswith("Janet\u2019s ducks lay 16 eggs")
    assert first.test == {"answer": "18"} and third.test == {"answer": "2,125"}
    assert "<<" not in first.meta["solution"] and "16 - 3 - 4 = 9 duck eggs" in first.meta["solution"]
    for problem in problems:
        assert GSM8K().grade(problem, GSM8K().reference_program(problem)).status == "passed"
        assert GSM8K().load_error(problem) is None


def test_gsm8k_reads_gzip_under_the_plain_name(gsm8k_dir, tmp_path_factory):
    zipped = tmp_path_factory.mktemp("zipped")
    with open(gsm8k_dir / "test.jsonl", "rb") as source, gzip.open(zipped / "test.jsonl.gz", "wb") as out:
        shutil.copyfileobj(source, out)
    assert GSM8K().load(str(zipped), "test.jsonl") == GSM8K().load(str(gsm8k_dir), "test.jsonl")
    assert GSM8K().load(str(gsm8k_dir))[0].id == "GSM8K/train/0"  # training reads train by default


@pytest.mark.parametrize("record, message", [
    ({"question": "q"}, "missing field 'answer'"),
    ({"question": "q", "answer": "2 + 2 = 4"}, "no final answer"),
])
def test_gsm8k_reader_names_the_bad_line(tmp_path, record, message):
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DataError, match=rf"test.jsonl:2: .*{message}"):
        GSM8K().load(str(tmp_path), "test.jsonl")


def test_gsm8k_prompt_and_no_sandbox(gsm8k_dir):
    benchmark = GSM8K()
    problem = benchmark.load(str(gsm8k_dir), "test.jsonl")[1]
    message = benchmark.user_message(problem)
    assert message.endswith("Question: " + problem.prompt) and "####" in message
    assert benchmark.response_prefix(problem, "2 / 2 = 1\n") == "2 / 2 = 1\n"
    assert "Question:" in benchmark.stop_strings and benchmark.needs_sandbox is False
    assert benchmark.extract_code(" 1 + 2 = 3\n#### 3") == " 1 + 2 = 3\n#### 3"
    with pytest.raises(NotImplementedError, match="without the sandbox"):
        benchmark.job(problem, "#### 3")
    assert benchmark.grade(problem, "It takes 3 bolts.\n#### 3").status == "passed"
    assert benchmark.grade(problem, "It takes 3 bolts. The answer is 3.").status == "no_answer"
    assert benchmark.grade(problem, "It takes 3 bolts. The answer is 3.", flexible=True).status == "passed"


def test_prepare_gsm8k_from_a_folder(gsm8k_dir, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("prepared")
    target = tmp_path / "GSM8K"
    command = [sys.executable, "-m", "data.prepare", "--domain", "GSM8K", "--source", str(gsm8k_dir),
               "--directory", str(target)]
    subprocess.run(command, cwd=tmp_path, check=True, capture_output=True)
    assert (target / "test.jsonl").read_bytes() == (FIXTURES / "gsm8k_test.jsonl").read_bytes()
    assert len(GSM8K().load(str(target), "train.jsonl")) == 2
    (tmp_path / "empty").mkdir()
    command[6] = str(tmp_path / "empty")
    missing = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert missing.returncode == 2 and "no train.jsonl or train.jsonl.gz here" in missing.stderr


@pytest.mark.parametrize("split", ["train", "test"])
def test_every_gsm8k_reference_grades_one(split):
    path = shared_data(f"gsm8k/{split}.jsonl.gz")
    problems = GSM8K().load(str(path.parent), f"{split}.jsonl")
    assert len(problems) == {"train": 7473, "test": 1319}[split]
    failures = [(problem.id, verdict.status) for problem in problems
                if (verdict := GSM8K().grade(problem, problem.meta["solution"])).status != "passed"]
    assert failures == []


# -- MATH -------------------------------------------------------------------------------------------


def test_math_tree_reader():
    problems = MATH().load(str(FIXTURES / "math_tree"), "test.jsonl")  # no test.jsonl: the folder test/
    assert [problem.id for problem in problems] == ["MATH/test/algebra/1", "MATH/test/algebra/12",
                                                    "MATH/test/geometry/3"]
    assert [problem.test["answer"] for problem in problems] == [r"\frac{5}{6}", "2", r"2\sqrt{2}"]
    assert problems[0].meta["level"] == "Level 1" and problems[0].meta["type"] == "Algebra"


def test_math_jsonl_readers():
    math500 = MATH().load(str(FIXTURES), "math500_tiny.jsonl")
    assert [problem.id for problem in math500] == ["MATH/test/precalculus/807", "MATH/test/prealgebra/1",
                                                   "MATH/test/counting_and_probability/30"]
    assert math500[0].test["answer"] == r"\left( 3, \frac{\pi}{2} \right)"
    hendrycks = MATH().load(str(FIXTURES), "math_tiny.jsonl")  # no answer field: the last box
    assert [problem.id for problem in hendrycks] == ["MATH/math_tiny/0", "MATH/math_tiny/1", "MATH/math_tiny/2"]
    assert [problem.test["answer"] for problem in hendrycks] == [r"\frac{5}{6}", "2", r"2\sqrt{2}"]


def test_math_prompt_and_reference_grading():
    pytest.importorskip("math_verify")
    benchmark = MATH()
    for problem in benchmark.load(str(FIXTURES), "math500_tiny.jsonl"):
        assert benchmark.user_message(problem).endswith("within \\boxed{}.")
        assert benchmark.grade(problem, benchmark.reference_program(problem)).status == "passed"
    problem = benchmark.load(str(FIXTURES), "math500_tiny.jsonl")[2]
    assert benchmark.grade(problem, "So it is 6.").status == "no_answer"
    assert benchmark.grade(problem, "So it is $\\boxed{7}$.").status == "failed"


def test_math_problem_without_answer_is_reported(tmp_path):
    (tmp_path / "test.jsonl").write_text(json.dumps({"problem": "p", "solution": "no box"}) + "\n")
    problem = MATH().load(str(tmp_path), "test.jsonl")[0]
    assert MATH().load_error(problem) == "no reference answer"


# -- TinyMath ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def splits():
    return tinymath.generate(SEED, N_TRAIN, N_TEST)


def _cli(directory, seed=SEED):
    command = [sys.executable, "-m", "data.tinymath", "--seed", str(seed), "--n_train", str(N_TRAIN),
               "--n_test", str(N_TEST), "--directory", str(directory)]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "1"})


def test_tinymath_cli_is_deterministic(tmp_path):
    _cli(tmp_path / "a")
    _cli(tmp_path / "b")
    for name in ("train.jsonl", "test.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    _cli(tmp_path / "c", seed=SEED + 1)
    assert (tmp_path / "a" / "test.jsonl").read_bytes() != (tmp_path / "c" / "test.jsonl").read_bytes()
    problems = TinyMath().load(str(tmp_path / "a"))
    assert len(problems) == N_TEST and problems[0].id == "TinyMath/test/0"


def test_tinymath_test_split_is_held_out_by_template(splits):
    train, test = splits
    assert len(train) == N_TRAIN and len(test) == N_TEST
    held = tinymath.held_out(SEED)[0]
    assert len(held) == tinymath.HELD_OUT_TEMPLATES
    for record in train + test:
        ending = tinymath.ending(*tinymath.parse_template(record["template"]))
        assert (ending in held) == (record in test) == record["held_out"]  # nor does train end in one
    assert [record["template"] for record in test[:len(held)]] == held  # the templates take turns
    events = [len(record["events"]) for record in train], [len(record["events"]) for record in test]
    assert set(events[0]) == {1, 2, 3} and set(events[1]) == {2}  # only the held-out templates make test harder
    assert len({record["question"] for record in train + test}) == N_TRAIN + N_TEST


def test_tinymath_held_out_templates_recombine_pairs_train_holds_often():
    """At the default split every neighbour pair of a held-out template occurs in train, in other
    templates, dozens of times: a test task asks for a composition, never for an unseen step."""
    train, _ = tinymath.generate(0, tinymath.N_TRAIN, 0)
    counts: dict[str, int] = {}
    for record in train:
        for pair in tinymath.template_pairs(*tinymath.parse_template(record["template"])):
            counts[pair] = counts.get(pair, 0) + 1
    for template in tinymath.held_out(0)[0]:
        assert min(counts.get(pair, 0) for pair in tinymath.template_pairs(*tinymath.parse_template(template))) >= 50


def test_tinymath_split_independence(splits):
    train, test = splits
    more_test = tinymath.generate(SEED, N_TRAIN, N_TEST + 20)
    assert more_test[0] == train and more_test[1][:N_TEST] == test


EQUATION = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")


def test_tinymath_references_are_right(splits):
    operations = {"+": Fraction.__add__, "-": Fraction.__sub__, "*": Fraction.__mul__, "/": Fraction.__truediv__}
    for record in splits[0] + splits[1]:
        *lines, last = record["answer"].split("\n")
        assert last == f"#### {lines[-1].split(' = ')[1]}"
        for line in lines:
            left, operation, right, result = EQUATION.fullmatch(line).groups()
            assert operations[operation](Fraction(left), Fraction(right)) == Fraction(result), line
            assert 1 <= int(result) <= tinymath.MAX_VALUE
        assert grade_gsm8k(record["answer"], last.removeprefix("#### ")).status == "passed"


def test_tinymath_docstring_examples():
    import doctest

    assert doctest.testmod(tinymath).failed == 0


def test_tinymath_train_starts_exclude_held_out_values(monkeypatch):
    monkeypatch.setattr(tinymath, "HELD_OUT_VALUE_FRACTION", 0.2)  # off by default: the knob still works
    train, _ = tinymath.generate(SEED, N_TRAIN, 10)
    held = set(tinymath.held_out(SEED)[1])
    starts = [int(re.search(r"has (\d+) ", record["question"])[1]) for record in train]
    assert held and not held & set(starts)


def test_verify_grades_math_without_a_sandbox_and_flexible_only_when_asked(gsm8k_dir, tmp_path, monkeypatch):
    """evaluation.verify on GSM8K: the strict rule by default ("The answer is 18" has no `####` line:
    no_answer), the flexible forms only with --flexible_answers; no sandbox is started for math."""
    from evaluation import verify as verify_stage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(verify_stage, "Sandbox", None)  # any attempt to start one fails the test
    problem_id = GSM8K().load(str(gsm8k_dir), "test.jsonl")[0].id
    programs = ["16 - 3 - 4 = 9\n9 * 2 = 18\nThe answer is 18", "16 - 3 - 4 = 9\n9 * 2 = 18\n#### 18"]
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": problem_id, "completions": programs}) + "\n")
    strict, records = verify_stage.verify_file("GSM8K", "c.jsonl", directory=str(gsm8k_dir), file="test.jsonl",
                                               output="strict.jsonl")
    assert records[0]["statuses"] == ["no_answer", "passed"] and strict["average_acc"] == 0.5
    flexible, records = verify_stage.verify_file("GSM8K", "c.jsonl", directory=str(gsm8k_dir), file="test.jsonl",
                                                 output="flexible.jsonl", flexible_answers=True)
    assert records[0]["statuses"] == ["passed", "passed"] and flexible["average_acc"] == 1.0
