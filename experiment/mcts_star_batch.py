"""Many MCTS* trees searched at once (the tree itself: `experiment.mcts_star`), batched as the line MCTS is
(`experiment.mcts_batch`, whose `sample` makes every policy call): each round every active tree selects one leaf;
all the round's expansions go to the policy as one call (`branch` steps each) and all proposed steps to the value
model as one call; then each roll-forward step is one policy call and one value call across the trees still
rolling. A finished tree leaves the pool and the next problem enters. The same backend interface serves vLLM,
an API server and the hf engine.

    results = run_star_searches(problems, backend, StarConfig(domain="TinyMath", kind="math"),
                                make_prompt=lambda problem, state: format_prompt(problem, tokenizer, state=state),
                                score=value_model.score, evaluate=judge)
    results[0].record["star_tree"], results[0].answer, results[0].leaves

Modes (the authors' defaults on GSM8K; explicit settings win): `evaluate` (100 iterations, c 0.4, roll-forward 2,
end_gate 0.9, inf 0.8) stops a tree when its selection reaches a node at V >= end_gate; `generate` (40, 0.5, 1,
0.8, 0.9) keeps searching past it, such nodes staying unexpanded leaves. alpha 0.5 and temperature 0.7 in both.

A trace record: {id, prompt, init_state, test, algorithm: "star", mode, star_tree [{id, parent, step, depth, V,
visits, terminal, gives_answer, reward}], answer, answer_node, answer_value, stopped_at_gate, iterations,
expansions, samples, token_usage {prompt, completion}}. A node's state is init_state followed by the steps from
the root; `reward` (0/1 from `evaluate`, the verifier) is set on every answer-giving leaf, null elsewhere (null on all
nodes when no `evaluate` is given).
"""
from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

from data.records import Problem
from experiment.common import problem_seed
from experiment.mcts_batch import sample
from experiment.mcts_star import (
    StarNode,
    add_children,
    answer_leaves,
    backup,
    best_child,
    best_leaf,
    mark_terminal,
    parse_step,
    roll_update,
    select,
    tree_record,
)

MODES = {"evaluate": {"iteration_limit": 100, "exploration_constant": 0.4, "roll_forward_steps": 2,
                      "end_gate": 0.9, "inf": 0.8},
         "generate": {"iteration_limit": 40, "exploration_constant": 0.5, "roll_forward_steps": 1,
                      "end_gate": 0.8, "inf": 0.9}}
SETTLE_PER_ROUND = 64  # terminal selections one tree may settle in one round (an exhausted tree cannot stall)


@dataclass
class StarConfig:
    domain: str
    kind: str = "math"  # the benchmark's kind: math (a `####` line answers) or code (an empty step ends it)
    mode: str = "evaluate"  # evaluate: stop at a selected node with V >= end_gate; generate: search on
    branch: int = 3  # steps proposed per expansion (and per roll-forward step)
    exploration_constant: float = 0.4  # c in UCT
    roll_forward_steps: int = 2
    end_gate: float = 0.9
    inf: float = 0.8  # the UCT bonus of an unvisited child
    alpha: float = 0.5  # weight of the roll's best value in the rolled child's V
    iteration_limit: int | None = 100  # selections per tree; 0 or None: no limit
    time_limit: float | None = None  # seconds per tree; None: no limit
    max_depth: int = 16  # steps from the root: a node this deep is terminal
    temperature: float = 0.7
    max_tokens: int = 256  # tokens of one step
    stop: list[str] | None = None  # the domain's stop strings; a newline ends every step besides
    max_active: int = 16  # trees searched at once
    seed: int = 0
    seed_per_prompt: bool = True

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not self.iteration_limit and self.time_limit is None:
            raise ValueError("no budget: give an iteration limit or a time limit")
        if min(self.branch, self.max_active, self.max_depth) < 1 or self.roll_forward_steps < 0:
            raise ValueError("branch, max_active and max_depth must be at least 1, roll_forward_steps at least 0")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")


def add_star_args(parser: argparse.ArgumentParser, mode: str) -> None:
    """The MCTS* flags (sample_mcts --algorithm star, eval --method MCTS_STAR); `--iteration_limit` and
    `--exploration_constant` come from `add_search_args` with their defaults set to None, and with
    `--roll_forward_steps`, `--end_gate` and `--inf` take the mode's value unless given (`fill_mode_settings`)."""
    group = parser.add_argument_group("MCTS* (ReST-MCTS*)")
    group.add_argument("--mode", default=mode, choices=tuple(MODES),
                       help="the authors' default set: evaluate (iterations 100, c 0.4, roll-forward 2, end_gate 0.9, "
                            "inf 0.8; stops at the gate) or generate (40, 0.5, 1, 0.8, 0.9; searches on)")
    group.add_argument("--branch", type=int, default=3, help="steps proposed per expansion and per roll-forward step")
    group.add_argument("--roll_forward_steps", type=int, default=None, help="greedy steps of the simulation")
    group.add_argument("--end_gate", type=float, default=None, help="a node at V >= end_gate ends its branch")
    group.add_argument("--inf", type=float, default=None, help="UCT bonus of an unvisited child (its prior)")
    group.add_argument("--alpha", type=float, default=0.5, help="V <- (1 - alpha) V + alpha * best V of the roll")
    group.add_argument("--max_depth", type=int, default=16, help="steps from the root at which a branch ends")
    parser.set_defaults(iteration_limit=None, exploration_constant=None)


