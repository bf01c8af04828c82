"""ReST-MCTS* quality values on hand-built trees, the prefix tree of samples, and the policy-data filter."""
from __future__ import annotations

import doctest
import random

import pytest

from experiment import quality_values
from experiment.quality_values import (
    node_states,
    policy_leaves,
    prefix_tree,
    split_steps,
    steps_to_correct,
    value_rows,
)
from experiment.quality_values import (
    quality_values as values_of,
)


def node(id, parent, reward=None, step=None, terminal=None, V=0.0):
    return {"id": id, "parent": parent, "step": f"s{id}\n" if step is None else step, "V": V,
            "terminal": reward is not None if terminal is None else terminal, "reward": reward}


def chain(length: int, reward=1.0) -> list[dict]:
    """root 0 -> 1 -> ... -> length, the last an end leaf with `reward`."""
    return [node(0, None, step="")] + [node(k, k - 1, reward if k == length else None) for k in range(1, length + 1)]


@pytest.mark.parametrize("length", [1, 2, 3, 5, 8])
def test_correct_path_of_k_steps_gives_k_over_k(length):
    targets = values_of(chain(length))
    assert targets == pytest.approx({k: k / length for k in range(1, length + 1)})


def test_wrong_branches_off_a_correct_path():
    # correct path 0-1-2-3 (K = 3); a wrong leaf 4 under 1; a wrong two-step branch 5-6 under 2;
    # an unfinished node 7 under 1 (no end leaf below: no target)
    tree = chain(3) + [node(4, 1, 0.0), node(5, 2), node(6, 5, 0.0), node(7, 1)]
    targets = values_of(tree)
    v1, v2 = 1 / 3, 2 / 3
    assert targets[1] == pytest.approx(v1) and targets[2] == pytest.approx(v2) and targets[3] == pytest.approx(1)
    # node 4 takes m = 2 from node 1: v1 - (1 - v1) / 3
    assert targets[4] == pytest.approx(v1 - (1 - v1) / 3)
    # node 5 takes m = 1 from node 2: v2 - (1 - v2) / 2; node 6 the same m from its nearest ancestor (2)
    v5 = v2 - (1 - v2) / 2
    assert targets[5] == pytest.approx(v5)
    assert targets[6] == pytest.approx(v5 - (1 - v5) / 2)
    assert 7 not in targets and 0 not in targets
    assert targets[4] < targets[1] and targets[6] < targets[5] < targets[2]


def test_wrong_value_is_floored_at_zero_and_m_is_the_shortest_way():
    # node 1 reaches a correct leaf in 1 step (2) and in 3 steps (3-4-5): m_1 = 1, so v_1 = 1/2
    tree = [node(0, None, step=""), node(1, 0), node(2, 1, 1.0), node(3, 1), node(4, 3), node(5, 4, 1.0),
            node(6, 0, 0.0), node(7, 6, terminal=False), node(8, 7, 0.0)]
    tree[6]["terminal"] = False  # node 6 is an inner node whose path ends in the wrong leaf 8
    tree[6]["reward"] = None
    assert steps_to_correct(tree)[1] == 1 and steps_to_correct(tree)[0] == 2
    targets = values_of(tree)
    assert targets[1] == pytest.approx(0.5) and targets[2] == pytest.approx(1.0)
    # 3 is on a correct path with m = 2: 0.5 + 0.5 / 3
    assert targets[3] == pytest.approx(0.5 + 0.5 / 3)
    # the wrong branch off the root: m = 2, v = max(0 - 1/3, 0) = 0, all the way down
    assert targets[6] == targets[7] == targets[8] == 0.0


def test_a_dead_end_without_an_answer_is_a_wrong_end_leaf():
    tree = chain(2) + [node(3, 1, None, terminal=True)]  # terminal (depth limit, no proposal), never judged
    targets = values_of(tree)
    assert targets[3] == pytest.approx(0.5 - 0.5 / 2)


def test_a_tree_without_a_correct_leaf_gives_no_targets():
    tree = [node(0, None, step=""), node(1, 0), node(2, 1, 0.0), node(3, 0, 0.0), node(4, 0)]
    assert values_of(tree) == {}
    assert value_rows(tree, "question") == []
    assert values_of([node(0, None, step="")]) == {}


