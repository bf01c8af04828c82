"""MCTS* tree arithmetic (UCT with the inf prior, the end gate, the roll-forward update, the backup) and the
batched driver with a scripted policy and value function; voting over answers (evaluation.voting)."""
from __future__ import annotations

import math
import random
import zlib
from collections import Counter

import pytest

from data.records import Problem
from evaluation.voting import answer_key, majority_vote, weighted_vote
from experiment.mcts_star import StarNode, add_children, backup, best_child, best_leaf, roll_update, select, uct
from experiment.mcts_star_batch import StarConfig, run_star_searches
from models.generation import Generation, PromptOutput

GATE, DEPTH = 0.9, 16


def tree(values: list[float]) -> tuple[StarNode, list[StarNode]]:
    root = StarNode(0, "")
    children = add_children(root, [(f"s{i}\n", False) for i in range(len(values))], values, 1, GATE, DEPTH)
    return root, children


# -- selection --------------------------------------------------------------------------------------

def test_unvisited_children_come_first_through_the_inf_prior():
    root, (low, high) = tree([0.1, 0.2])
    root.visits, high.visits, high.value = 10, 1, 0.5
    # visited high: 0.5 + 0.4 * sqrt(2 ln 10 / 1) = 1.36 beats unvisited low: 0.1 + inf 0.8 = 0.9
    assert uct(low, 10, 0.4, 0.8) == pytest.approx(0.9)
    assert uct(high, 10, 0.4, 0.8) == pytest.approx(0.5 + 0.4 * math.sqrt(2 * math.log(10)))
    assert best_child(root, 0.4, 0.8, random.Random(0)) is high
    assert best_child(root, 0.0, 0.8, random.Random(0)) is low  # without exploration the prior bonus wins
    assert best_child(root, 0.4, 2.0, random.Random(0)) is low  # a larger prior: unvisited first


def test_among_unvisited_children_the_largest_value_wins_and_ties_are_seeded_random():
    root, (a, b, c) = tree([0.3, 0.6, 0.6])
    picks = {best_child(root, 0.4, 0.8, random.Random(seed)).id for seed in range(20)}
    assert picks == {b.id, c.id}
    assert [best_child(root, 0.4, 0.8, random.Random(seed)).id for seed in range(5)] == \
        [best_child(root, 0.4, 0.8, random.Random(seed)).id for seed in range(5)]
    a.value = 0.7
    assert best_child(root, 0.4, 0.8, random.Random(0)) is a


def test_select_descends_expanded_nodes_to_a_leaf():
    root, (a, b) = tree([0.5, 0.2])
    (grandchild,) = add_children(a, [("t\n", False)], [0.1], 3, GATE, DEPTH)
    assert select(root, 0.4, 0.8, random.Random(0)) is grandchild


# -- the end gate, the roll-forward update, the backup -----------------------------------------------------

def test_end_gate_answer_and_depth_make_terminal_nodes():
    root = StarNode(0, "")
    below, at, answer = add_children(root, [("a\n", False), ("b\n", False), ("#### 3\n", True)], [0.89, 0.9, 0.1],
                                     1, GATE, DEPTH)
    assert (below.terminal, at.terminal, answer.terminal) == (False, True, True)
    (deep,) = add_children(below, [("c\n", False)], [0.0], 4, GATE, max_depth=2)
    assert deep.terminal and deep.depth == 2
    dead = StarNode(9, "x")
    assert add_children(dead, [], [], 10, GATE, DEPTH) == [] and dead.terminal and not dead.expanded


def test_duplicate_steps_are_one_child():
    root = StarNode(0, "")
    children = add_children(root, [("a\n", False), ("a\n", False), ("b\n", False)], [0.1, 0.9, 0.2], 1, GATE, DEPTH)
    assert [(child.step, child.value, child.id) for child in children] == [("a\n", 0.1, 1), ("b\n", 0.2, 2)]


@pytest.mark.parametrize("value, best, alpha, expected", [(0.4, 0.8, 0.5, 0.6), (0.4, 0.8, 0.0, 0.4),
                                                          (0.4, 0.8, 1.0, 0.8), (0.9, 0.1, 0.25, 0.7)])
def test_roll_forward_update(value, best, alpha, expected):
    node = StarNode(1, "", value=value)
    roll_update(node, best, alpha)
    assert node.value == pytest.approx(expected) and node.visits == 1
    roll_update(node, None, alpha)  # a roll that saw no step leaves V alone
    assert node.value == pytest.approx(expected) and node.visits == 2


def test_backup_is_the_visit_weighted_mean_of_children():
    root, (a, b, c) = tree([0.2, 0.8, 0.5])
    (d,) = add_children(a, [("x\n", False)], [1.0], 4, GATE, DEPTH)
    a.visits, b.visits, d.visits = 1, 3, 1  # c unvisited: no weight
    backup(a)
    assert a.value == pytest.approx(1.0) and a.visits == 2
    assert root.value == pytest.approx((1.0 * 2 + 0.8 * 3) / 5) and root.visits == 1
    leaf = StarNode(7, "")
    backup(leaf)  # no children: V unchanged
    assert leaf.value == 0.0 and leaf.visits == 1


def test_best_leaf_prefers_answers_then_falls_back_to_best_value():
    root, (a, b) = tree([0.95, 0.1])
    assert best_leaf(root) is a  # no answer anywhere: the node of highest V
    (answer_low, answer_high) = add_children(b, [("#### 1\n", True), ("#### 2\n", True)], [0.3, 0.6], 3, GATE, DEPTH)
    assert best_leaf(root) is answer_high


# -- voting -------------------------------------------------------------------------------------------------

