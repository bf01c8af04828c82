"""Many MCTS trees searched at once (the tree itself: `experiment.mcts`). Every round, each active
tree selects up to `leaves_per_tree` leaves (in-flight expansions count as visits of reward 0:
virtual loss, so the next descent goes elsewhere); all expansions of all trees go to the policy as one
`generate` call, all new programs to the verifier (or reward model) as one call, then each tree backs
up. A finished tree leaves the pool and the next problem enters, so the engine keeps seeing batches.
With `cohorts=2` the trees take turns in two cohorts: one cohort's programs are judged (on a thread)
while the other cohort generates, so neither the engines nor the sandbox wait for the other; a tree's
search is the same in either cohort. With `max_active=1, leaves_per_tree=1` this is the sequential
search of the original, one problem and one node at a time.

    results = run_searches(problems, backend, SearchConfig(domain="TinyCode", iteration_limit=10),
                           make_prompt=lambda problem, state: format_prompt(problem, tokenizer, state=state),
                           evaluate=lambda items: [[v.reward for v in vs]
                                                    for vs in verify(sandbox, bench, items, hardened=True)])
    results[0].answer, results[0].record["rewards"], results[0].token_usage

Modes, as in the original: rm_type "none" (training: rollouts scored by `evaluate(items=[(problem, programs)]) ->
rewards`), "orm" (rollouts scored by `score(questions, programs) -> values` instead), "prm" (VM-MCTS:
`score(questions, states)` values every new child; pruning by value; no rollouts; completions are
scored only to pick the answer). The answer is the best-scored program in the tree.

Thought mode (`use_thought`, the original's --use_thought): an expansion is two batched calls, the
round's thoughts (`num_sample` per leaf, `max_thought_tokens`, `stop_think`) and then one action per
thought; the child a sample creates keeps its thought (`tree[].thought`).

Monte-Carlo value targets (`mc_rollouts=K`, VinePPO's estimator): when a tree's search ends, K
rollouts are sampled from every line prefix of its programs (the prefixes' states, short of the whole
program) and the mean reward is recorded as `mc_rewards` [{state, reward, rollouts, rewards}].

Seeds. With `seed_per_prompt` (every backend that batches per-prompt seeds: vllm, api, and hf with
its decoding loop) each request draws with a seed of the run seed, the problem and the iteration: a
problem's tree does not depend on which problems share its batches, so shards and resumed runs repeat
an unsharded run (up to the engine's batch numerics). A backend that samples prompt by prompt under
per-prompt seeds (hf on a model its loop cannot run) gets, without `seed_per_prompt`, one int seed per
batched call from the run seed and the round number: a run repeats itself exactly, but a problem's
samples depend on the batch it ran in (a sharded, resumed, or differently batched run draws other,
equally valid, samples).
"""
from __future__ import annotations

import logging
import random
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from data.records import Problem
from experiment.common import problem_seed
from experiment.mcts import (
    Node,
    add_virtual,
    all_completions,
    backup,
    best_program,
    children_totals,
    expand,
    line_prefixes,
    process_rewards,
    record_completion_rewards,
    rollout_totals,
    select,
    split_sample,
    tree_record,
)

logger = logging.getLogger(__name__)
RM_TYPES = ("none", "prm", "orm")
# --use_thought: (think(problem, state) -> prompt, act(problem, state, thought) -> prompt)
ThoughtPrompts = tuple[Callable[[Problem, str], str], Callable[[Problem, str, str], str]]
SETTLE_PER_ROUND = 64  # terminal selections one tree may settle in one round


