"""The MCTS tree arithmetic and the batched driver, with a scripted deterministic policy (a test
policy: each sample is a function of the state and the sample's index only, so batching cannot change
it) and a deterministic reward function in place of the sandbox (the stage test runs the sandbox)."""
from __future__ import annotations

import json
import math
import random
import time
import zlib
from collections import Counter

import pytest

from data.records import Problem
from experiment.common import problem_seed
from experiment.mcts import Node, best_child, expand, split_sample, uct, walk
from experiment.mcts_batch import SearchConfig, run_searches
from models.generation import Generation, PromptOutput

INIT = "def f(x):\n"
PROGRAMS = [INIT + "    y = x\n    return y\n", INIT + "    y = x\n    return y + 1\n", INIT + "    return x\n",
            INIT + "    z = 2\n    w = z\n    return x * z\n", INIT + "    y = x\n    z = y\n    return z\n",
            INIT + "    if x:\n        return 1\n    return 0\n", INIT + "    if x:\n        return 2\n    return 3\n"]


class ScriptedPolicy:
    """Sample j from state s: a program of PROGRAMS extending s, drawn by a seed made of s and j."""

    def __init__(self, delay: float = 0.0):
        self.calls: list[int] = []
        self.delay = delay

    def generate(self, prompts, n, temperature, max_tokens, stop, seed):
        self.calls.append(len(prompts))
        time.sleep(self.delay)
        return [PromptOutput(prompt_tokens=1, generations=[self.sample(prompt.split("\0", 1)[1], j) for j in range(n)])
                for prompt in prompts]

    @staticmethod
    def sample(state: str, j: int) -> Generation:
        options = [program for program in PROGRAMS if program.startswith(state) and program != state]
        text = random.Random(zlib.crc32(state.encode()) * 1000 + j).choice(options)[len(state):] + "```\n" \
            if options else ""
        return Generation(text, completion_tokens=len(text), finish_reason="stop")


def reward(program: str) -> float:
    return (zlib.crc32(program.encode()) % 5) / 4


def make_prompt(problem: Problem, state: str) -> str:
    return f"{problem.id}\0{state}"


class Scorer:
    """Counts how often each program is scored."""

    def __init__(self):
        self.seen = Counter()

    def evaluate(self, items):
        for problem, programs in items:
            self.seen.update((problem.id, program) for program in programs)
        return [[reward(program) for program in programs] for _, programs in items]


def problems(count: int) -> list[Problem]:
    return [Problem(f"p{index}", "TinyCode", f"question {index}", INIT) for index in range(count)]


def search(count=2, scorer=None, policy=None, **settings):
    scorer, policy = scorer or Scorer(), policy or ScriptedPolicy()
    config = SearchConfig(**{"domain": "TinyCode", "num_sample": 3, "num_decision": 2, "iteration_limit": 12,
                             **settings})
    stats = Counter()
    results = run_searches(problems(count), policy, config, make_prompt, evaluate=scorer.evaluate, stats=stats)
    return results, stats


# -- formulas -------------------------------------------------------------------------------------------

def test_uct_is_the_formula_and_best_child_takes_its_max():
    parent = Node("", visits=10, expanded=True)
    values = [(3, 2.0), (1, 0.2), (0, 0.0), (5, 4.5)]
    for index, (visits, total) in enumerate(values):
        parent.children[str(index)] = Node(str(index), parent=parent, visits=visits, sum_reward=total)
    expected = [(total / visits if visits else 0.0) + 0.2 * math.sqrt((1 + math.log(10)) / (0.1 + visits))
                for visits, total in values]
    got = [uct(child, parent, 0.2, 0.1) for child in parent.children.values()]
    assert got == pytest.approx(expected)
    rng = random.Random(0)
    assert best_child(parent, 0.2, 0.1, rng).state == str(max(range(4), key=expected.__getitem__))  # unvisited: "2"
    parent.children["2"].visible = False  # invisible children are never picked
    assert best_child(parent, 0.2, 0.1, rng).state == str(max((0, 1, 3), key=expected.__getitem__))
    assert best_child(parent, 0.0, 0.1, rng).state == "3"  # c = 0: pure value 0.9