def fill_mode_settings(args: argparse.Namespace) -> None:
    """Every mode setting left None takes the value of `args.mode`."""
    for name, value in MODES[args.mode].items():
        if getattr(args, name) is None:
            setattr(args, name, value)


@dataclass
class StarSearch:
    """One problem's tree and its bookkeeping."""

    problem: Problem
    root: StarNode
    rng: random.Random
    started: float = field(default_factory=time.monotonic)
    iterations: int = 0
    expansions: int = 0
    next_id: int = 1
    samples: int = 0  # policy samples drawn (expansions and rolls)
    stopped_at: StarNode | None = None  # evaluate mode: the node at the gate that ended the search
    token_usage: Counter = field(default_factory=Counter)

    def budget_left(self, config: StarConfig) -> bool:
        if self.stopped_at is not None or config.iteration_limit and self.iterations >= config.iteration_limit:
            return False
        return config.time_limit is None or time.monotonic() - self.started < config.time_limit

    def full_state(self, state: str) -> str:
        return self.problem.init_state + state


@dataclass
class StarResult:
    problem: Problem
    record: dict  # the trace record (module docstring)
    answer: str  # the answer-giving leaf of highest V, as a whole completion
    leaves: list[tuple[str, float]]  # every answer-giving leaf: (completion, V), for value-weighted votes
    token_usage: dict


@dataclass
class Roll:
    """A request to the policy: an expansion of `node`, or one tree's roll forward from `state`."""

    search: StarSearch
    node: StarNode
    state: str
    salt: str
    best: float | None = None  # the largest value the roll has seen
    proposals: list[tuple[str, bool]] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


def choose_leaf(search: StarSearch, config: StarConfig) -> StarNode | None:
    """This round's node to expand, or None. A selected terminal node takes one visit (backed up); in
    evaluate mode one at V >= end_gate ends the search instead."""
    for _ in range(SETTLE_PER_ROUND):
        if not search.budget_left(config):
            return None
        node = select(search.root, config.exploration_constant, config.inf, search.rng)
        search.iterations += 1
        if not node.terminal:
            return node
        if config.mode == "evaluate" and node.value >= config.end_gate:
            search.stopped_at = node
            return None
        backup(node)
    return None


def propose(policy, score, requests: list[Roll], config: StarConfig, make_prompt, round_tag: str,
            stats: Counter) -> None:
    """One policy call (`branch` samples per request) and one value call for all proposed steps; fills each
    request's distinct proposals and their values."""
    if not requests:
        return
    prompts = [make_prompt(r.search.problem, r.search.full_state(r.state)) for r in requests]
    texts = sample(policy, requests, prompts, [r.salt for r in requests], config.branch, config.max_tokens,
                   [*(config.stop or []), "\n"], config, round_tag, stats)
    for request, samples in zip(requests, texts):
        request.search.samples += len(samples)
        parsed = [parse_step(config.kind, text) for text in samples]
        request.proposals = list(dict.fromkeys(step for step in parsed if step is not None))
    pairs = [(r.search.problem.prompt, r.search.full_state(r.state + step))
             for r in requests for step, _ in r.proposals]
    flat = [float(value) for value in score([q for q, _ in pairs], [s for _, s in pairs])] if pairs else []
    stats["values"] += len(flat)
    start = 0
    for request in requests:
        request.values = flat[start:start + len(request.proposals)]
        start += len(request.proposals)


def roll_forward(policy, score, rolls: list[Roll], config: StarConfig, make_prompt, round_index: int,
                 stats: Counter) -> None:
    """Greedy rolls by value, all trees' step k in one call: each roll takes its proposal of largest value,
    keeping the largest value seen, until `roll_forward_steps`, an answer, no proposal, or max_depth."""
    active = [roll for roll in rolls if not roll.node.gives_answer]
    depth = {id(roll): roll.node.depth for roll in active}
    for step_index in range(config.roll_forward_steps):
        active = [roll for roll in active if depth[id(roll)] < config.max_depth]
        for roll in active:
            roll.salt = f"roll-{roll.search.iterations}-{step_index}"
        propose(policy, score, active, config, make_prompt, f"round-{round_index}-roll-{step_index}", stats)
        still = []
        for roll in active:
            if not roll.proposals:
                continue
            index = max(range(len(roll.values)), key=roll.values.__getitem__)
            (step, gives_answer), value = roll.proposals[index], roll.values[index]
            roll.best = value if roll.best is None else max(roll.best, value)
            roll.state += step
            depth[id(roll)] += 1
            if not gives_answer:
                still.append(roll)
        active = still