@dataclass
class SearchConfig:
    domain: str
    num_sample: int = 5  # completions sampled per expansion
    num_decision: int = 3  # visible children kept per expanded node
    exploration_constant: float = 0.2  # c in UCT
    eps: float = 0.1  # added to the child's visits in the UCT denominator
    iteration_limit: int | None = 100  # selections per tree; 0 or None: no limit
    time_limit: float | None = None  # seconds per tree from its start; None: no limit
    temperature: float = 0.7
    max_tokens: int = 1024
    stop: list[str] | None = None
    rm_type: str = "none"  # none (verifier rollouts), prm (value model at every child), orm (scored rollouts)
    leaves_per_tree: int = 1  # expansions of one tree in flight at once (virtual loss)
    max_active: int = 16  # trees searched at once
    cohorts: int = 1  # groups of trees taking turns: one generates while another's programs are judged
    mc_rollouts: int = 0  # > 0: Monte-Carlo value targets with this many rollouts per line prefix
    use_thought: bool = False  # two-stage expansion: num_sample thoughts, then one action per thought
    max_thought_tokens: int = 128
    stop_think: list[str] | None = None
    seed: int = 0
    seed_per_prompt: bool = True

    def __post_init__(self):
        if self.rm_type not in RM_TYPES:
            raise ValueError(f"rm_type must be one of {', '.join(RM_TYPES)}, got {self.rm_type!r}")
        if not self.iteration_limit and self.time_limit is None:
            raise ValueError("no budget: give an iteration limit or a time limit")
        if min(self.num_sample, self.num_decision, self.leaves_per_tree, self.max_active, self.cohorts) < 1:
            raise ValueError("num_sample, num_decision, leaves_per_tree, max_active and cohorts must be at least 1")


@dataclass
class Search:
    """One problem's tree and its bookkeeping."""

    problem: Problem
    root: Node
    rng: random.Random
    started: float = field(default_factory=time.monotonic)
    iterations: int = 0
    expansions: int = 0
    scores: dict[str, float] = field(default_factory=dict)  # program -> reward: nothing is scored twice
    token_usage: Counter = field(default_factory=Counter)
    mc_rewards: list[dict] | None = None

    def budget_left(self, config: SearchConfig) -> bool:
        if config.iteration_limit and self.iterations >= config.iteration_limit:
            return False
        return config.time_limit is None or time.monotonic() - self.started < config.time_limit


@dataclass
class SearchResult:
    problem: Problem
    record: dict  # the MCTS trace (ARCHITECTURE.md)
    answer: str  # the best-scored program
    token_usage: dict


@dataclass
class Request:
    """One generation request: an expansion of `node`, or Monte-Carlo rollouts from `state`."""

    search: Search
    state: str
    salt: str
    node: Node | None = None
    entry: dict | None = None  # the `mc_rewards` entry rollouts fill
    samples: list[str] = field(default_factory=list)
    thoughts: list[str] | None = None  # use_thought: the thought behind each sample
    programs: list[str] = field(default_factory=list)


def new_search(problem: Problem, config: SearchConfig) -> Search:
    return Search(problem, Node(problem.init_state), random.Random(problem_seed(config.seed, problem.id, "uct")))


def select_leaves(search: Search, config: SearchConfig) -> list[Node]:
    """This round's leaves to expand; selected terminal nodes are settled on the spot (one visit at
    their program's reward: the first from the score their parent's rollout stored, later ones
    re-adding their value). Stops at the budget, at `leaves_per_tree`, or on reaching a leaf whose
    expansion is in flight."""
    leaves: list[Node] = []
    settled = 0
    # a tree whose visible leaves are all terminal would settle them until its time runs out and stall
    # the other trees: it settles at most SETTLE_PER_ROUND of them per round
    while len(leaves) < config.leaves_per_tree and settled < SETTLE_PER_ROUND and search.budget_left(config):
        node = select(search.root, config.exploration_constant, config.eps, search.rng)
        if node.pending:
            break
        search.iterations += 1
        if node.terminal:
            backup(node, 1, node.value if node.visits else search.scores[node.state])
            settled += 1
            continue
        node.pending = True
        add_virtual(node, 1)
        leaves.append(node)
    return leaves


def mc_requests(search: Search) -> list[Request]:
    """Rollout requests from every distinct line prefix of the tree's programs."""
    states = dict.fromkeys(state for entry in all_completions(search.root)
                           for state in line_prefixes(entry["completion"], search.problem.init_state))
    search.mc_rewards = [{"state": state, "reward": None} for state in states]
    return [Request(search, entry["state"], f"mc-{index}", entry=entry)
            for index, entry in enumerate(search.mc_rewards)]


# -- one round -------------------------------------------------------------------------------------------

