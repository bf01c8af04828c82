"""The tree of one MCTS over lines of code, as the original searches: nodes, UCT, selection, expansion,
backup, and the records a trace holds. `experiment.mcts_batch` drives many such trees at once.

A node's state is the starter code plus whole lines. Expanding a node samples `num_sample`
completions from it; each completion's first line becomes a child (duplicates merged), a completion
of one line (or none) makes a terminal child; at most `num_decision` children stay visible. The
completions double as rollouts: their rewards are backed up from the node to the root, so a node's
value is the mean of every reward recorded at or below it.

    root = Node(state="def f(xs):\\n")
    children = expand(root, ["    return 1\\n```", "    x = 1\\n    return x"], "TinyCode", num_decision=3)
    record_completion_rewards(root, {program: 1.0 for program in root.programs()})
    backup(root, *rollout_totals(root))

Choices kept from the original code: in train and orm mode every new child has value 0, so
the visible children are the first `num_decision` distinct lines in sample order (a stable sort by
value); a re-selected terminal node re-adds its value; in prm mode the expanded node backs up the
visits and sums of all its children, the pruned ones included. Defects of the original code fixed:
completion lists are never extended in place (`all_completions` copies), and a program already scored
in the tree is never executed again (a selected terminal node takes its program's stored reward).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Iterator

from prompts import extract_code


@dataclass(eq=False)
class Node:
    state: str
    parent: Node | None = None
    depth: int = 0
    terminal: bool = False
    visits: int = 0
    sum_reward: float = 0.0
    children: dict[str, Node] = field(default_factory=dict)  # action (one line) -> child, in sample order
    expanded: bool = False
    visible: bool = True
    completions: list[dict] = field(default_factory=list)  # [{"completion": program, "reward": float|None}]
    virtual: int = 0  # visits of expansions in flight (virtual loss: they count as reward 0 until backed up)
    pending: bool = False  # an expansion of this node is in flight
    thought: str | None = None  # --use_thought: the thought whose action led here

    @property
    def value(self) -> float:
        return self.sum_reward / self.visits if self.visits else 0.0

    def programs(self) -> list[str]:
        return [entry["completion"] for entry in self.completions]


def walk(root: Node) -> Iterator[Node]:
    """Every node in preorder (children in sample order)."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(list(node.children.values())))


# -- selection ----------------------------------------------------------------------------------------

def uct(child: Node, parent: Node, exploration_constant: float, eps: float) -> float:
    """V + c * sqrt((1 + ln N_parent) / (eps + n_child)), with in-flight visits counted as losses.

    >>> parent, child = Node("", visits=4), Node("a", visits=1, sum_reward=0.5)
    >>> round(uct(child, parent, 0.2, 0.1), 4) == round(0.5 + 0.2 * math.sqrt((1 + math.log(4)) / 1.1), 4)
    True
    """
    visits = child.visits + child.virtual
    value = child.sum_reward / visits if visits else 0.0
    parent_visits = max(1, parent.visits + parent.virtual)  # ln of an unvisited parent: taken as ln 1
    return value + exploration_constant * math.sqrt((1 + math.log(parent_visits)) / (eps + visits))


def best_child(node: Node, exploration_constant: float, eps: float, rng: random.Random) -> Node:
    """The visible child of largest UCT; ties broken uniformly at random (seeded)."""
    scored = [(uct(child, node, exploration_constant, eps), child) for child in node.children.values()
              if child.visible]
    best = max(score for score, _ in scored)
    tied = [child for score, child in scored if score == best]
    return tied[0] if len(tied) == 1 else rng.choice(tied)


def select(root: Node, exploration_constant: float, eps: float, rng: random.Random) -> Node:
    """Descend through expanded nodes by UCT to the first node that is not expanded: an unexpanded
    node (to expand), a terminal node, or a node whose expansion is already in flight."""
    node = root
    while node.expanded and not node.pending:
        node = best_child(node, exploration_constant, eps, rng)
    return node


def add_virtual(node: Node, amount: int) -> None:
    """Count (or, with -1, uncount) an in-flight expansion on the path from `node` to the root."""
    while node is not None:
        node.virtual += amount
        node = node.parent


# -- expansion ----------------------------------------------------------------------------------------

