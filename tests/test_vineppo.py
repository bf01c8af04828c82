"""VinePPO: steps found on token ids, values and advantages on hand-computed examples (the step cap
included), the K-rollout estimator on a policy whose rollouts are known; slow: two training steps per
arm (vine, critic, grpo) with a tiny policy on TinyCode, resume, and two processes."""
from __future__ import annotations

import pytest
from conftest import REPO
from rest_data import (
    changed_weights,
    log_history,
    run_script,
    sft_policy_and_grpo_data,
    tiny_problems,
)

from models.vine import (
    Episode,
    Rollout,
    mc_values,
    split_steps,
    step_advantages,
    step_values,
    token_advantages,
    value_cuts,
    vine_advantages,
)

PIECES = {1: "\n", 2: "Step", 3: " one", 4: ".\n", 5: "####", 6: " 42", 7: "", 8: "\n\n", 9: "x = 1", 10: "\n    "}


def test_steps_join_empty_leading_pieces_and_the_answer_line():
    # "\n\nStep one.\nStep one.\n#### 42<eos>"
    ids = [1, 1, 2, 3, 4, 2, 3, 4, 5, 6, 7]
    assert split_steps(ids, PIECES.__getitem__, "####") == [5, 11]
    assert split_steps(ids, PIECES.__getitem__) == [5, 8, 11]  # code: no answer line
    assert split_steps([2, 3, 4, 5, 6], PIECES.__getitem__, "####") == [5]  # the answer joins the only step
    assert split_steps([5, 6], PIECES.__getitem__, "####") == [2]


def test_code_steps_are_lines_cut_after_tokens_that_hold_a_newline():
    assert split_steps([9, 10, 9, 1], PIECES.__getitem__) == [2, 4]  # "\n    " ends the first line
    assert split_steps([9, 1, 1, 9], PIECES.__getitem__) == [2, 4]  # the blank line joins the next
    assert split_steps([9, 8, 9, 7], PIECES.__getitem__) == [2, 4]  # "\n\n" in one token; <eos> joins the last
    assert split_steps([1, 7], PIECES.__getitem__) == [2] and split_steps([], PIECES.__getitem__) == []


def test_steps_of_a_real_tokenizer_are_its_lines():
    from models.tiny import build_tokenizer

    problem = tiny_problems(1)[0]
    tokenizer = build_tokenizer([problem.prompt + problem.meta["solution"], "```"], vocab_size=300)
    text = problem.meta["solution"][len(problem.init_state):] + "```"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ends = split_steps(ids, lambda token: tokenizer.decode([token]))
    steps = [tokenizer.decode(ids[start:end]) for start, end in zip([0, *ends], ends)]
    assert "".join(steps) == tokenizer.decode(ids) and len(steps) == text.count("\n") + 1
    assert all(step.endswith("\n") for step in steps[:-1]) and steps[-1].endswith("```")


def test_values_and_advantages_by_hand():
    ends = [2, 5, 9]
    assert value_cuts(ends, 24) == [0, 2, 5]
    values = step_values([0.5, 0.25, 0.75], 3, 1.0)
    assert values == [0.5, 0.25, 0.75, 0.0]
    assert step_advantages(values, 1.0) == [-0.25, 0.5, 0.25]
    assert token_advantages(ends, [-0.25, 0.5, 0.25]) == [-0.25] * 2 + [0.5] * 3 + [0.25] * 4


def test_states_past_the_step_cap_take_reward_plus_next_value():
    ends = [2, 5, 9]
    assert value_cuts(ends, 1) == [0, 2]
    values = step_values([0.5, 0.25], 3, 1.0)
    assert values == [0.5, 0.25, 1.0, 0.0]  # V_2 = r_2 + V_3
    assert step_advantages(values, 1.0) == [-0.25, 0.75, 0.0]
    assert value_cuts(ends, 0) == [0] and step_advantages(step_values([0.5], 3, 0.0), 0.0) == [-0.5, 0.0, 0.0]


class KnownPolicy:
    """Rollouts fixed by the prefix's last token (K = 3): after token 2 two of three reach the right answer
    (token 7), one never ends (cut by the limit); from the prompt one of three is right."""

    TABLE = {100: [Rollout([1, 2, 3, 7], True), Rollout([6], True), Rollout([6, 6], True)],
             2: [Rollout([3, 7], True), Rollout([7], True), Rollout([3] * 50, False)],
             4: [Rollout([5, 7], True), Rollout([5, 7, 7, 7, 7, 7], True), Rollout([6], True)]}

    def __init__(self):
        self.calls = []

    def generate(self, prefix_ids, n, budgets):
        self.calls.append((prefix_ids, n, budgets))
        return [list(self.TABLE[prefix[-1]][:n]) for prefix in prefix_ids]

    def score(self, owners, completions):
        assert all(len(c) <= 8 for c in completions)  # never a rollout past its budget
        return [1.0 if completion[-1] == 7 else 0.0 for completion in completions]


def test_mc_values_of_a_known_policy():
    policy = KnownPolicy()
    values, tokens = mc_values([([100], []), ([100], [1, 2])], [8, 6], [0, 0], policy.generate, policy.score, 3)
    assert values == pytest.approx([1 / 3, 2 / 3])  # the rollout cut by the limit scores 0
    assert tokens == 4 + 1 + 2 + 2 + 1 + 50 and len(policy.calls) == 1