def test_every_target_lies_in_unit_interval_on_random_trees():
    rng = random.Random(0)
    for _ in range(300):
        tree = [node(0, None, step="")]
        for index in range(1, rng.randint(2, 40)):
            reward = rng.choice([None, None, 0.0, 1.0])
            tree.append(node(index, rng.randrange(index), reward))
        # an end leaf with children is still an end; the rule stays in [0, 1] whatever the shape
        targets = values_of(tree)
        assert all(0.0 <= value <= 1.0 for value in targets.values())
        if any(entry["reward"] == 1.0 for entry in tree):
            assert targets and all(targets[entry["id"]] == pytest.approx(1.0)
                                   for entry in tree if entry["reward"] == 1.0)
        else:
            assert targets == {}


def test_value_rows_carry_states_with_the_init_state():
    tree = chain(2)
    rows = value_rows(tree, "Q", init_state="def f():\n")
    assert rows == [{"prompt": "Q", "answer": "def f():\ns1\n", "reward": pytest.approx(0.5)},
                    {"prompt": "Q", "answer": "def f():\ns1\ns2\n", "reward": pytest.approx(1.0)}]


def test_malformed_trees_are_errors():
    with pytest.raises(ValueError, match="exactly one root"):
        values_of([node(0, None), node(1, None, 1.0)])
    with pytest.raises(ValueError, match="parent 9"):
        values_of([node(0, None), node(1, 9, 1.0)])


# -- the prefix tree of samples ----------------------------------------------------------------------------

def test_prefix_tree_merges_shared_steps():
    samples = [("3 * 4 = 12\n14 + 12 = 26\n#### 26", 1.0),
               ("3 * 4 = 12\n14 + 12 = 27\n#### 27", 0.0),
               ("3 * 4 = 12 \n\n14 + 12 = 26\n#### 26\n", 1.0),  # the first, up to blank lines and spaces
               ("3 * 5 = 15\n#### 15", 0.0)]
    tree = prefix_tree(samples)
    states = node_states(tree)
    assert len(tree) == 1 + 3 + 2 + 2  # root, the shared first step's branch (3 + 2 more), the other branch
    assert sum(1 for entry in tree if entry["parent"] == 0) == 2  # two distinct first steps
    leaves = {states[entry["id"]]: entry["reward"] for entry in tree if entry["reward"] is not None}
    assert leaves == {"3 * 4 = 12\n14 + 12 = 26\n#### 26\n": 1.0, "3 * 4 = 12\n14 + 12 = 27\n#### 27\n": 0.0,
                      "3 * 5 = 15\n#### 15\n": 0.0}
    targets = values_of(tree)
    by_state = {states[key]: value for key, value in targets.items()}
    assert by_state["3 * 4 = 12\n"] == pytest.approx(1 / 3)
    assert by_state["3 * 4 = 12\n14 + 12 = 26\n"] == pytest.approx(2 / 3)
    assert by_state["3 * 4 = 12\n14 + 12 = 27\n"] == pytest.approx(1 / 3 - (2 / 3) / 3)  # m = 2 from node 1
    assert by_state["3 * 5 = 15\n"] == 0.0


def test_prefix_tree_keeps_the_best_reward_of_one_ending_and_ignores_empty_samples():
    tree = prefix_tree([("a\nb", 0.0), ("a\nb", 1.0), ("", 0.0), ("a", None)])
    assert [(entry["step"], entry["reward"]) for entry in tree] == [("", None), ("a\n", None), ("b\n", 1.0)]
    assert split_steps(" \n\n") == []


# -- the policy data -------------------------------------------------------------------------------------

def test_policy_leaves_thresholds():
    long_step, short_step = "x" * 50 + "\n", "x" * 10 + "\n"
    tree = [node(0, None, step=""), node(1, 0, 1.0, step=long_step, V=0.2), node(2, 0, 1.0, step=long_step, V=0.19),
            node(3, 0, 1.0, step=short_step, V=0.9), node(4, 0, 0.0, step=long_step, V=0.9),
            node(5, 0, step="y" * 48 + "\n", V=0.5), node(6, 5, 1.0, step="z\n", V=0.5)]
    assert policy_leaves(tree) == [long_step, "y" * 48 + "\nz\n"]  # V >= 0.2 and >= 50 characters, correct only
    assert policy_leaves(tree, value_threshold=0.0) == [long_step, long_step, "y" * 48 + "\nz\n"]
    assert policy_leaves(tree, length_threshold=0) == [long_step, short_step, "y" * 48 + "\nz\n"]
    assert policy_leaves(tree, value_threshold=0.95) == []


def test_doctests():
    assert doctest.testmod(quality_values).failed == 0
