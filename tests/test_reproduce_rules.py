"""experiment.reproduce_rules: the rules protocol v2 fixes before any run (the alpha rule, equal steps that cover
every arm's data, the ranker gate, the symbol-bonus groups, the runtime estimate)."""
import doctest
import json
import random

import pytest

from experiment import reproduce_rules
from experiment.process_gen_data import draw_prefix_lengths
from experiment.reproduce_rules import (
    alpha_rule,
    check_steps,
    group_advantages,
    matched_alpha,
    pool_share,
    prefix_law_share,
    prompts_per_step,
    ranker_gate,
    reference_line_counts,
    runtime_estimate,
    symbol_bonus_groups,
)

RULE = {"lines_left": 2, "reference_lines": 25, "reference_alpha": 0.95, "decimals": 2}


def test_doctests():
    assert doctest.testmod(reproduce_rules).failed == 0


def test_the_share_is_that_of_process_gen_datas_own_draws():
    """The share computed from the law matches the prefixes process_gen_data actually draws."""
    rng = random.Random(0)
    for lines, alpha in ((7, 0.95), (7, 0.49), (25, 0.95)):
        draws = [j for _ in range(20000) for j in draw_prefix_lengths(lines, 1, alpha, rng)]
        empirical = sum(lines - j <= 2 for j in draws) / len(draws)
        assert empirical == pytest.approx(prefix_law_share(lines, alpha), abs=0.01)


def test_the_matched_alpha_gives_the_reference_share_on_the_pool():
    lines = [4, 5, 6, 6, 7, 7, 7, 8, 8, 9]
    value = matched_alpha(lines, 0.5, **RULE)
    target = prefix_law_share(25, 0.95)
    assert 0 < value < 0.95
    assert pool_share(lines, value - 0.01, 0.5) < target < pool_share(lines, value + 0.01, 0.5)
    assert pool_share(lines, 0.95, 0.5) > 5 * target  # alpha 0.95 is far out of the regime on short programs


def test_programs_too_short_for_the_rule_are_refused():
    with pytest.raises(ValueError, match="no alpha"):
        matched_alpha([3, 3, 2], 0.5)  # every prefix of a program of 3 lines or fewer leaves 2 lines or fewer


