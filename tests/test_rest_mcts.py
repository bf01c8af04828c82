"""ReST-MCTS*'s data (process_gen_data's quality rules and their file names) and its rounds driver: resume and
one round end to end with the tiny math policy."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from experiment import paths, rest_mcts
from experiment.runner import Step
from tests.conftest import REPO

BACKEND = "org/tiny-math"
SOLUTION = "3 * 4 = 12\n14 + 12 = 26\n26 / 2 = 13\n#### 13\n"
LONG_SOLUTION = "Start with 14.\n" + SOLUTION  # 59 characters


def process(root, *flags):
    completed = subprocess.run(
        [sys.executable, "-m", "experiment.process_gen_data", "--domain", "TinyMath", "--backend", BACKEND, *flags],
        cwd=root, capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def read(path):
    return [json.loads(line) for line in open(path)]


def test_file_names():
    assert paths.quality_data_name(0.7, 256) == "temp_0.7_tokens_256_quality_data.jsonl"
    assert paths.policy_data_name("star.jsonl", 0.2, 50) == "star_sft_data_0.2_50.jsonl"
    assert paths.policy_data_name("star.jsonl", 0.2, 50, ["GSM8K", "TinyMath"]) == \
        "star_domains_GSM8K_TinyMath_sft_data_0.2_50.jsonl"
    assert paths.value_data_name("star.jsonl") == "star_rewards.jsonl"


def test_quality_data_from_samples(tmp_path):
    path = tmp_path / paths.completions_path("TinyMath", BACKEND, 0.7, 256)
    path.parent.mkdir(parents=True)
    wrong = SOLUTION.replace("26 / 2 = 13\n#### 13", "26 / 2 = 12\n#### 12")
    problems = {"TinyMath/train/1": [(SOLUTION, 1.0), (wrong, 0.0), (SOLUTION, 1.0)],
                "TinyMath/train/0": [(wrong, 0.0), (wrong, 0.0)]}  # no correct sample: no rows
    lines = [{"id": pid, "prompt": f"Q{pid[-1]}", "init_state": "", "test": {"answer": "13"}, "token_usage": {},
              "result": {"formatted_prompt": "<p>", "completions": [
                  {"sample": text, "formatted_sample": text, "formatted_completion": text, "reward": reward,
                   "status": "passed"} for text, reward in samples]}} for pid, samples in problems.items()]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = process(tmp_path, "--method", "Common", "--mode", "quality", "--max_tokens", "256")
    out = tmp_path / summary["TinyMath"]["output"]
    assert out.name == "temp_0.7_tokens_256_quality_data.jsonl"
    rows = {row["answer"]: row["reward"] for row in read(out)}
    assert all(row["prompt"] == "Q1" for row in read(out))
    assert len(rows) == 6  # two shared steps, then two correct and two wrong ones
    assert rows["3 * 4 = 12\n"] == pytest.approx(1 / 4)
    assert rows[SOLUTION] == pytest.approx(1.0)
    # the wrong third step takes m = 2 from its parent (v = 1/2): 1/2 - (1/2) / 3; its answer line the same m
    assert rows["3 * 4 = 12\n14 + 12 = 26\n26 / 2 = 12\n"] == pytest.approx(0.5 - 0.5 / 3)
    assert rows["3 * 4 = 12\n14 + 12 = 26\n26 / 2 = 12\n#### 12\n"] == pytest.approx(1 / 3 - (2 / 3) / 3)


def star_trace(tmp_path, formatted_prompt=True):
    """Two problems: one whose tree holds a correct long leaf, a correct short one and a wrong one; one with
    no correct leaf."""
    steps = LONG_SOLUTION.splitlines(keepends=True)
    tree = [{"id": 0, "parent": None, "step": "", "depth": 0, "V": 0.5, "visits": 4, "terminal": False,
             "gives_answer": False, "reward": None}]
    for depth, step in enumerate(steps, start=1):
        tree.append({"id": depth, "parent": depth - 1, "step": step, "depth": depth, "V": 0.6, "visits": 1,
                     "terminal": depth == len(steps), "gives_answer": depth == len(steps),
                     "reward": 1.0 if depth == len(steps) else None})
    tree.append({"id": 9, "parent": 0, "step": "#### 13\n", "depth": 1, "V": 0.9, "visits": 1, "terminal": True,
                 "gives_answer": True, "reward": 1.0})  # correct but 8 characters: no policy data
    tree.append({"id": 10, "parent": 1, "step": "#### 12\n", "depth": 2, "V": 0.9, "visits": 1, "terminal": True,
                 "gives_answer": True, "reward": 0.0})
    failed = [dict(tree[0]), {**tree[-2], "id": 1, "reward": 0.0}]
    base = {"prompt": "Q", "init_state": "", "test": {"answer": "13"}, "algorithm": "star", "mode": "generate",
            "token_usage": {"prompt": 0, "completion": 0}}
    records = [{**base, "id": "TinyMath/train/0", "star_tree": tree}, {**base, "id": "TinyMath/train/1",
                                                                       "star_tree": failed}]
    if formatted_prompt:
        for record in records:
            record["formatted_prompt"] = "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    path = tmp_path / "generate" / "star.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_value_and_policy_data_from_star_traces(tmp_path):
    trace = star_trace(tmp_path)
    value = process(tmp_path, "--method", "MCTS", "--value_targets", "quality", "--trace", str(trace))
    assert value["TinyMath"]["output"] == str(tmp_path / "generate" / "star_rewards.jsonl")
    rows = read(value["TinyMath"]["output"])
    assert len(rows) == 7 and {row["prompt"] for row in rows} == {"Q"}  # 5 path nodes, 2 leaves; none of problem 1
    by_answer = {row["answer"]: row["reward"] for row in rows}
    assert by_answer["#### 13\n"] == 1.0 and by_answer[LONG_SOLUTION] == 1.0
    assert by_answer["Start with 14.\n"] == pytest.approx(1 / 5)
    assert by_answer["Start with 14.\n#### 12\n"] == pytest.approx(1 / 5 - (4 / 5) / 5)
    policy = process(tmp_path, "--method", "MCTS", "--value_targets", "quality", "--trace", str(trace),
                     "--mode", "sft")
    assert policy["TinyMath"]["output"].endswith("generate/star_sft_data_0.2_50.jsonl")
    assert read(policy["TinyMath"]["output"]) == [
        {"prompt": "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n", "completion": LONG_SOLUTION.rstrip()}]
    looser = process(tmp_path, "--method", "MCTS", "--value_targets", "quality", "--trace", str(trace),
                     "--mode", "sft", "--len_threshold", "5", "--value_threshold", "0.6")
    # the answer line ends a training target, as it ends the policy's samples (no newline after `#### X`)
    assert [row["completion"] for row in read(looser["TinyMath"]["output"])] == [LONG_SOLUTION.rstrip(), "#### 13"]
    assert looser["TinyMath"]["output"].endswith("star_sft_data_0.6_5.jsonl")
    stricter = process(tmp_path, "--method", "MCTS", "--value_targets", "quality", "--trace", str(trace),
                       "--mode", "sft", "--value_threshold", "0.61")
    assert read(stricter["TinyMath"]["output"]) == []


def test_sft_from_mcts_needs_quality_targets(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "experiment.process_gen_data", "--method", "MCTS", "--mode", "sft"], cwd=tmp_path,
        capture_output=True, text=True, env={"PYTHONPATH": str(REPO)})
    assert completed.returncode == 2 and "--value_targets quality" in completed.stderr


# -- the rounds driver -----------------------------------------------------------------------------------------

class FakeRunner:
    """Records the steps; makes the files a stage would (data with `records` rows, trainings' done markers),
    and fails (as a killed or failed stage) at the step named `fail_at`."""

    def __init__(self, work, log, records=3, fail_at=None):
        self.work, self.log, self.records, self.fail_at = work, log, records, fail_at

    def run(self, steps: list[Step]) -> None:
        for step in steps:
            if step.done and os.path.exists(os.path.join(self.work, step.done)):
                self.log.append((os.path.basename(self.work), step.name, "skipped"))
                continue
            self.log.append((os.path.basename(self.work), step.name, step.argv))
            if step.name == self.fail_at:
                raise SystemExit(f"step {step.name} failed")
            if step.done:
                marker = os.path.join(self.work, step.done)
                os.makedirs(os.path.dirname(marker), exist_ok=True)
                open(marker, "w").close()
            self._write_data(step)

    def _write_data(self, step: Step) -> None:
        args = rest_mcts.parse_args(self.cli)
        if step.name == "value_data" and os.path.basename(self.work) == "round_0":
            target = rest_mcts.round0_paths(args)["value_data"]
        elif step.name in ("value_data", "policy_data"):
            policy = step.argv[step.argv.index("--backend") + 1]
            target = rest_mcts.search_paths(args, policy)[step.name]
        else:
            return
        path = os.path.join(self.work, target)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        count = self.records.get(step.name, 3) if isinstance(self.records, dict) else self.records
        with open(path, "w") as handle:
            handle.write("".join(json.dumps({"prompt": f"Q{index % 2}", "answer": "a", "reward": 0.5}) + "\n"
                                 for index in range(count)))


def driver(tmp_path, log, *extra, records=3, fail_at=None):
    model = tmp_path / "base"
    model.mkdir(exist_ok=True)
    cli = ["--work", str(tmp_path / "work"), "--backend", str(model), "--rounds", "2", *extra]
    args = rest_mcts.parse_args(cli)

    def make_runner(work):
        runner = FakeRunner(work, log, records, fail_at)
        runner.cli = cli
        return runner
    return rest_mcts.run_rounds(args, make_runner)


def names(log, round_name):
    return [(entry[1], entry[2] if entry[2] == "skipped" else "ran") for entry in log if entry[0] == round_name]


def test_rounds_chain_models_and_a_done_round_is_skipped(tmp_path):
    log = []
    summaries = driver(tmp_path, log)
    work = tmp_path / "work"
    assert names(log, "round_0") == [("sample", "ran"), ("value_data", "ran"), ("train_value", "ran")]
    assert names(log, "round_2") == [("search", "ran"), ("value_data", "ran"), ("policy_data", "ran"),
                                     ("train_policy", "ran"), ("train_value", "ran")]
    search = [entry[2] for entry in log if entry[:2] == ("round_2", "search")][0]
    # round 2 searches with round 1's policy and value model
    assert search[search.index("--backend") + 1] == str(work / "round_1" / "policy")
    assert search[search.index("--rm_backend") + 1] == str(work / "round_1" / "value")
    sft = [entry[2] for entry in log if entry[:2] == ("round_2", "train_policy")][0]
    assert sft[sft.index("models.train") + 1] == str(work / "round_1" / "policy")  # --init last
    value = [entry[2] for entry in log if entry[:2] == ("round_2", "train_value")][0]
    assert value[value.index("rms.train") + 1] == str(work / "round_1" / "value" / "best")
    assert [summary["round"] for summary in summaries] == [0, 1, 2]
    assert json.loads((work / "round_2" / "round.json").read_text())["policy"] == str(work / "round_2" / "policy")
    # again: every round is done, nothing runs, the same models come back
    again = []
    assert driver(tmp_path, again) == summaries and again == []


def test_a_killed_round_resumes(tmp_path):
    log = []
    with pytest.raises(SystemExit):
        driver(tmp_path, log, fail_at="train_value", records=3)
    work = tmp_path / "work"
    # round 0's value model failed: round 0 is not done; round 1 never started
    assert not (work / "round_0" / "round.json").exists() and not (work / "round_1").exists()
    log.clear()
    driver(tmp_path, log)  # resume: round 0 again from its first stage (the stages resume by id themselves)
    assert names(log, "round_0")[0] == ("sample", "ran")
    # kill round 2 at its value model, after its SFT finished and left a checkpoint behind
    (work / "round_2" / "round.json").unlink()
    (work / "round_2" / "value" / "best" / "value_model.json").unlink()
    (work / "round_2" / "policy" / "checkpoint-4").mkdir()
    log.clear()
    driver(tmp_path, log)
    assert names(log, "round_0") == names(log, "round_1") == []
    assert names(log, "round_2") == [("search", "ran"), ("value_data", "ran"), ("policy_data", "ran"),
                                     ("train_policy", "skipped"), ("train_value", "ran")]
    # an SFT killed midway resumes from its checkpoint
    (work / "round_2" / "round.json").unlink()
    (work / "round_2" / "policy" / "trainer_state.json").unlink()
    log.clear()
    driver(tmp_path, log)
    sft = [entry[2] for entry in log if entry[:2] == ("round_2", "train_policy")][0]
    assert sft[sft.index("--resume_from_checkpoint") + 1] == "last"
    first = [entry[2] for entry in log if entry[:2] == ("round_1", "train_policy")]
    assert first == []  # round 1 was done


def test_init_base_and_rounds_without_data(tmp_path):
    log = []
    driver(tmp_path, log, "--init", "base", "--rounds", "1")
    base = str(tmp_path / "base")
    sft = [entry[2] for entry in log if entry[:2] == ("round_1", "train_policy")][0]
    value = [entry[2] for entry in log if entry[:2] == ("round_1", "train_value")][0]
    assert sft[sft.index("models.train") + 1] == base and value[value.index("rms.train") + 1] == base
    # round 0 without a correct sample stops: no value model can be trained
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(SystemExit, match="correct solutions for 0 problem"):
        driver(other, [], records=0)
    # nor with one problem solved: the value model holds out whole problems
    one = tmp_path / "one"
    one.mkdir()
    with pytest.raises(SystemExit, match="correct solutions for 1 problem"):
        driver(one, [], records=1)


def test_a_round_without_policy_data_keeps_the_policy(tmp_path):
    log = []
    summaries = driver(tmp_path, log, "--rounds", "1", records={"policy_data": 0})
    assert summaries[1]["policy"] == str(tmp_path / "base") and not summaries[1]["policy_trained"]
    assert summaries[1]["value_model"] == str(tmp_path / "work" / "round_1" / "value")
    assert ("train_policy", "ran") not in names(log, "round_1")


# -- end to end ----------------------------------------------------------------------------------------------

def run_driver(work, *flags):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "experiment.rest_mcts", "--work", str(work), *flags],
                          cwd=work.parent, capture_output=True, text=True, env=env, timeout=1800)


@pytest.mark.slow
def test_one_round_end_to_end_on_cpu(tmp_path, tiny_math_policy):
    data = tmp_path / "TinyMath"
    subprocess.run([sys.executable, "-m", "data.tinymath", "--seed", "0", "--n_train", "40", "--n_test", "4",
                    "--directory", str(data)], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    work = tmp_path / "work"
    flags = ["--rounds", "1", "--domain", "TinyMath", "--directory", str(data), "--idx_list", "0,1,2,3,4,5",
             "--backend", tiny_math_policy, "--n", "6", "--max_tokens", "96", "--device", "cpu",
             "--len_threshold", "10", "--value_threshold", "0.0",
             "--sample_args", "--skip_env_check",
             "--search_args", "--skip_env_check --iteration_limit 6 --max_tokens 24 --max_depth 8 --rm_device cpu",
             "--sft_args", "--num_train_epochs 1 --per_device_train_batch_size 4 --save_strategy no --use_cpu true",
             "--value_args", "--epochs 1 --batch_size_per_device 4 --min_eval_rows 2 --lr 1e-4 --precision fp32"]
    completed = run_driver(work, *flags)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    rounds = [json.loads((work / f"round_{index}" / "round.json").read_text()) for index in (0, 1)]
    assert rounds[0]["value_records"] > 0 and os.path.exists(os.path.join(rounds[0]["value_model"], "best"))
    assert os.path.exists(rounds[1]["trace"]) and "MCTS_STAR" in rounds[1]["trace"]
    assert rounds[1]["value_model"] == str(work / "round_1" / "value") and rounds[1]["value_trained"]
    if rounds[1]["policy_records"]:
        assert rounds[1]["policy_trained"] and (work / "round_1" / "policy" / "config.json").exists()
    for row in read(rounds[1]["value_data"]):
        assert 0.0 <= row["reward"] <= 1.0
    # a rerun finds both rounds done
    again = run_driver(work, *flags)
    assert again.returncode == 0 and again.stdout.count("skipped") == 2