def sample(policy, requests: list[Request], prompts: list[str], salts: list[str], n: int, max_tokens: int,
           stop: list[str] | None, config: SearchConfig, round_tag: str, stats: Counter) -> list[list[str]]:
    """One policy call: `n` texts for each prompt (`requests[i]` asked `prompts[i]`), token counts charged to
    the requests' trees. Per-prompt seeds come from the problem and `salts[i]`; otherwise one seed from the
    round (`round_tag`)."""
    seed = [problem_seed(config.seed, request.search.problem.id, salt) for request, salt in zip(requests, salts)] \
        if config.seed_per_prompt else problem_seed(config.seed, round_tag, str(n))
    outputs = policy.generate(prompts, n=n, temperature=config.temperature, max_tokens=max_tokens, stop=stop,
                              seed=seed)
    stats["policy_calls"] += 1
    stats["prompts"] += len(prompts)
    texts = []
    for request, output in zip(requests, outputs, strict=True):
        texts.append([generation.text for generation in output.generations])
        tokens = sum(generation.completion_tokens for generation in output.generations)
        request.search.token_usage["prompt"] += output.prompt_tokens * n
        request.search.token_usage["completion"] += tokens
        stats["generated_tokens"] += tokens
    return texts


def generate(policy, requests: list[Request], n: int, config: SearchConfig, make_prompt, round_index: int,
             stats: Counter) -> None:
    """Sample `n` continuations for every request in one call; store raw samples and token counts."""
    if not requests:
        return
    prompts = [make_prompt(request.search.problem, request.state) for request in requests]
    texts = sample(policy, requests, prompts, [request.salt for request in requests], n, config.max_tokens,
                   config.stop, config, f"round-{round_index}", stats)
    for request, samples in zip(requests, texts):
        request.samples = samples


def generate_with_thoughts(policy, requests: list[Request], config: SearchConfig, make_think_prompt,
                           make_act_prompt, round_index: int, stats: Counter) -> None:
    """The two-stage expansion (--use_thought, the original's): `num_sample` thoughts per request in one
    call (`max_thought_tokens`, `stop_think`), then one action per thought, all requests' thoughts in one
    second call (`max_tokens`, `stop`)."""
    if not requests:
        return
    prompts = [make_think_prompt(request.search.problem, request.state) for request in requests]
    thoughts = sample(policy, requests, prompts, [request.salt + "-think" for request in requests],
                      config.num_sample, config.max_thought_tokens, config.stop_think, config,
                      f"round-{round_index}-think", stats)
    asked = [(request, index, thought) for request, texts in zip(requests, thoughts)
             for index, thought in enumerate(texts)]
    actions = sample(policy, [request for request, _, _ in asked],
                     [make_act_prompt(request.search.problem, request.state, thought) for request, _, thought in asked],
                     [f"{request.salt}-act-{index}" for request, index, _ in asked], 1, config.max_tokens,
                     config.stop, config, f"round-{round_index}-act", stats)
    for request, texts in zip(requests, thoughts):
        request.thoughts, request.samples = texts, []
    for (request, _, _), action in zip(asked, actions):
        request.samples.extend(action)


def programs_to_score(requests: list[Request]) -> list[tuple[Search, list[str]]]:
    """Per tree, the programs its requests produced that it has not scored yet, each once."""
    wanted: dict[int, tuple[Search, list[str]]] = {}
    for request in requests:
        search = request.search
        _, programs = wanted.setdefault(id(search), (search, []))
        for program in request.programs:
            if program not in search.scores and program not in programs:
                programs.append(program)
    return [group for group in wanted.values() if group[1]]


def score_groups(groups: list[tuple[Search, list[str]]], config: SearchConfig, evaluate, score) -> list[list[float]]:
    """The rewards of every group's programs, in one call: the verifier (rm_type none) or the reward model.
    Reads nothing a tree changes, so it may run on a thread while other trees generate."""
    if not groups:
        return []
    if config.rm_type == "none":
        return evaluate([(search.problem, programs) for search, programs in groups])
    flat = score([search.problem.prompt for search, programs in groups for _ in programs],
                 [program for _, programs in groups for program in programs])
    rewards, start = [], 0
    for _, programs in groups:
        rewards.append(flat[start:start + len(programs)])
        start += len(programs)
    return rewards


