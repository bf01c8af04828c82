"""ReST-MCTS*'s value targets inferred from a search tree ("quality values"), the prefix tree that turns
independent samples of one problem into such a tree, and the filter that picks its policy data.

A tree is a list of node dicts `{id, parent, step, depth, V, visits, terminal, gives_answer, reward}` (a
`sample_mcts --algorithm star` trace's `star_tree`, experiment/mcts_star.py); the root has parent null and an
empty step, and a node's state is the concatenation of the steps from the root down to it. An *end leaf* is a
node the search ended (terminal) or the verifier judged (a reward): *correct* when its reward is at least
`correct_reward` (1), wrong otherwise (a wrong answer, a dead end, the depth limit); other nodes are unfinished
(the authors' end leaves: an answer, or the search's end of a branch).

The targets, as the authors compute them, for a tree with at least one correct leaf: v_0 = 0 at the root and
down every path, for the k-th step,

    w_k = (1 - v_{k-1}) / (m_k + 1) * (1 - 2 r_k),      v_k = max(v_{k-1} + w_k, 0),

r_k being 0 when the node leads to a correct leaf and 1 otherwise, m_k the fewest steps from the node down to
a correct leaf; a node that leads to none takes m_k from its nearest ancestor that does. On a correct path of
K steps v_k = k/K, and every target lies in [0, 1] (w_k <= 1 - v_{k-1}).
As in the authors' code (`treeNode.get_full_value_samples_vm` and its caller):
  - a tree with no correct leaf gives no targets (nothing anchors them; its wrong answers would all be 0);
  - a node from which no end leaf can be reached (a branch the search left unfinished) gives no target;
  - the root (the bare question) gives no target.
"""
from __future__ import annotations

from typing import Sequence

CORRECT_REWARD = 1.0


def children_of(nodes: Sequence[dict]) -> dict:
    """{node id: [child ids, in the tree's order]}, every node present; a parent that is no node's id is a
    ValueError."""
    children = {node["id"]: [] for node in nodes}
    for node in nodes:
        if node["parent"] is not None:
            if node["parent"] not in children:
                raise ValueError(f"node {node['id']!r}: parent {node['parent']!r} is not in the tree")
            children[node["parent"]].append(node["id"])
    return children


def root_id(nodes: Sequence[dict]):
    """The id of the one node without a parent; a ValueError when there is not exactly one."""
    roots = [node["id"] for node in nodes if node["parent"] is None]
    if len(roots) != 1:
        raise ValueError(f"a tree needs exactly one root (parent null), found {len(roots)}")
    return roots[0]


def is_end_leaf(node: dict) -> bool:
    return bool(node.get("terminal")) or node.get("reward") is not None


def is_correct(node: dict, correct_reward: float = CORRECT_REWARD) -> bool:
    return node.get("reward") is not None and node["reward"] >= correct_reward


def preorder(nodes: Sequence[dict]) -> list:
    """Node ids, every parent before its children (iterative: a deep tree is no recursion)."""
    children = children_of(nodes)
    order, stack = [], [root_id(nodes)]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(reversed(children[node]))
    return order


def steps_to_correct(nodes: Sequence[dict], correct_reward: float = CORRECT_REWARD) -> dict:
    """{id: fewest steps down to a correct leaf} for the nodes that lead to one (a correct leaf itself: 0).

    >>> tree = [{"id": 0, "parent": None}, {"id": 1, "parent": 0}, {"id": 2, "parent": 1, "reward": 1},
    ...         {"id": 3, "parent": 0, "reward": 0}]
    >>> steps_to_correct(tree)
    {2: 0, 1: 1, 0: 2}
    """
    by_id, children = {node["id"]: node for node in nodes}, children_of(nodes)
    steps = {}
    for node in reversed(preorder(nodes)):
        below = [steps[child] + 1 for child in children[node] if child in steps]
        if is_correct(by_id[node], correct_reward):
            steps[node] = 0
        elif below:
            steps[node] = min(below)
    return steps


def reaches_end(nodes: Sequence[dict]) -> set:
    """Ids of the nodes from which an end leaf can be reached (end leaves included)."""
    by_id, children = {node["id"]: node for node in nodes}, children_of(nodes)
    reached = set()
    for node in reversed(preorder(nodes)):
        if is_end_leaf(by_id[node]) or any(child in reached for child in children[node]):
            reached.add(node)
    return reached