def split_sample(domain: str, state: str, sample: str) -> tuple[str, bool, str]:
    """(action, terminal, program) for one raw sample continuing `state`: the action is the first line
    of the code (with its newline); a sample of one line or none makes a terminal child; the program is
    the state followed by the whole code, ending with one newline.

    >>> split_sample("TinyCode", "def f():\\n", "    x = 1\\n    return x\\n```\\n")
    ('    x = 1\\n', False, 'def f():\\n    x = 1\\n    return x\\n')
    >>> split_sample("TinyCode", "def f():\\n", "    return 2```")
    ('    return 2\\n', True, 'def f():\\n    return 2\\n')
    """
    code = extract_code(domain, sample).rstrip()
    first, newline, _ = code.partition("\n")
    return first + "\n", not newline, state + code + "\n"


def expand(node: Node, samples: list[str], domain: str, num_decision: int,
           child_values: dict[str, float] | None = None, thoughts: list[str] | None = None) -> list[Node]:
    """Add the children the samples propose and record every sample as a completion of `node`
    (reward unknown yet). `child_values` (prm mode: value-model scores by child state) gives each new
    child V with one visit, and a duplicate first line one more visit at that value. Then all but the
    `num_decision` children of highest value (stable: sample order among equals) become invisible.
    `thoughts` (thought mode: one per sample) are stored on the children they create. Returns the
    children created."""
    created = []
    for index, sample in enumerate(samples):
        action, terminal, program = split_sample(domain, node.state, sample)
        node.completions.append({"completion": program, "reward": None})
        child = node.children.get(action)
        if child is None:
            child = Node(node.state + action, parent=node, depth=node.depth + 1, terminal=terminal,
                         thought=thoughts[index] if thoughts is not None else None)
            node.children[action] = child
            created.append(child)
        if child_values is not None:
            child.visits += 1
            child.sum_reward += child_values[child.state]
    ranked = sorted(node.children.values(), key=lambda child: -child.value)
    for child in ranked[num_decision:]:
        child.visible = False
    node.expanded = True
    return created


def record_completion_rewards(node: Node, rewards: dict[str, float]) -> None:
    """Store each completion's reward (by program: the tree's score of that program)."""
    node.completions = [{**entry, "reward": rewards[entry["completion"]]} for entry in node.completions]


def rollout_totals(node: Node) -> tuple[int, float]:
    """(count, sum) the node's own completions back up (train and orm mode)."""
    return len(node.completions), sum(entry["reward"] for entry in node.completions)


def children_totals(node: Node) -> tuple[int, float]:
    """(count, sum) over all children, pruned ones included (prm mode, faithful to the original)."""
    return (sum(child.visits for child in node.children.values()),
            sum(child.sum_reward for child in node.children.values()))


def backup(node: Node, count: int, total: float) -> None:
    """Add `count` visits and `total` reward to `node` and every ancestor."""
    while node is not None:
        node.visits += count
        node.sum_reward += total
        node = node.parent


# -- records ------------------------------------------------------------------------------------------

def all_completions(root: Node) -> list[dict]:
    """Every scored completion, preorder (copies: the tree is not changed)."""
    return [dict(entry) for node in walk(root) for entry in node.completions]


def process_rewards(root: Node) -> list[dict]:
    """The trace's `rewards`: every node, preorder, with its value, as the original records it."""
    return [{"state": node.state, "reward": node.value, "terminal": node.terminal, "expanded": node.expanded,
             "visible": node.visible, "visits": node.visits} for node in walk(root)]


def tree_record(root: Node) -> list[dict]:
    """The trace's `tree`: preorder nodes with depths (rebuildable), each with only its own completions."""
    return [{"state": node.state, "is_terminal": node.terminal, "thought": node.thought, "num_visits": node.visits,
             "value": node.value,
             "sum_reward": node.sum_reward, "is_fully_expanded": node.expanded, "visible": node.visible,
             "depth": node.depth, "completions": [dict(entry) for entry in node.completions]}
            for node in walk(root)]


def best_program(root: Node) -> str:
    """The final answer, as the original picks it: the completion of highest stored score, the first in preorder among
    equals; "" when the tree holds none."""
    completions = all_completions(root)
    return max(completions, key=lambda entry: entry["reward"])["completion"] if completions else ""


def line_prefixes(program: str, init_state: str) -> list[str]:
    """The states a program passes through: the starter code followed by its first j lines, for every
    j short of the whole program (Monte-Carlo value targets are estimated at these).

    >>> line_prefixes("def f():\\n    x = 1\\n    return x\\n", "def f():\\n")
    ['def f():\\n', 'def f():\\n    x = 1\\n']
    """
    lines = program[len(init_state):].splitlines(keepends=True)
    return [init_state + "".join(lines[:j]) for j in range(len(lines))]