def child_values(requests: list[Request], config: SearchConfig, score) -> list[dict[str, float] | None]:
    """prm mode: the value model's score of every child state the expansions propose, in one call."""
    if config.rm_type != "prm":
        return [None] * len(requests)
    wanted = [dict.fromkeys(request.node.state + split_sample(config.domain, request.node.state, sample)[0]
                            for sample in request.samples) for request in requests]
    flat = score([request.search.problem.prompt for request, states in zip(requests, wanted) for _ in states],
                 [state for states in wanted for state in states])
    values, start = [], 0
    for states in wanted:
        values.append(dict(zip(states, (float(value) for value in flat[start:start + len(states)]))))
        start += len(states)
    return values


def start_round(searches: list[Search], policy, config: SearchConfig, make_prompt, round_index: int,
                stats: Counter, thought_prompts: ThoughtPrompts | None = None) -> tuple[list[Request], list[Request]]:
    """A round's first half: each tree's leaves (and, for trees done searching, Monte-Carlo rollouts),
    sampled in one policy call (two with thoughts); returns (expansions, rollouts) with their programs."""
    expansions = [Request(search, node.state, f"expand-{search.iterations}-{index}", node)
                  for search in searches if search.mc_rewards is None
                  for index, node in enumerate(select_leaves(search, config))]
    rollouts = [request for search in searches
                if search.mc_rewards is None and config.mc_rollouts and not search.budget_left(config)
                and not any(r.search is search for r in expansions) for request in mc_requests(search)]
    if config.use_thought:
        generate_with_thoughts(policy, expansions, config, *thought_prompts, round_index, stats)
    else:
        generate(policy, expansions, config.num_sample, config, make_prompt, round_index, stats)
    generate(policy, rollouts, config.mc_rollouts, config, make_prompt, round_index, stats)
    for request in expansions + rollouts:
        request.programs = [split_sample(config.domain, request.state, sample)[2] for sample in request.samples]
    return expansions, rollouts


@dataclass
class Round:
    """One cohort's round between its generation and its backup; `judged` will hold (child values, rewards
    of `groups`)."""

    expansions: list[Request]
    rollouts: list[Request]
    groups: list[tuple[Search, list[str]]]
    judged: Future


def judge(expansions: list[Request], groups, config: SearchConfig, evaluate, score):
    """A round's scoring (the sandbox or the reward model): (child values, rewards of `groups`)."""
    return child_values(expansions, config, score), score_groups(groups, config, evaluate, score)


def finish_round(round_: Round, config: SearchConfig, stats: Counter) -> None:
    """A round's second half, once it is judged: scores stored, nodes expanded and backed up, rollouts recorded."""
    values, rewards = round_.judged.result()
    for (search, programs), group_rewards in zip(round_.groups, rewards, strict=True):
        search.scores.update(zip(programs, (float(value) for value in group_rewards), strict=True))
        stats["programs_scored"] += len(programs)
    for request, value in zip(round_.expansions, values):
        node, search = request.node, request.search
        expand(node, request.samples, config.domain, config.num_decision, value, request.thoughts)
        record_completion_rewards(node, search.scores)
        node.pending = False
        add_virtual(node, -1)
        backup(node, *(children_totals(node) if config.rm_type == "prm" else rollout_totals(node)))
        search.expansions += 1
        stats["expansions"] += 1
    for request in round_.rollouts:
        rewards_ = [request.search.scores[program] for program in request.programs]
        request.entry.update(reward=sum(rewards_) / len(rewards_), rollouts=len(rewards_), rewards=rewards_)


def finished(search: Search, config: SearchConfig) -> bool:
    """Out of budget (a round completes every expansion it starts) and, with Monte-Carlo targets,
    with its rollouts done."""
    if search.budget_left(config):
        return False
    return not config.mc_rollouts or (search.mc_rewards is not None
                                      and all(entry["reward"] is not None for entry in search.mc_rewards))