def test_ties_are_broken_by_the_seeded_rng():
    parent = Node("", visits=2, expanded=True)
    for name in "abc":
        parent.children[name] = Node(name, parent=parent)
    picks = {best_child(parent, 0.2, 0.1, random.Random(seed)).state for seed in range(30)}
    assert picks == {"a", "b", "c"}
    assert [best_child(parent, 0.2, 0.1, random.Random(5)).state for _ in range(3)] == \
        [best_child(parent, 0.2, 0.1, random.Random(5)).state] * 3


def test_samples_split_into_first_line_and_terminal():
    assert split_sample("TinyCode", INIT, "    y = x\n    return y\n```\nprose") == \
        ("    y = x\n", False, INIT + "    y = x\n    return y\n")
    assert split_sample("TinyCode", INIT, "    return x   \n\n```") == ("    return x\n", True, INIT + "    return x\n")
    assert split_sample("TinyCode", INIT, "```") == ("\n", True, INIT + "\n")


def test_pruning_keeps_the_first_lines_in_train_mode_and_the_best_values_in_prm_mode():
    samples = ["    a = 1\n    return a```", "    b = 1\n    return b```", "    a = 1\n    return 0```",
               "    c = 1\n    return c```", "    return 5```"]
    node = Node(INIT)
    created = expand(node, samples, "TinyCode", num_decision=2)
    assert [child.state[len(INIT):] for child in created] == ["    a = 1\n", "    b = 1\n", "    c = 1\n",
                                                              "    return 5\n"]
    assert [child.visible for child in created] == [True, True, False, False]
    assert [child.terminal for child in created] == [False, False, False, True]
    assert len(node.completions) == 5 and node.expanded
    values = {INIT + "    a = 1\n": 0.1, INIT + "    b = 1\n": 0.7, INIT + "    c = 1\n": 0.4,
              INIT + "    return 5\n": 0.9}
    node = Node(INIT)
    created = expand(node, samples, "TinyCode", num_decision=2, child_values=values)
    assert {child.state for child in created if child.visible} == {INIT + "    return 5\n", INIT + "    b = 1\n"}
    first = node.children["    a = 1\n"]  # a duplicate first line adds one visit at the child's value
    assert first.visits == 2 and first.value == pytest.approx(0.1)


# -- the search -----------------------------------------------------------------------------------------

def rebuild(tree: list[dict]) -> list[dict]:
    """Attach to each tree record the records of its subtree (preorder + depths)."""
    for index, node in enumerate(tree):
        node["subtree"] = [node]
        for other in tree[index + 1:]:
            if other["depth"] <= node["depth"]:
                break
            node["subtree"].append(other)
    return tree


def check_tree_arithmetic(record: dict) -> None:
    """Every expanded node's value is the mean of the rewards recorded at and below it: the rollout
    rewards of each node's completions, and a terminal node's reward once per visit."""
    tree = rebuild(record["tree"])
    for node in tree:
        for entry in node["completions"]:
            assert entry["reward"] == reward(entry["completion"])
        if node["is_terminal"]:
            assert node["num_visits"] == 0 or node["value"] == pytest.approx(reward(node["state"]))
        if not node["is_fully_expanded"]:
            continue
        rewards = [entry["reward"] for below in node["subtree"] for entry in below["completions"]]
        rewards += [below["value"] for below in node["subtree"] if below["is_terminal"]
                    for _ in range(below["num_visits"])]
        assert node["num_visits"] == len(rewards)
        assert node["value"] == pytest.approx(sum(rewards) / len(rewards))
        assert sum(child["visible"] for child in node["subtree"] if child["depth"] == node["depth"] + 1) <= 2
    assert [entry["state"] for entry in record["rewards"]] == [node["state"] for node in tree]
    assert record["completions"] == [entry for node in tree for entry in node["completions"]]


@pytest.mark.parametrize("leaves_per_tree", [1, 3])
def test_values_are_means_of_rewards_at_and_below(leaves_per_tree):
    scorer = Scorer()
    results, stats = search(count=3, scorer=scorer, leaves_per_tree=leaves_per_tree, iteration_limit=15)
    assert [result.problem.id for result in results] == ["p0", "p1", "p2"]
    for result in results:
        record = result.record
        check_tree_arithmetic(record)
        assert record["iterations"] == 15 and record["expansions"] >= 3
        assert result.answer == max(record["completions"], key=lambda entry: entry["reward"])["completion"]
        assert record["token_usage"]["completion"] > 0
    assert max(scorer.seen.values()) == 1  # no program is run twice, terminal selections included
    assert stats["expansions"] == sum(result.record["expansions"] for result in results)