def expand_round(searches: list[StarSearch], policy, score, config: StarConfig, make_prompt, round_index: int,
                 stats: Counter) -> None:
    """One round: each tree's leaf expanded (one policy and one value call), the best new child of each rolled
    forward, then the roll's update and the backup."""
    expansions = [Roll(search, node, node.state, f"expand-{search.iterations}")
                  for search in searches if (node := choose_leaf(search, config)) is not None]
    propose(policy, score, expansions, config, make_prompt, f"round-{round_index}", stats)
    rolls = []
    for request in expansions:
        search, node = request.search, request.node
        created = add_children(node, request.proposals, request.values, search.next_id, config.end_gate,
                               config.max_depth)
        search.next_id += len(created)
        search.expansions += 1
        stats["expansions"] += 1
        if node.children:
            child = best_child(node, config.exploration_constant, config.inf, search.rng)
            rolls.append(Roll(search, child, child.state, ""))
    roll_forward(policy, score, rolls, config, make_prompt, round_index, stats)
    for roll in rolls:
        roll_update(roll.node, roll.best, config.alpha)
        mark_terminal(roll.node, config.end_gate, config.max_depth)
    for request in expansions:
        backup(request.node)


def judge_leaves(searches: list[StarSearch], evaluate) -> None:
    """Store the verifier's reward on every answer-giving leaf of the finished trees, in one call."""
    groups = [(search, answer_leaves(search.root)) for search in searches]
    groups = [(search, leaves) for search, leaves in groups if leaves]
    if evaluate is None or not groups:
        return
    rewards = evaluate([(search.problem, [search.full_state(leaf.state) for leaf in leaves])
                        for search, leaves in groups])
    for (_, leaves), values in zip(groups, rewards, strict=True):
        for leaf, reward in zip(leaves, values, strict=True):
            leaf.reward = float(reward)


def star_result(search: StarSearch, config: StarConfig) -> StarResult:
    problem, best = search.problem, best_leaf(search.root)
    usage = {"prompt": search.token_usage["prompt"], "completion": search.token_usage["completion"]}
    record = {"id": problem.id, "prompt": problem.prompt, "init_state": problem.init_state, "test": problem.test,
              "algorithm": "star", "mode": config.mode, "star_tree": tree_record(search.root),
              "answer": search.full_state(best.state), "answer_node": best.id, "answer_value": best.value,
              "stopped_at_gate": search.stopped_at is not None, "iterations": search.iterations,
              "expansions": search.expansions, "samples": search.samples, "token_usage": usage}
    leaves = [(search.full_state(leaf.state), leaf.value) for leaf in answer_leaves(search.root)]
    return StarResult(problem, record, record["answer"], leaves, usage)


def run_star_searches(problems: Sequence[Problem], policy, config: StarConfig,
                      make_prompt: Callable[[Problem, str], str],
                      score: Callable[[list[str], list[str]], list[float]],
                      evaluate: Callable[[list[tuple[Problem, list[str]]]], list[list[float]]] | None = None,
                      on_done: Callable[[StarResult], None] | None = None,
                      stats: Counter | None = None) -> list[StarResult]:
    """Search every problem (`config.max_active` trees at a time); `on_done(result)` as each finishes.
    `policy.generate(prompts, n, temperature, max_tokens, stop, seed)` is any generation backend,
    `score(questions, states)` the value model, `evaluate(items=[(problem, completions)]) -> rewards` the
    verifier of answer-giving leaves (None: rewards stay null)."""
    stats = Counter() if stats is None else stats
    queue, active, results = list(problems), [], []
    round_index = 0
    while queue or active:
        while queue and len(active) < config.max_active:
            problem = queue.pop(0)
            active.append(StarSearch(problem, StarNode(0, ""), random.Random(problem_seed(config.seed, problem.id,
                                                                                          "uct"))))
        expand_round(active, policy, score, config, make_prompt, round_index, stats)
        round_index += 1
        done = [search for search in active if not search.budget_left(config) or search.root.terminal]
        judge_leaves(done, evaluate)
        for search in done:
            active.remove(search)
            result = star_result(search, config)
            results.append(result)
            if on_done is not None:
                on_done(result)
    return results