def trace_record(search: Search) -> dict:
    problem = search.problem
    record = {"id": problem.id, "prompt": problem.prompt, "init_state": problem.init_state, "test": problem.test,
              "completions": all_completions(search.root), "rewards": process_rewards(search.root),
              "tree": tree_record(search.root),
              "token_usage": {"prompt": search.token_usage["prompt"],
                              "completion": search.token_usage["completion"]},
              "iterations": search.iterations, "expansions": search.expansions,
              "answer": best_program(search.root)}
    if search.mc_rewards is not None:
        record["mc_rewards"] = search.mc_rewards
    return record


def run_searches(problems: Sequence[Problem], policy, config: SearchConfig,
                 make_prompt: Callable[[Problem, str], str],
                 evaluate: Callable[[list[tuple[Problem, list[str]]]], list[list[float]]] | None = None,
                 score: Callable[[list[str], list[str]], list[float]] | None = None,
                 on_done: Callable[[SearchResult], None] | None = None,
                 stats: Counter | None = None,
                 thought_prompts: ThoughtPrompts | None = None) -> list[SearchResult]:
    """Search every problem (`config.max_active` at a time); `on_done(result)` as each finishes.
    `policy.generate(prompts, n, temperature, max_tokens, stop, seed)` is any generation backend;
    `evaluate` scores rollouts in rm_type "none", `score(questions, states)` in "prm" and "orm".
    With `config.use_thought`, `thought_prompts` = (think(problem, state), act(problem, state, thought))
    build the two prompts of an expansion; `make_prompt` still serves Monte-Carlo rollouts. With
    `config.cohorts` > 1, `evaluate` and `score` run on a background thread, one call at a time."""
    if config.rm_type == "none" and evaluate is None or config.rm_type != "none" and score is None:
        raise ValueError(f"rm_type {config.rm_type!r} needs " + ("evaluate" if config.rm_type == "none" else "score"))
    if config.use_thought and thought_prompts is None:
        raise ValueError("use_thought needs thought_prompts (the think and act prompt builders)")
    stats = Counter() if stats is None else stats
    queue, results = list(problems), []
    cohorts: list[list[Search]] = [[] for _ in range(config.cohorts)]
    capacities = [len(range(index, config.max_active, config.cohorts)) for index in range(config.cohorts)]
    for index in range(min(len(queue), config.max_active)):  # the first trees are dealt round the cohorts
        cohorts[index % config.cohorts].append(new_search(queue.pop(0), config))

    def settle(index: int, round_: Round) -> None:
        finish_round(round_, config, stats)
        for search in [search for search in cohorts[index] if finished(search, config)]:
            cohorts[index].remove(search)
            record = trace_record(search)
            result = SearchResult(search.problem, record, record["answer"], record["token_usage"])
            results.append(result)
            if on_done is not None:
                on_done(result)

    # a cohort generates while the previous cohort's programs are judged; the order of calls and of what
    # each holds is fixed (never timing-dependent), and with one cohort a round ends before the next starts
    pending: tuple[int, Round] | None = None
    round_index = 0
    with _judging(config.cohorts) as submit:
        while queue or any(cohorts):
            for index, cohort in enumerate(cohorts):
                if pending is not None and pending[0] == index:
                    settle(*pending)
                    pending = None
                while queue and len(cohort) < capacities[index]:
                    cohort.append(new_search(queue.pop(0), config))
                if not cohort:
                    continue
                expansions, rollouts = start_round(cohort, policy, config, make_prompt, round_index, stats,
                                                   thought_prompts)
                round_index += 1
                groups = programs_to_score(expansions + rollouts)
                judged = submit(judge, expansions, groups, config, evaluate, score)
                if pending is not None:
                    settle(*pending)
                pending = (index, Round(expansions, rollouts, groups, judged))
        if pending is not None:
            settle(*pending)
    return results


@contextmanager
def _judging(cohorts: int) -> Iterator[Callable[..., Future]]:
    """`submit(function, *args) -> Future`: on one background thread with several cohorts, else at once."""
    if cohorts > 1:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge") as thread:
            yield thread.submit
        return

    def now(function, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(function(*args))
        except Exception as exc:
            future.set_exception(exc)
        return future

    yield now