def test_virtual_loss_expands_several_leaves_of_one_tree_per_call():
    policy = ScriptedPolicy()
    results, stats = search(count=1, policy=policy, leaves_per_tree=3, iteration_limit=10, num_decision=3)
    assert policy.calls[0] == 1  # the root alone
    assert max(policy.calls) >= 2  # then several distinct leaves in one call
    assert len(policy.calls) < results[0].record["expansions"]


class ReferenceSearch:
    """The original's sequential algorithm, written out plainly: one iteration at a time,
    each selected terminal node scored by running its program again."""

    def __init__(self, problem: Problem, num_sample=3, num_decision=2, c=0.2, eps=0.1, seed=0):
        self.problem, self.num_sample, self.num_decision, self.c, self.eps = problem, num_sample, num_decision, c, eps
        self.rng = random.Random(problem_seed(seed, problem.id, "uct"))
        self.root = {"state": problem.init_state, "children": {}, "n": 0, "sum": 0.0, "terminal": False,
                     "expanded": False, "visible": True, "parent": None, "completions": []}

    def run(self, iterations: int) -> list[str]:
        visited = []
        for _ in range(iterations):
            node = self.root
            while node["expanded"]:
                visible = [child for child in node["children"].values() if child["visible"]]
                scores = [(child["sum"] / child["n"] if child["n"] else 0.0)
                          + self.c * math.sqrt((1 + math.log(max(1, node["n"]))) / (self.eps + child["n"]))
                          for child in visible]
                tied = [child for child, score in zip(visible, scores) if score == max(scores)]
                node = tied[0] if len(tied) == 1 else self.rng.choice(tied)
            visited.append(node["state"])
            if node["terminal"]:
                self.backup(node, 1, node["sum"] / node["n"] if node["n"] else reward(node["state"]))
                continue
            for j in range(self.num_sample):
                code = ScriptedPolicy.sample(node["state"], j).text.split("```")[0].rstrip()
                action = code.split("\n")[0] + "\n"
                node["completions"].append(node["state"] + code + "\n")
                if action not in node["children"]:
                    node["children"][action] = {"state": node["state"] + action, "children": {}, "n": 0, "sum": 0.0,
                                                "terminal": "\n" not in code, "expanded": False, "visible": True,
                                                "parent": node, "completions": []}
            for child in list(node["children"].values())[self.num_decision:]:
                child["visible"] = False
            node["expanded"] = True
            self.backup(node, len(node["completions"]), sum(reward(p) for p in node["completions"]))
        return visited

    @staticmethod
    def backup(node, count, total):
        while node is not None:
            node["n"] += count
            node["sum"] += total
            node = node["parent"]

    def nodes(self):
        stack = [self.root]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(list(node["children"].values())))


def test_batched_search_visits_what_the_sequential_algorithm_visits():
    results, _ = search(count=4, iteration_limit=20, max_active=4, leaves_per_tree=1)
    for result in results:
        reference = ReferenceSearch(result.problem)
        reference.run(20)
        got = [(node["state"], node["num_visits"], node["sum_reward"], node["visible"], node["is_fully_expanded"],
                [entry["completion"] for entry in node["completions"]]) for node in result.record["tree"]]
        want = [(node["state"], node["n"], node["sum"], node["visible"], node["expanded"], node["completions"])
                for node in reference.nodes()]
        assert [row[:2] for row in got] == [row[:2] for row in want]
        assert [row[3:] for row in got] == [row[3:] for row in want]
        assert [row[2] for row in got] == pytest.approx([row[2] for row in want])


def test_one_problem_at_a_time_gives_the_same_trees_as_batched():
    batched, batched_stats = search(count=4, iteration_limit=12, max_active=4)
    single, single_stats = search(count=4, iteration_limit=12, max_active=1)
    assert [result.record["tree"] for result in batched] == [result.record["tree"] for result in single]
    assert batched_stats["policy_calls"] < single_stats["policy_calls"] == single_stats["expansions"]


