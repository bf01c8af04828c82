"""evaluation.compare: paired differences with a bootstrap interval over problems (and seeds)."""
import json
import random
import subprocess
import sys

import pytest

from evaluation import compare


def write_verified(path, rewards: dict[str, list[float]]) -> str:
    path.write_text("".join(json.dumps({"id": key, "rewards": values, "statuses": ["passed"] * len(values)}) + "\n"
                            for key, values in rewards.items()))
    return str(path)


def test_known_paired_difference_is_resolved(tmp_path):
    rng = random.Random(0)
    # B passes a problem with probability 0.4, A passes it whenever B does and 0.5 of the rest: A - B = 0.3
    b = {f"p{i}": [float(rng.random() < 0.4)] for i in range(400)}
    a = {key: [1.0 if value[0] else float(rng.random() < 0.5)] for key, value in b.items()}
    result = compare.compare_files([write_verified(tmp_path / "a_verified.jsonl", a)],
                                   [write_verified(tmp_path / "b_verified.jsonl", b)])
    exact = sum(a[key][0] - b[key][0] for key in a) / len(a)
    assert result.difference == pytest.approx(exact) and abs(exact - 0.3) < 0.06
    low, high = result.ci95
    assert low < exact < high and low > 0 and result.resolved and result.n_problems == 400
    # paired: A never fails where B passes, so the differences vary less than two unpaired arms would
    assert high - low < 0.12


def test_no_difference_is_not_resolved_and_the_interval_is_seeded():
    rng = random.Random(1)
    a = [[float(rng.random() < 0.5) for _ in range(300)]]
    b = [[float(rng.random() < 0.5) for _ in range(300)]]
    first = compare.paired_bootstrap(a, b, seed=3, resamples=2000)
    assert first.ci95[0] < 0 < first.ci95[1] or not first.resolved
    assert compare.paired_bootstrap(a, b, seed=3, resamples=2000) == first
    assert compare.paired_bootstrap(a, b, seed=4, resamples=2000).ci95 != first.ci95


def test_identical_arms_give_a_zero_width_interval():
    a = [[1.0, 0.0, 0.5, 0.25]]
    result = compare.paired_bootstrap(a, a, resamples=500)
    assert result.difference == 0 and result.ci95 == [0.0, 0.0] and not result.resolved


def test_seeds_widen_the_interval():
    rng = random.Random(2)
    base = [float(rng.random() < 0.5) for _ in range(500)]
    # three training seeds of A that disagree about the effect: +0.2, 0, -0.1 on average
    shifts = (0.2, 0.0, -0.1)
    seeds = [[min(1.0, max(0.0, value + shift + rng.uniform(-0.05, 0.05))) for value in base] for shift in shifts]
    pooled = compare.paired_bootstrap(seeds, [base], resamples=2000)
    one = compare.paired_bootstrap([seeds[1]], [base], resamples=2000)
    assert pooled.n_seeds == [3, 1] and pooled.difference == pytest.approx(sum(
        sum(row) for row in seeds) / 1500 - sum(base) / 500, abs=1e-5)
    assert pooled.ci95[1] - pooled.ci95[0] > 5 * (one.ci95[1] - one.ci95[0])  # the seeds' spread counts
    assert not pooled.resolved


def test_results_file_reads_the_verified_file_beside_it(tmp_path):
    write_verified(tmp_path / "x_n_2_verified.jsonl", {"p0": [1.0, 0.5], "p1": [0.0, 1.0], "p2": []})
    (tmp_path / "x_n_2_results.jsonl").write_text("{}\n")
    assert compare.problem_scores(str(tmp_path / "x_n_2_results.jsonl")) == {"p0": 0.5, "p1": 0.5, "p2": 0.0}
    assert compare.problem_scores(str(tmp_path / "x_n_2_results.jsonl"), "average") == {
        "p0": 0.75, "p1": 0.5, "p2": 0.0}


def test_cli_refuses_different_problem_sets_with_one_line(tmp_path):
    a = write_verified(tmp_path / "a_verified.jsonl", {"p0": [1.0], "p1": [0.0]})
    b = write_verified(tmp_path / "b_verified.jsonl", {"p0": [1.0], "p2": [0.0]})
    completed = subprocess.run([sys.executable, "-m", "evaluation.compare", a, b], capture_output=True, text=True)
    assert completed.returncode == 2 and completed.stdout == ""
    [line] = completed.stderr.strip().splitlines()
    assert line.startswith("error: ") and "different problems" in line and "'p1'" in line
    completed = subprocess.run([sys.executable, "-m", "evaluation.compare", a, a, "--json"], capture_output=True,
                               text=True)
    assert completed.returncode == 0
    assert json.loads(completed.stdout) == {"difference": 0.0, "ci95": [0.0, 0.0], "n_problems": 2,
                                            "resolved": False, "n_seeds": [1, 1]}