def test_the_rule_record_and_the_reference_programs(tmp_path):
    rows = [{"task_id": f"TinyCode/test/{i}", "prompt": "p", "entry_point": "f", "signature": "def f(xs):",
             "solution": "def f(xs):\n" + "".join(f"    x{j} = {j}\n" for j in range(lines)) + "    return 0\n",
             "tests": ["assert f([]) == 0"]} for i, lines in enumerate([5, 6, 8])]
    (tmp_path / "rl.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    counts = reference_line_counts(str(tmp_path), "rl.jsonl", 2)
    assert counts == [6, 7]  # the body after the signature, as a sampled program's lines are counted
    record = alpha_rule(counts, 0.5, RULE, 0.95)
    assert record["value"] == matched_alpha(counts, 0.5, **RULE) and record["programs"] == 2
    assert record["lines"] == {"6": 1, "7": 1} and "25-line" in record["rule"]
    shares = record["shares"]
    assert shares["25_lines_at_0.95"] == pytest.approx(shares[f"pool_at_{record['value']}"], abs=0.01)
    assert shares["pool_at_0.95"] > 0.3


def test_the_steps_rule_and_its_check(tmp_path, capsys):
    assert prompts_per_step({"batch_size_per_device": 32, "num_generations": 8}) == 4
    check_steps(320, 40, 8, "ok")
    with pytest.raises(ValueError, match="at least 41"):
        check_steps(321, 40, 8, "rest round 2")
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"p{i % 3}", "id": str(i % 2)}) + "\n" for i in range(9)))
    assert reproduce_rules.main(["--data", str(data), "--max_steps", "2", "--prompts_per_step", "4"]) == 1
    assert "set grpo.max_steps to at least 3" in capsys.readouterr().err
    assert reproduce_rules.main(["--data", str(data), "--max_steps", "3", "--prompts_per_step", "4"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["records"], printed["distinct_prompts"], printed["problems"], printed["draws"]) == (9, 3, 2, 12)


@pytest.mark.parametrize("name", ["reproduce.json", "demo.json"])
def test_the_configs_steps_cover_the_naive_data_with_room_for_rest(name):
    from experiment.reproduce import REPO, load_config

    config = load_config(f"{REPO}/config/{name}")
    grpo = config["grpo"]
    assert grpo["max_steps"] % grpo["save_steps"] == 0
    # naive data: one record per RL problem; ReST data was 1.4 records per problem on the first run
    assert grpo["max_steps"] * prompts_per_step(grpo) >= 2.5 * config["rl_problems"]


def test_the_ranker_gate():
    assert ranker_gate({"vm": {"auc_within_problem": 0.61}}, 0.6)["testable"] is True
    low = ranker_gate({"vm": {"auc_within_problem": 0.551}, "orm": {"auc_within_problem": 0.9}}, 0.6)
    assert low["testable"] is False and low["verdict"] == "not testable at this model size"
    assert "not refuted" in low["rule"] and low["vm_auc_within_problem"] == 0.551
    assert ranker_gate({"vm": {"auc_within_problem": None}}, 0.6)["verdict"] == "not measured"


def test_advantages_are_trls():
    import torch
    from trl.trainer.utils import nanstd

    rewards = [1.001, 1.0, 1.001, 0.5, 0.0, 1.001, 1.0, 1.0]
    tensor = torch.tensor(rewards, dtype=torch.float64)
    expected = (tensor - tensor.mean()) / (nanstd(tensor) + 1e-4)
    assert group_advantages(rewards) == pytest.approx(expected.tolist())


def score(execution: float, symbol: float = 0.001, penalty: float = 0.0) -> dict:
    return {"execution": execution, "symbol": symbol, "penalty": penalty, "status": "passed"}


def test_symbol_bonus_groups_sorts_groups_by_what_differs():
    groups = [[score(1.0)] * 4,  # all equal: no advantage
              [score(1.0), score(1.0, 0.0), score(1.0), score(1.0)],  # the symbol bonus alone
              [score(0.5), score(0.5, penalty=3e-6), score(0.5), score(0.5)],  # the trailing penalty alone
              [score(1.0), score(0.0), score(0.5), score(1.0)]]  # execution rewards differ
    calls = [{"ids": [str(i)] * 4 + [str(i + 1)] * 4, "scores": groups[i] + groups[i + 1]} for i in (0, 2)]
    result = symbol_bonus_groups(calls, 4)
    assert (result["groups"], result["tie_reward_differ"], result["symbol_differs"], result["execution_differ"]) == \
        (4, 2, 1, 1)
    assert result["share"] == 0.5
    symbol_only = sum(abs(value) for value in group_advantages([1.001, 1.0, 1.001, 1.001])) / 4
    penalty_only = sum(abs(value) for value in group_advantages([0.501, 0.500997, 0.501, 0.501])) / 4
    assert symbol_only > 0.5 and penalty_only < 0.02  # the bonus gives advantages of order 1, the penalty does not
    assert result["mean_abs_advantage"]["tie_reward_differ"] == pytest.approx((symbol_only + penalty_only) / 2)
    assert 0 < result["advantage_mass_share"] < 1
    with pytest.raises(ValueError, match="spans several problems"):
        symbol_bonus_groups([{"ids": ["a", "b"], "scores": [score(1.0), score(1.0)]}], 2)


def test_symbol_bonus_groups_reads_the_rewards_log_grpo_writes(tmp_path):
    from models.rewards import CodeReward, shape

    reward = CodeReward(log_path=str(tmp_path / "rewards.jsonl"))
    scores = [shape(1.0, emitted, "", 1e-3, 1e-6, "passed") for emitted in (True, False, True, True)]
    reward._log(scores, ["p/1"] * 4, None, None, None)
    calls = [json.loads(line) for line in (tmp_path / "rewards.jsonl").read_text().splitlines()]
    assert symbol_bonus_groups(calls, 4)["symbol_differs"] == 1


def test_the_runtime_estimates_stay_within_the_issues_limits():
    from experiment.reproduce import REPO, load_config

    full, demo = (runtime_estimate(load_config(f"{REPO}/config/{name}")) for name in ("reproduce.json", "demo.json"))
    assert full["wall_minutes"] < 90 and demo["wall_minutes"] < 10
    assert full["cpu_s"]["grpo"] > full["cpu_s"]["evaluation"]  # 13 trainings: the largest part with decoding