def test_iteration_and_time_limits():
    results, _ = search(count=1, iteration_limit=5)
    assert results[0].record["iterations"] == 5
    started = time.monotonic()
    results, _ = search(count=2, iteration_limit=0, time_limit=0.3, policy=ScriptedPolicy(delay=0.05))
    assert time.monotonic() - started < 2.0
    # each round costs 0.05 s of policy time: at most ~6 rounds of expansions (terminal selections are free)
    assert all(0 < result.record["expansions"] <= 8 for result in results)
    results, _ = search(count=1, iteration_limit=3, time_limit=30.0)  # whichever comes first
    assert results[0].record["iterations"] == 3
    with pytest.raises(ValueError, match="no budget"):
        SearchConfig(domain="TinyCode", iteration_limit=0, time_limit=None)


def test_prm_mode_values_children_with_the_scorer_and_runs_nothing():
    def value(questions, states):
        assert all(question.startswith("question") for question in questions)
        calls.append(len(states))
        return [reward(state) for state in states]

    calls = []
    config = SearchConfig(domain="TinyCode", num_sample=3, num_decision=2, iteration_limit=10, rm_type="prm")
    results = run_searches(problems(2), ScriptedPolicy(), config, make_prompt, score=value)
    for result in results:
        for node in walk_records(result.record["tree"]):
            if node["depth"] > 0:  # every child: V from the value model, at least one visit
                assert node["num_visits"] >= 1
            if node["depth"] > 0 and not node["is_fully_expanded"]:  # re-selected terminals re-add their V
                assert node["value"] == pytest.approx(reward(node["state"]))
            if node["is_fully_expanded"]:
                children = [child for child in node["subtree"] if child["depth"] == node["depth"] + 1]
                visible = [child["value"] for child in children if child["visible"]]
                hidden = [child["value"] for child in children if not child["visible"]]
                assert len(visible) <= 2
                # pruned by value at creation; values move later, so check the creation-time values
                assert not hidden or min(reward(child["state"]) for child in children if child["visible"]) >= \
                    max(reward(child["state"]) for child in children if not child["visible"])
                # the backup: all children's visits and sums, the pruned ones included (as the original does), on top of
                # a non-root node's own value-model visits (one, plus one per duplicate first line)
                own = node["num_visits"] - sum(child["num_visits"] for child in children)
                assert own >= 1 if node["depth"] > 0 else own == 0
                assert node["sum_reward"] == pytest.approx(own * reward(node["state"])
                                                           + sum(child["sum_reward"] for child in children))
        assert result.answer == max(result.record["completions"], key=lambda e: e["reward"])["completion"]
    assert calls and max(calls) > 3  # children of both trees valued in one call


def walk_records(tree):
    return rebuild(tree)


def test_orm_mode_scores_rollouts_with_the_reward_model():
    config = SearchConfig(domain="TinyCode", num_sample=3, num_decision=2, iteration_limit=10, rm_type="orm")
    results = run_searches(problems(1), ScriptedPolicy(), config, make_prompt,
                           score=lambda questions, programs: [reward(program) for program in programs])
    check_tree_arithmetic(results[0].record)
    with pytest.raises(ValueError, match="needs score"):
        run_searches(problems(1), ScriptedPolicy(), config, make_prompt)


def test_monte_carlo_targets_average_rollouts_from_every_line_prefix():
    scorer = Scorer()
    results, _ = search(count=2, scorer=scorer, iteration_limit=6, mc_rollouts=4)
    for result in results:
        record = result.record
        prefixes = {program["completion"][:cut] for program in record["completions"]
                    for cut in [len(INIT)] + [len(INIT) + i + 1 for i, ch in
                                              enumerate(program["completion"][len(INIT):-1]) if ch == "\n"]}
        assert {entry["state"] for entry in record["mc_rewards"]} == prefixes
        for entry in record["mc_rewards"]:
            programs = [split_sample("TinyCode", entry["state"], ScriptedPolicy.sample(entry["state"], j).text)[2]
                        for j in range(4)]
            assert entry["rollouts"] == 4 and entry["rewards"] == [reward(program) for program in programs]
            assert entry["reward"] == pytest.approx(sum(entry["rewards"]) / 4)
        check_tree_arithmetic(record)
    assert max(scorer.seen.values()) == 1


def test_records_do_not_mutate_the_tree():
    results, _ = search(count=1, iteration_limit=8)
    tree = results[0].record["tree"]
    total = sum(len(node["completions"]) for node in tree)
    assert total == len(results[0].record["completions"]) == 3 * results[0].record["expansions"]
    root = Node(INIT)
    expand(root, ["    y = x\n    return y```"], "TinyCode", 2)
    assert len(list(walk(root))) == 2 and len(root.completions) == 1


