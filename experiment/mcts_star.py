"""The tree of MCTS* (ReST-MCTS*'s search, as the authors' code runs it), pure arithmetic:
`experiment.mcts_star_batch` drives many trees at once with a policy and a value model.

A node is one step (math: a newline-separated reasoning line, the `#### X` line giving the answer; code: a
line, an empty proposal meaning the program ends here). A new node's value V comes from the value model.

    selection     from the root, while a node is expanded, the child of largest UCT:
                  V + c * sqrt(2 ln N_parent / n), and V + inf for an unvisited child (ties: seeded random)
    expansion     `branch` proposed steps become children (duplicates merged), each valued by the model
    simulation    from the best child (by UCT: the new children are unvisited, so the largest V), a greedy
                  roll of `roll_forward_steps` steps by value; that child's V <- (1 - alpha) V + alpha * best V
                  seen on the roll, and its visits + 1
    backup        from the expanded node up: visits + 1, and V <- the visit-weighted mean of the children's V

A node is terminal (never expanded) when it gives the answer, when V >= end_gate, at `max_depth`, or when its
expansion proposed nothing. The answer is the answer-giving leaf of highest V.

    root = StarNode(0, "")
    children = add_children(root, [("3 * 4 = 12\\n", False), ("#### 12\\n", True)], [0.4, 0.7], 1, 0.9, 16)
    roll_update(children[1], best_value=0.9, alpha=0.5); backup(root)
    best_leaf(root).state   # '#### 12\\n'
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Iterator, Sequence


@dataclass(eq=False)
class StarNode:
    id: int
    state: str  # the steps from the root down to here (the trace's init_state comes before it)
    step: str = ""  # the step that led here ("" at the root and for a code child that ends the program)
    parent: StarNode | None = None
    depth: int = 0
    value: float = 0.0  # V
    visits: int = 0
    terminal: bool = False
    gives_answer: bool = False
    expanded: bool = False
    children: list[StarNode] = field(default_factory=list)
    reward: float | None = None  # the verifier's 0/1, on answer-giving leaves once judged


def walk(root: StarNode) -> Iterator[StarNode]:
    """Every node in preorder (children in creation order)."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


# -- selection ----------------------------------------------------------------------------------------

def uct(child: StarNode, parent_visits: int, exploration_constant: float, inf: float) -> float:
    """V + c * sqrt(2 ln N / n) for a visited child, V + inf (the prior bonus) for an unvisited one.

    >>> round(uct(StarNode(1, "", value=0.5, visits=2), 4, 0.4, 0.8), 4) == round(0.5 + 0.4 * math.sqrt(math.log(4)), 4)
    True
    >>> uct(StarNode(1, "", value=0.5), 4, 0.4, 0.8)
    1.3
    """
    if child.visits == 0:
        return child.value + inf
    return child.value + exploration_constant * math.sqrt(2 * math.log(max(1, parent_visits)) / child.visits)


def best_child(node: StarNode, exploration_constant: float, inf: float, rng: random.Random) -> StarNode:
    """The child of largest UCT; ties broken uniformly at random by `rng`."""
    scored = [(uct(child, node.visits, exploration_constant, inf), child) for child in node.children]
    best = max(score for score, _ in scored)
    tied = [child for score, child in scored if score == best]
    return tied[0] if len(tied) == 1 else rng.choice(tied)


def select(root: StarNode, exploration_constant: float, inf: float, rng: random.Random) -> StarNode:
    """Descend by UCT through expanded nodes to the first one that is not expanded (to expand, or terminal)."""
    node = root
    while node.expanded and node.children:
        node = best_child(node, exploration_constant, inf, rng)
    return node


# -- expansion ----------------------------------------------------------------------------------------

def parse_step(kind: str, sample: str) -> tuple[str, bool] | None:
    """(step, gives_answer) for a sample cut at the first newline, or None when it proposes no step.
    Math: the first line, a `####` line giving the answer; a blank one proposes nothing. Code: the first
    line; a blank one (the policy closed the fence or ended) is the empty step that ends the program.

    >>> parse_step("math", "#### 13"), parse_step("math", "3 * 4 = 12\\nmore"), parse_step("math", "  ")
    (('#### 13\\n', True), ('3 * 4 = 12\\n', False), None)
    >>> parse_step("code", "    return x"), parse_step("code", "")
    (('    return x\\n', False), ('', True))
    """
    line = sample.split("\n", 1)[0].rstrip()
    if not line.strip():
        return ("", True) if kind == "code" else None
    return line + "\n", kind != "code" and "####" in line


def mark_terminal(node: StarNode, end_gate: float, max_depth: int) -> None:
    """A node not yet expanded is terminal when it gives the answer, reaches V >= end_gate, or max_depth."""
    if not node.expanded:
        node.terminal = node.gives_answer or node.value >= end_gate or node.depth >= max_depth


def add_children(node: StarNode, proposals: Sequence[tuple[str, bool]], values: Sequence[float], next_id: int,
                 end_gate: float, max_depth: int) -> list[StarNode]:
    """Expand `node` with the proposed (step, gives_answer) and their values (aligned); a step proposed twice
    is one child (its first value). Ids count up from `next_id`. A node with no proposal is a dead end
    (terminal). Returns the children created."""
    created: list[StarNode] = []
    seen = {child.step for child in node.children}
    for (step, gives_answer), value in zip(proposals, values, strict=True):
        if step in seen:
            continue
        seen.add(step)
        child = StarNode(next_id + len(created), node.state + step, step, node, node.depth + 1, float(value),
                         gives_answer=gives_answer)
        mark_terminal(child, end_gate, max_depth)
        created.append(child)
    node.children.extend(created)
    node.expanded = bool(node.children)
    node.terminal = not node.children
    return created


# -- simulation and backup ----------------------------------------------------------------------------

def roll_update(node: StarNode, best_value: float | None, alpha: float) -> None:
    """V <- (1 - alpha) V + alpha * best (best None: the roll saw no step, V stays), visits + 1.

    >>> node = StarNode(1, "", value=0.4); roll_update(node, 0.8, 0.5); node.value, node.visits
    (0.6000000000000001, 1)
    """
    if best_value is not None:
        node.value = (1 - alpha) * node.value + alpha * best_value
    node.visits += 1


def backup(node: StarNode) -> None:
    """From `node` to the root: visits + 1, and an expanded node's V becomes the visit-weighted mean of its
    children's V (unchanged while none of them is visited)."""
    while node is not None:
        node.visits += 1
        total = sum(child.visits for child in node.children)
        if total:
            node.value = sum(child.value * child.visits for child in node.children) / total
        node = node.parent


# -- answers and records ------------------------------------------------------------------------------

def answer_leaves(root: StarNode) -> list[StarNode]:
    """The leaves that give the answer, preorder."""
    return [node for node in walk(root) if node.gives_answer]


def best_leaf(root: StarNode) -> StarNode:
    """The answer-giving leaf of highest V (the first in preorder among equals); without one, the node of
    highest V in the tree (the authors' fallback, getBestV)."""
    candidates = answer_leaves(root) or list(walk(root))
    return max(candidates, key=lambda node: node.value)


def tree_record(root: StarNode) -> list[dict]:
    """The trace's `star_tree`: {id, parent, step, depth, V, visits, terminal, gives_answer, reward}, preorder."""
    return [{"id": node.id, "parent": node.parent.id if node.parent else None, "step": node.step,
             "depth": node.depth, "V": node.value, "visits": node.visits, "terminal": node.terminal,
             "gives_answer": node.gives_answer, "reward": node.reward} for node in walk(root)]