def test_majority_vote_counts_equal_answers():
    completions = ["2 + 2 = 4\n#### 4", "#### 5", "so #### 4.0", "#### 5", "#### 4", "no answer"]
    assert [answer_key("math", c) for c in completions[:3]] == ["4", "5", "4"]
    assert answer_key("math", "no answer") is None
    assert majority_vote("math", completions) == "2 + 2 = 4\n#### 4"  # 3 votes for 4, the first of them kept
    assert majority_vote("math", ["#### 1", "#### 2"]) == "#### 1"  # a tie: the answer seen first
    assert majority_vote("math", ["none", "nothing"]) == "none"  # no answer at all: the first completion


def test_value_weighted_vote_can_overturn_the_majority():
    completions = ["#### 4", "#### 4", "#### 5"]
    assert weighted_vote("math", completions, [0.2, 0.2, 0.9]) == "#### 5"  # 0.4 against 0.9
    assert weighted_vote("math", completions, [0.5, 0.5, 0.9]) == "#### 4"  # 1.0 against 0.9
    with pytest.raises(ValueError):
        weighted_vote("math", completions, [0.1])


def test_code_answers_vote_by_normalized_program_text():
    a, b = "def f(x):\n    return x  \n\n", "def f(x):\n    return x\n"
    assert answer_key("code", a) == answer_key("code", b) != answer_key("code", "def f(x):\n    return 1\n")
    assert majority_vote("code", [a, "def g():\n    pass\n", b]) == a


# -- the batched driver -----------------------------------------------------------------------------------

STEPS = ["1 + 1 = 2", "2 * 3 = 6", "6 - 1 = 5", "#### 5", "#### 6"]


class ScriptedPolicy:
    """Sample j from a state: a step drawn by a seed made of the state and j (batching cannot change it)."""

    def __init__(self):
        self.calls: list[int] = []

    def generate(self, prompts, n, temperature, max_tokens, stop, seed):
        assert "\n" in stop
        self.calls.append(len(prompts))
        return [PromptOutput(prompt_tokens=2, generations=[self.sample(prompt, j) for j in range(n)])
                for prompt in prompts]

    @staticmethod
    def sample(prompt: str, j: int) -> Generation:
        text = random.Random(zlib.crc32(prompt.encode()) * 100 + j).choice(STEPS)
        return Generation(text, completion_tokens=3, finish_reason="stop")


def value(question: str, state: str) -> float:
    return (zlib.crc32(state.encode()) % 7) / 8


class ValueFunction:
    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, questions, states):
        self.calls.append(len(states))
        return [value(q, s) for q, s in zip(questions, states)]


def star_problems(count: int) -> list[Problem]:
    return [Problem(f"q{index}", "TinyMath", f"question {index}", "") for index in range(count)]


def run(count=3, evaluate=None, **settings):
    policy, values = ScriptedPolicy(), ValueFunction()
    config = StarConfig(**{"domain": "TinyMath", "iteration_limit": 6, "max_active": 8, **settings})
    stats = Counter()
    results = run_star_searches(star_problems(count), policy, config, lambda p, s: f"{p.id}|{s}", values,
                                evaluate=evaluate, stats=stats)
    return results, policy, values, stats


def test_driver_batches_trees_and_records_consistent_trees():
    rewards = lambda items: [[1.0 if c.endswith("#### 5\n") else 0.0 for c in completions]  # noqa: E731
                             for _, completions in items]
    results, policy, values, stats = run(evaluate=rewards, mode="generate", roll_forward_steps=1)
    assert sorted(r.problem.id for r in results) == ["q0", "q1", "q2"]
    assert policy.calls[0] == 3 and len(policy.calls) == len(values.calls)  # one value call per policy call
    for result in results:
        nodes = {node["id"]: node for node in result.record["star_tree"]}
        states = {}
        for node in result.record["star_tree"]:  # preorder: parents first
            parent = node["parent"]
            states[node["id"]] = (states[parent] if parent is not None else "") + node["step"]
            if parent is not None:
                assert node["depth"] == nodes[parent]["depth"] + 1
                assert node["V"] >= 0
            assert (node["reward"] is not None) == node["gives_answer"]
            if node["gives_answer"]:
                assert node["reward"] == (1.0 if states[node["id"]].endswith("#### 5\n") else 0.0)
        root = result.record["star_tree"][0]
        assert root["parent"] is None and root["step"] == "" and root["visits"] >= 1
        assert result.record["iterations"] == 6
        assert result.token_usage["completion"] > 0
        assert {leaf for leaf, _ in result.leaves} == {states[i] for i, n in nodes.items() if n["gives_answer"]}
        if result.leaves:
            assert result.answer == max(result.leaves, key=lambda leaf: leaf[1])[0]


def test_driver_is_independent_of_batching():
    together, *_ = run(count=3, max_active=3)
    alone, *_ = run(count=3, max_active=1)
    assert [r.record for r in sorted(together, key=lambda r: r.problem.id)] == \
        [r.record for r in sorted(alone, key=lambda r: r.problem.id)]


def test_evaluate_mode_stops_at_the_gate_and_generate_mode_searches_on():
    stopped, *_ = run(count=4, mode="evaluate", end_gate=0.5, iteration_limit=30)
    assert any(r.record["stopped_at_gate"] for r in stopped)
    for result in stopped:
        if result.record["stopped_at_gate"]:
            assert result.record["iterations"] < 30
    searched, *_ = run(count=4, mode="generate", end_gate=0.5, iteration_limit=30)
    assert all(not r.record["stopped_at_gate"] and r.record["iterations"] == 30 for r in searched)