def test_docstring_examples():
    import doctest

    import experiment.mcts

    assert doctest.testmod(experiment.mcts).failed == 0


@pytest.mark.parametrize("value_targets", ["tree", "mc"])
def test_traces_become_value_data(value_targets):
    import argparse

    from experiment.process_gen_data import value_records

    (result,), _ = search(count=1, iteration_limit=6, mc_rollouts=2)
    record = json.loads(json.dumps(result.record))  # as a trace line reads back
    rows = value_records(record, "TinyCode", argparse.Namespace(value_targets=value_targets))
    states = record["mc_rewards"] if value_targets == "mc" else [e for e in record["rewards"] if e["expanded"]]
    assert rows == [{"prompt": "question 0", "answer": entry["completion"], "reward": entry["reward"]}
                    for entry in record["completions"]] + \
        [{"prompt": "question 0", "answer": entry["state"], "reward": entry["reward"]} for entry in states]
    assert rows[len(record["completions"])]["answer"] == INIT  # the root comes first among the states


class ThoughtPolicy(ScriptedPolicy):
    """--use_thought: a think prompt `think\\0<id>\\0<state>` gets thoughts `idea <j> for <state crc>`; an act
    prompt `act\\0<thought>\\0<id>\\0<state>` gets the scripted sample of its state drawn by the thought."""

    def __init__(self):
        super().__init__()
        self.requests: list[tuple[str, int, int, tuple]] = []

    def generate(self, prompts, n, temperature, max_tokens, stop, seed):
        kind = prompts[0].split("\0")[0]
        self.requests.append((kind, len(prompts), n, max_tokens, tuple(stop or ())))
        outputs = []
        for prompt in prompts:
            parts = prompt.split("\0")
            if kind == "think":
                texts = [f"idea {j} for {zlib.crc32(parts[2].encode())}" for j in range(n)]
                outputs.append(PromptOutput(1, [Generation(text, len(text), "stop") for text in texts]))
            else:
                outputs.append(PromptOutput(1, [self.sample(parts[3], int(parts[1].split()[1]))]))
        return outputs


def test_thought_mode_expands_through_thoughts_and_children_keep_theirs():
    policy, scorer = ThoughtPolicy(), Scorer()
    config = SearchConfig(domain="TinyCode", num_sample=3, num_decision=2, iteration_limit=8, use_thought=True,
                          max_thought_tokens=7, stop_think=["\n\n"], max_tokens=50, stop=["```"])
    prompts = (lambda problem, state: f"think\0{problem.id}\0{state}",
               lambda problem, state, thought: f"act\0{thought}\0{problem.id}\0{state}")
    results = run_searches(problems(2), policy, config, make_prompt, evaluate=scorer.evaluate,
                           thought_prompts=prompts)
    kinds = [request[0] for request in policy.requests]
    assert kinds == ["think", "act"] * (len(kinds) // 2)  # every round: all thoughts in one call, then all acts
    for (_, thinks, n_think, think_tokens, think_stop), (_, acts, n_act, act_tokens, act_stop) in \
            zip(policy.requests[::2], policy.requests[1::2]):
        assert (n_think, think_tokens, think_stop) == (3, 7, ("\n\n",))
        assert (acts, n_act, act_tokens, act_stop) == (thinks * 3, 1, 50, ("```",))
    for result in results:
        record = result.record
        check_tree_arithmetic(record)
        tree = record["tree"]
        assert tree[0]["thought"] is None and len(tree) > 1
        for node in tree[1:]:
            parent = next(p for p in tree if p["depth"] == node["depth"] - 1 and node["state"].startswith(p["state"])
                          and p["is_fully_expanded"])
            crc = zlib.crc32(parent["state"].encode())
            # the first thought whose action proposed this child's line
            first = next(j for j in range(3) if split_sample("TinyCode", parent["state"],
                                                               ScriptedPolicy.sample(parent["state"], j).text)[0]
                         == node["state"][len(parent["state"]):])
            assert node["thought"] == f"idea {first} for {crc}"
    assert max(scorer.seen.values()) == 1
    with pytest.raises(ValueError, match="thought_prompts"):
        run_searches(problems(1), policy, config, make_prompt, evaluate=scorer.evaluate)
