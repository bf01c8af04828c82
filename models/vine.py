"""VinePPO's advantage estimator (Kazemnejad et al., 2024): Monte Carlo values of the states inside
each sampled solution, replacing PPO's critic.

A solution (its sampled token ids, never re-tokenized text) is cut into steps: a piece ends after a
token whose text holds a newline; a piece that is only whitespace joins the step after it (a trailing
one, the step before); the `#### X` answer line (math) joins the step before it. State j is the prompt
plus the first j steps. The values of states 0..min(n-1, max_value_steps) are the mean reward of K
rollouts from them (one cut by the length limit scores 0), identical prefixes estimated once; the
terminal state's value is 0 and a state past the cap takes V_j = r_j + V_{j+1}. With gamma 1 and the
reward r on the last step only, step j's advantage is A_j = r_j + V_{j+1} - V_j, and every token takes
the advantage of its step.

    ends = split_steps(completion_ids, piece_text, answer_prefix="####")
    result = vine_advantages(episodes, generate, score, mc_rollouts=9, max_value_steps=24, max_tokens=1024)
    result.token_advantages[i]           # one float per completion token of episode i

`generate(prefix_ids, n, budgets) -> [[Rollout] * n per prefix]` (budgets: the new tokens each prefix
may add) is an engine (`hf_rollouts` here, the trainer's vLLM in models/vine_trainer.py);
`score(owners, completions) -> rewards` judges finished rollouts, `owners[i]` being the episode whose
problem completion i answers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

ANSWER_PREFIX = "####"  # GSM8K's final-answer line


@dataclass
class Rollout:
    token_ids: list[int]  # the sampled continuation, end-of-sequence token excluded or not
    finished: bool  # ended by an end-of-sequence token (False: cut by the length limit)


@dataclass
class Episode:
    """One sampled solution: its prompt and completion token ids, its final reward (0 when cut by the
    length limit), its step ends (from split_steps) and the problem it answers (prefix keys include it)."""

    prompt_ids: list[int]
    completion_ids: list[int]
    reward: float
    ends: list[int]
    problem: str = ""


@dataclass
class VineResult:
    token_advantages: list[list[float]]
    values: list[list[float]]  # V_0..V_n per episode (V_n = 0)
    stats: dict[str, float] = field(default_factory=dict)


Generate = Callable[[list[list[int]], int, list[int]], list[list[Rollout]]]
Score = Callable[[list[int], list[list[int]]], list[float]]


def split_steps(token_ids: Sequence[int], piece_text: Callable[[int], str],
                answer_prefix: str | None = None) -> list[int]:
    """End offsets (exclusive, the last is len(token_ids)) of the steps of a completion.

    >>> text = {1: "a", 2: "\\n", 3: "b", 4: "####", 5: " 5", 6: ""}.__getitem__
    >>> split_steps([2, 1, 2, 3, 2, 4, 5, 6], text, "####")   # "\\na\\nb\\n#### 5<eos>"
    [3, 8]
    >>> split_steps([1, 2, 2, 3], text)                       # "a\\n\\nb": the blank line joins "b"
    [2, 4]
    """
    pieces, text = [], ""
    for index, token in enumerate(token_ids):
        piece = piece_text(token)
        text += piece
        if "\n" in piece:
            pieces.append((index + 1, text))
            text = ""
    if text or not pieces or pieces[-1][0] != len(token_ids):
        pieces.append((len(token_ids), text))
    ends: list[int] = []
    for end, text in pieces:
        if ends and answer_prefix and text.lstrip().startswith(answer_prefix):
            ends[-1] = end  # the answer line closes the last step
        elif text.strip():
            ends.append(end)  # whitespace pieces before it are part of this step
    if not ends:
        return [len(token_ids)] if token_ids else []
    ends[-1] = len(token_ids)  # trailing whitespace (and the end-of-sequence token) joins the last step
    return ends


def value_cuts(ends: Sequence[int], max_value_steps: int) -> list[int]:
    """Completion offsets of the states whose values are estimated: the prompt (0) and the prompt plus
    the first j steps for 1 <= j <= min(n - 1, max_value_steps).

    >>> value_cuts([2, 5, 9], 24), value_cuts([2, 5, 9], 1), value_cuts([9], 24)
    ([0, 2, 5], [0, 2], [0])
    """
    last = min(len(ends) - 1, max_value_steps)
    return [0] + list(ends[:max(0, last)])


def step_values(estimated: Sequence[float], steps: int, reward: float) -> list[float]:
    """V_0..V_steps: the estimated values first, V_steps = 0, and V_j = r_j + V_{j+1} for the states
    past the estimated ones (r_j = reward on the last step, else 0).

    >>> step_values([0.5, 0.25], 3, 1.0)
    [0.5, 0.25, 1.0, 0.0]
    """
    values = list(estimated) + [0.0] * (steps + 1 - len(estimated))
    for j in range(steps - 1, len(estimated) - 1, -1):
        values[j] = (reward if j == steps - 1 else 0.0) + values[j + 1]
    return values


def step_advantages(values: Sequence[float], reward: float) -> list[float]:
    """A_j = r_j + V_{j+1} - V_j (gamma 1, the reward on the last step).

    >>> step_advantages([0.5, 0.25, 0.75, 0.0], 1.0)
    [-0.25, 0.5, 0.25]
    """
    steps = len(values) - 1
    return [(reward if j == steps - 1 else 0.0) + values[j + 1] - values[j] for j in range(steps)]


def token_advantages(ends: Sequence[int], advantages: Sequence[float]) -> list[float]:
    """Each token takes the advantage of the step that holds it.

    >>> token_advantages([2, 3], [-0.5, 1.0])
    [-0.5, -0.5, 1.0]
    """
    result, start = [], 0
    for end, advantage in zip(ends, advantages):
        result += [advantage] * (end - start)
        start = end
    return result


def vine_advantages(episodes: Sequence[Episode], generate: Generate, score: Score, mc_rollouts: int,
                    max_value_steps: int, max_tokens: int) -> VineResult:
    """Token advantages of every episode, with all unique states of the batch rolled out in one call."""
    keys: dict[tuple, int] = {}  # (problem, prefix ids) -> index of the unique state
    prefixes, budgets, owners, cuts_of = [], [], [], []
    for index, episode in enumerate(episodes):
        cuts = value_cuts(episode.ends, max_value_steps)
        cuts_of.append(cuts)
        for cut in cuts:
            key = (episode.problem, tuple(episode.prompt_ids), tuple(episode.completion_ids[:cut]))
            if key not in keys:
                keys[key] = len(prefixes)
                prefixes.append((episode.prompt_ids, episode.completion_ids[:cut]))
                budgets.append(max_tokens - cut)
                owners.append(index)
    start = time.perf_counter()
    values, rollout_tokens = mc_values(prefixes, budgets, owners, generate, score, mc_rollouts)
    seconds = time.perf_counter() - start
    result = VineResult([], [])
    for episode, cuts in zip(episodes, cuts_of):
        estimated = [values[keys[(episode.problem, tuple(episode.prompt_ids), tuple(episode.completion_ids[:cut]))]]
                     for cut in cuts]
        episode_values = step_values(estimated, len(episode.ends), episode.reward)
        result.values.append(episode_values)
        advantages = step_advantages(episode_values, episode.reward)
        result.token_advantages.append(token_advantages(episode.ends, advantages))
    states = sum(len(cuts) for cuts in cuts_of)
    result.stats = {"states": states, "unique_states": len(prefixes), "rollout_tokens": rollout_tokens,
                    "rollout_seconds": seconds, "value_mean": sum(values) / max(1, len(values)),
                    "steps_mean": sum(len(e.ends) for e in episodes) / max(1, len(episodes))}
    return result


def mc_values(prefixes: Sequence[tuple[list[int], list[int]]], budgets: Sequence[int], owners: Sequence[int],
              generate: Generate, score: Score, mc_rollouts: int) -> tuple[list[float], int]:
    """(value of each state, rollout tokens drawn): the mean reward of `mc_rollouts` rollouts from
    prompt + completion prefix; a rollout longer than its budget, or cut by the limit, scores 0."""
    if not prefixes:
        return [], 0
    rows = generate([prompt + prefix for prompt, prefix in prefixes], mc_rollouts, list(budgets))
    judged_owners, completions, slots = [], [], []
    rewards = [[0.0] * mc_rollouts for _ in prefixes]
    tokens = 0
    for index, ((_, prefix), budget, rollouts) in enumerate(zip(prefixes, budgets, rows)):
        for sample, rollout in enumerate(rollouts):
            tokens += len(rollout.token_ids)
            if rollout.finished and len(rollout.token_ids) <= budget:
                judged_owners.append(owners[index])
                completions.append(list(prefix) + list(rollout.token_ids))
                slots.append((index, sample))
    for (index, sample), reward in zip(slots, score(judged_owners, completions) if completions else []):
        rewards[index][sample] = reward
    return [sum(row) / mc_rollouts for row in rewards], tokens


def hf_rollouts(model, tokenizer, eos_ids: set[int], temperature: float, top_p: float = 1.0, top_k: int = 0,
                batch_size: int = 256) -> Generate:
    """A Generate on a transformers model through models/decoding.py: each prefix is prefilled once and
    its n samples share its cache; prefixes go in chunks of about `batch_size` rows, similar budgets
    together, each chunk decoding to its largest budget (mc_values cuts each row at its own). Seeds come
    from torch's global generator."""
    import torch

    from models.decoding import decode, supports

    if not supports(model):
        raise ValueError("VinePPO rollouts on the hf engine need sdpa attention on full-attention layers; "
                         "use --use_vllm for this model")

    def generate(prefix_ids: list[list[int]], n: int, budgets: list[int]) -> list[list[Rollout]]:
        seeds = torch.randint(2**62, (len(prefix_ids),)).tolist()
        order = sorted(range(len(prefix_ids)), key=lambda i: -budgets[i])
        per_chunk = max(1, batch_size // n)
        results: list[list[Rollout] | None] = [None] * len(prefix_ids)
        for start in range(0, len(order), per_chunk):
            chunk = order[start:start + per_chunk]
            rows = decode(model, tokenizer, [prefix_ids[i] for i in chunk], n, [seeds[i] for i in chunk],
                          temperature, max(1, budgets[chunk[0]]), eos_ids, (), top_k, top_p)
            for index, samples in zip(chunk, rows):
                results[index] = [Rollout(row.token_ids, row.finish_reason == "stop") for row in samples]
        return results

    return generate