def test_vine_advantages_estimate_each_unique_state_once_in_one_call():
    policy = KnownPolicy()
    right = Episode([100], [1, 2, 3, 4, 5, 7], 1.0, [2, 4, 6], "p")
    wrong = Episode([100], [1, 2, 6, 6], 0.0, [2, 4], "p")
    result = vine_advantages([right, wrong], policy.generate, policy.score, mc_rollouts=3, max_value_steps=24,
                             max_tokens=8)
    (prefixes, n, budgets), = policy.calls
    assert prefixes == [[100], [100, 1, 2], [100, 1, 2, 3, 4]] and n == 3 and budgets == [8, 6, 4]
    # after [1, 2, 3, 4]: [5, 7] right; [5, 7, 7, 7, 7, 7] is 6 tokens, over the budget of 4: 0; [6] wrong
    assert result.values[0] == pytest.approx([1 / 3, 2 / 3, 1 / 3, 0.0])
    assert result.values[1] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert result.token_advantages[0] == pytest.approx([1 / 3] * 2 + [-1 / 3] * 2 + [2 / 3] * 2)
    assert result.token_advantages[1] == pytest.approx([1 / 3] * 2 + [-2 / 3] * 2)
    assert (result.stats["states"], result.stats["unique_states"]) == (5, 3)


# -- runs (slow) -------------------------------------------------------------------------------------

FLAGS = ["--num_generations", "4", "--prompts_per_iteration", "2", "--mini_batch_size", "4", "--batch_size_per_device",
         "4", "--max_completion_length", "40", "--mc_rollouts", "3", "--temperature", "1.5", "--warmup_steps", "0",
         "--report_to", "none", "--logging_steps", "1", "--gradient_checkpointing", "false", "--seed", "3",
         "--lr", "1e-3"]
SCRIPT = str(REPO / "models" / "train_vineppo.py")


@pytest.fixture(scope="module")
def rest(tmp_path_factory, sandbox):
    return sft_policy_and_grpo_data(tmp_path_factory.mktemp("vine"), sandbox)


@pytest.mark.slow
@pytest.mark.parametrize("advantage", ["vine", "critic", "grpo"])
def test_two_steps_per_arm(rest, advantage):
    directory, model, data = rest
    save_dir = directory / advantage
    done = run_script([SCRIPT, str(model), str(save_dir), str(data), *FLAGS, "--advantage", advantage,
                       "--max_steps", "2", "--save_steps", "2"], cwd=directory)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [entry for entry in log_history(save_dir) if "loss" in entry]
    assert [entry["step"] for entry in steps] == [1, 2] and changed_weights(model, save_dir)
    first = steps[0]
    if advantage == "vine":
        assert first["vine/unique_states"] < first["vine/states"]  # the prompt state is shared by its 4 episodes
        assert 0 < first["vine/value_mean"] < 1.01 and first["vine/rollout_tokens"] > 0
        assert first["advantages/raw_std"] > 0
    if advantage == "critic":
        assert first["critic/value_mean"] == 0 and first["critic/value_loss"] > 0  # the head starts at V = 0
        assert (save_dir / "checkpoint-2" / "critic.pt").exists()
    if advantage == "grpo":
        assert not any(key.startswith(("vine/", "critic/")) for key in first)
    assert "kl" in steps[1] and (save_dir / "rewards.jsonl").exists()


@pytest.mark.slow
def test_resume_continues_the_vine_run(rest):
    directory, model, data = rest
    whole, part = directory / "whole", directory / "part"
    # one iteration per optimizer step, so step 2 ends an iteration and resuming regenerates nothing
    flags = [*FLAGS, "--num_iterations", "1", "--mini_batch_size", "8", "--save_steps", "2", "--max_steps", "3"]
    done = run_script([SCRIPT, str(model), str(whole), str(data), *flags], cwd=directory)
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_script([SCRIPT, str(model), str(part), str(data), *flags, "--stop_after_steps", "2"], cwd=directory)
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_script([SCRIPT, str(model), str(part), str(data), *flags, "--resume_from_checkpoint", "last"],
                      cwd=directory)
    assert done.returncode == 0, done.stderr[-3000:]

    def after(save_dir, key):
        return [entry[key] for entry in log_history(save_dir) if "loss" in entry and entry["step"] > 2]

    assert after(part, "learning_rate") == after(whole, "learning_rate") and len(after(whole, "reward")) == 1
    assert after(part, "reward") == pytest.approx(after(whole, "reward"))
    assert after(part, "vine/value_mean") == pytest.approx(after(whole, "vine/value_mean"))


@pytest.mark.slow
def test_two_processes_on_cpu(rest):
    from test_train_grpo import accelerate_launcher

    directory, model, data = rest
    save_dir = directory / "ddp"
    launcher = accelerate_launcher("--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                                   "--mixed_precision", "no", "--dynamo_backend", "no")
    flags = [*FLAGS[:7], "2", *FLAGS[8:]]  # 2 per device x 2 processes = a mini-batch of 4
    done = run_script([SCRIPT, str(model), str(save_dir), str(data), *flags, "--max_steps", "2", "--save_steps", "2"],
                      cwd=directory, launcher=launcher, timeout=480)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [entry for entry in log_history(save_dir) if "loss" in entry]
    assert [entry["step"] for entry in steps] == [1, 2] and steps[0]["vine/rollout_tokens"] > 0
    assert (save_dir / "rewards.jsonl").exists() and (save_dir / "rewards.rank1.jsonl").exists()