def quality_values(nodes: Sequence[dict], correct_reward: float = CORRECT_REWARD) -> dict:
    """{id: v} for every node that gets a target (module docstring); {} for a tree without a correct leaf.

    >>> tree = [{"id": 0, "parent": None}, {"id": 1, "parent": 0}, {"id": 2, "parent": 1, "reward": 1},
    ...         {"id": 3, "parent": 1, "reward": 0}, {"id": 4, "parent": 0}]
    >>> quality_values(tree)  # 2 steps to the answer: 1/2, 1; the wrong leaf under node 1 (m = 1): 1/2 - 1/4
    {1: 0.5, 2: 1.0, 3: 0.25}
    """
    steps = steps_to_correct(nodes, correct_reward)
    root = root_id(nodes)
    if root not in steps:
        return {}
    reached, children = reaches_end(nodes), children_of(nodes)
    value, anchor, targets = {root: 0.0}, {root: steps[root]}, {}
    for node in preorder(nodes):
        for child in children[node]:
            if child not in reached:
                continue
            # m of a node off every correct path: that of its nearest ancestor on one (its parent's anchor)
            anchor[child] = steps.get(child, anchor[node])
            sign = 1.0 if child in steps else -1.0  # 1 - 2 r_k
            step_weight = (1.0 - value[node]) / (anchor[child] + 1) * sign
            value[child] = targets[child] = max(value[node] + step_weight, 0.0)
    return targets


def node_states(nodes: Sequence[dict]) -> dict:
    """{id: the steps from the root down to the node, concatenated} (the root's: its own step, "").

    >>> node_states([{"id": "a", "parent": None, "step": ""}, {"id": "b", "parent": "a", "step": "1 + 1 = 2\\n"}])
    {'a': '', 'b': '1 + 1 = 2\\n'}
    """
    by_id = {node["id"]: node for node in nodes}
    states = {}
    for node in preorder(nodes):
        parent = by_id[node]["parent"]
        states[node] = (states[parent] if parent is not None else "") + (by_id[node].get("step") or "")
    return states


def value_rows(nodes: Sequence[dict], prompt: str, init_state: str = "",
               correct_reward: float = CORRECT_REWARD) -> list[dict]:
    """Value data `{prompt, answer, reward}`: every node with a target, in preorder, the answer being the
    state the value model scores in the search (`init_state` + the node's state)."""
    targets, states = quality_values(nodes, correct_reward), node_states(nodes)
    return [{"prompt": prompt, "answer": init_state + states[node], "reward": targets[node]}
            for node in preorder(nodes) if node in targets]


def policy_leaves(nodes: Sequence[dict], value_threshold: float = 0.2, length_threshold: int = 50,
                  correct_reward: float = CORRECT_REWARD) -> list[str]:
    """The solutions the policy trains on: the states of correct end leaves whose value in the search (the
    value model's `V`) is at least `value_threshold` and whose text is at least `length_threshold` characters
    (the authors' 0.2 and 50), in preorder.

    >>> leaf = {"id": 1, "parent": 0, "step": "x" * 60, "reward": 1, "V": 0.5}
    >>> policy_leaves([{"id": 0, "parent": None, "step": ""}, leaf]) == ["x" * 60]
    True
    """
    by_id, states = {node["id"]: node for node in nodes}, node_states(nodes)
    return [states[node] for node in preorder(nodes)
            if is_correct(by_id[node], correct_reward) and (by_id[node].get("V") or 0.0) >= value_threshold
            and len(states[node]) >= length_threshold]


# -- independent samples as one tree (round 0: the base policy's samples) -------------------------------------

def split_steps(text: str) -> list[str]:
    """A math solution's steps as the search proposes them (`mcts_star.parse_step`): its non-blank lines,
    right-stripped, each ending with a newline.

    >>> split_steps("3 * 4 = 12 \\n\\n14 + 12 = 26\\n#### 26")
    ['3 * 4 = 12\\n', '14 + 12 = 26\\n', '#### 26\\n']
    """
    return [line.rstrip() + "\n" for line in text.split("\n") if line.strip()]


def prefix_tree(samples: Sequence[tuple[str, float | None]]) -> list[dict]:
    """One tree of the `(solution, reward)` samples of a problem: shared leading steps are one node, and the
    node after a sample's last step is an end leaf carrying its reward (the highest, where two samples end
    there). Node ids are 0 (the root), 1, 2, ... in order of first appearance.

    >>> [(node["id"], node["parent"], node["step"], node["reward"])
    ...  for node in prefix_tree([("a\\nb", 1.0), ("a\\nc", 0.0)])]
    [(0, None, '', None), (1, 0, 'a\\n', None), (2, 1, 'b\\n', 1.0), (3, 1, 'c\\n', 0.0)]
    """
    nodes = [{"id": 0, "parent": None, "step": "", "depth": 0, "terminal": False, "reward": None}]
    child_ids: dict[tuple[int, str], int] = {}
    for text, reward in samples:
        node = 0
        for step in split_steps(text):
            if (node, step) not in child_ids:
                child_ids[(node, step)] = len(nodes)
                nodes.append({"id": len(nodes), "parent": node, "step": step, "depth": nodes[node]["depth"] + 1,
                              "terminal": False, "reward": None})
            node = child_ids[(node, step)]
        if node != 0 and reward is not None:
            leaf = nodes[node]
            leaf["terminal"] = True
            leaf["reward"] = reward if leaf["reward"] is None else max(leaf["reward"], reward)
    return nodes
