"""The hf engine's sampling loop: many prompts x n samples decoded as one batch, each row drawing its
tokens from its own seeded generator, so a prompt's samples do not depend on what else is in the batch
(sharded, resumed and differently batched runs draw the same samples, up to float rounding of the
batched matrix products, which flips a token only at an exact tie of the sampler's threshold).

    rows = decode(model, tokenizer, prompt_ids=[[1, 2, 3], [4, 5]], n=2, seeds=[11, 12], temperature=0.7,
                  max_tokens=64, eos_ids={0}, stop=["```"])
    rows[0][1].token_ids, rows[0][1].finish_reason     # prompt 0, sample 1 (seed 11 + 1)

Why not `model.generate`: on CPU a tiny model spends its time in per-step overhead, so it pays only
with large batches, and `generate` can batch neither per-prompt seeds nor rows that finish early, and
its default cache copies the whole cache at every step (torch.cat). Here the prompts are prefilled
once (their n samples share the prompt's cache), the cache is written in place, finished rows leave
the batch, stop strings are checked incrementally by transformers' `StopStringCriteria` (the check
`generate(stop_strings=...)` uses), and sampling uses exactly the options given (temperature, top_k,
top_p): nothing is inherited from the checkpoint's generation_config.json.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

import torch
from transformers.cache_utils import Cache, DynamicLayer

COMPACT_BELOW = 0.75  # drop finished rows once fewer than this fraction of the batch is still running
FIRST_CAPACITY = 64  # new tokens the cache holds before it first doubles
ATTENTION = "rest_rl_decode"  # our attention function's name in transformers' AttentionInterface


@dataclass
class Row:
    token_ids: list[int]  # the sampled tokens, end-of-sequence token excluded
    finish_reason: str  # "stop" (a stop string or end of sequence) or "length"


class PreallocatedLayer(DynamicLayer):
    """A layer cache written in place (the default DynamicLayer concatenates, copying the whole cache
    every step): its buffer starts at `capacity` tokens (at most `limit`) and doubles when full, so
    memory follows the longest row, not max_tokens; dropping rows selects them."""

    def __init__(self, capacity: int, limit: int | None = None):
        super().__init__()
        self.capacity, self.limit, self.length = capacity, limit or capacity, 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        batch, heads, _, key_dim = key_states.shape
        self.key_buffer = key_states.new_zeros(batch, heads, self.capacity, key_dim)
        self.value_buffer = value_states.new_zeros(batch, heads, self.capacity, value_states.shape[-1])
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            if end > self.limit:
                raise ValueError(f"cache holds {self.limit} tokens, {end} given")
            self.capacity = min(self.limit, max(end, 2 * self.capacity))
            self.key_buffer = _copy_rows(self.key_buffer, None, self.length, self.capacity)
            self.value_buffer = _copy_rows(self.value_buffer, None, self.length, self.capacity)
        self.key_buffer[:, :, self.length:end] = key_states
        self.value_buffer[:, :, self.length:end] = value_states
        self.length = end
        self._views()
        return self.keys, self.values

    def _views(self) -> None:
        self.keys = self.key_buffer[:, :, :self.length]
        self.values = self.value_buffer[:, :, :self.length]

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self.key_buffer = _copy_rows(self.key_buffer, indices, self.length, self.capacity)
            self.value_buffer = _copy_rows(self.value_buffer, indices, self.length, self.capacity)
            self._views()


def _copy_rows(buffer: torch.Tensor, rows: torch.Tensor | None, length: int, capacity: int) -> torch.Tensor:
    """A new [rows, heads, capacity, dim] buffer holding the first `length` positions of `buffer`'s
    `rows` (all when None); the rest is written before it is read."""
    count = len(buffer) if rows is None else len(rows)
    copied = buffer.new_empty(count, buffer.shape[1], capacity, buffer.shape[3])
    copied[:, :, :length] = buffer[:, :, :length] if rows is None else buffer[rows, :, :length]
    return copied


@dataclass
class SharedPrefix:
    """The prompts' keys and values (per layer [prompts, kv_heads, width, dim], left-padded), read once
    per prompt by all its rows: row r is sample `slots[r] % n` of prompt `slots[r] // n`."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor  # [prompts, width], True on prompt tokens
    slots: torch.Tensor  # [rows]
    n: int

    def keep(self, prompts: torch.Tensor) -> None:
        """Keep only these prompts (sorted indices), renumbering the rows' slots."""
        renumber = torch.full((len(self.mask),), -1, dtype=torch.long, device=self.mask.device)
        renumber[prompts] = torch.arange(len(prompts), device=self.mask.device)
        self.slots = renumber[self.slots // self.n] * self.n + self.slots % self.n
        self.keys = [keys[prompts] for keys in self.keys]
        self.values = [values[prompts] for values in self.values]
        self.mask = self.mask[prompts]


def decode_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                     shared_prefix: SharedPrefix | None = None, **kwargs):
    """transformers' sdpa attention, except while decoding (one new token per row, `shared_prefix`
    given): each row attends to its prompt's keys, shared by the prompt's n rows and read once for
    all of them (one matrix product per prompt), and to its own new tokens (`key`, `value`: the
    rows' cache of new tokens, all attended); one softmax over both, as if they were one sequence."""
    if shared_prefix is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    rows, heads, _, dim = query.shape
    prefix_keys, prefix_values = shared_prefix.keys[module.layer_idx], shared_prefix.values[module.layer_idx]
    prompts, kv_heads, width, _ = prefix_keys.shape
    group, n = heads // kv_heads, shared_prefix.n
    scale = dim ** -0.5 if scaling is None else scaling
    grouped = query.view(rows, kv_heads, group, dim)
    # the rows' queries in a [prompts x n] grid of slots (a finished row's slot stays empty)
    slots = query.new_zeros(prompts * n, kv_heads, group, dim)
    slots[shared_prefix.slots] = grouped
    by_prompt = slots.view(prompts, n, kv_heads, group, dim).transpose(1, 2).reshape(prompts, kv_heads, n * group, dim)
    prefix_scores = torch.matmul(by_prompt, prefix_keys.transpose(2, 3)) * scale
    prefix_scores = prefix_scores.masked_fill(~shared_prefix.mask[:, None, None, :], float("-inf"))
    prefix_scores = prefix_scores.view(prompts, kv_heads, n, group, width).transpose(1, 2)
    prefix_scores = prefix_scores.reshape(prompts * n, kv_heads, group, width)[shared_prefix.slots]
    own_scores = torch.matmul(grouped, key.transpose(2, 3)) * scale
    weights = torch.cat([prefix_scores, own_scores], dim=-1).softmax(dim=-1).to(value.dtype)
    output = torch.matmul(weights[..., width:], value)
    slot_weights = weights.new_zeros(prompts * n, kv_heads, group, width)
    slot_weights[shared_prefix.slots] = weights[..., :width]
    slot_weights = slot_weights.view(prompts, n, kv_heads, group, width).transpose(1, 2)
    prefix_output = torch.matmul(slot_weights.reshape(prompts, kv_heads, n * group, width), prefix_values)
    prefix_output = prefix_output.view(prompts, kv_heads, n, group, dim).transpose(1, 2)
    output = output + prefix_output.reshape(prompts * n, kv_heads, group, dim)[shared_prefix.slots]
    return output.reshape(rows, 1, heads, dim), None


def supports(model) -> bool:
    """Whether `decode` can run this model: transformers' sdpa attention taken by name, every layer
    full attention (no sliding windows), a decoder-only model."""
    config = model.config
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    return (config._attn_implementation == "sdpa" and set(layer_types) == {"full_attention"}
            and not config.is_encoder_decoder and model._can_set_attn_implementation())


@contextlib.contextmanager
def prefix_attention(model):
    """The model attends with `decode_attention` inside the block, as before after it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    previous = model.config._attn_implementation
    AttentionInterface.register(ATTENTION, decode_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)
    model.set_attn_implementation(ATTENTION)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


def sample_next(logits: torch.Tensor, uniforms: torch.Tensor, temperature: float, top_k: int = 0,
                top_p: float = 1.0) -> torch.Tensor:
    """One token per row by inverse-CDF sampling with the row's own uniform in [0, 1): the softmax of
    `logits / temperature` restricted to the `top_k` most likely tokens (0: all) and the smallest set
    holding `top_p` of the probability; argmax when `temperature` is 0.

    >>> sample_next(torch.tensor([[0.0, 0.0, 9.0]]), torch.tensor([0.0]), temperature=0.0).tolist()
    [2]
    >>> sample_next(torch.tensor([[0.0, 0.0], [0.0, 0.0]]), torch.tensor([0.2, 0.7]), temperature=1.0).tolist()
    [0, 1]
    """
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        threshold = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    probabilities = logits.softmax(dim=-1)
    if top_p < 1.0:
        ordered, order = probabilities.sort(dim=-1, descending=True)
        # a token stays when the tokens more likely than it hold less than top_p
        dropped = ordered.cumsum(dim=-1) - ordered >= top_p
        probabilities = probabilities.scatter(-1, order, ordered.masked_fill(dropped, 0.0))
    cumulative = probabilities.cumsum(dim=-1)
    targets = (uniforms.to(cumulative) * cumulative[:, -1]).unsqueeze(-1)
    return torch.searchsorted(cumulative, targets, right=True).squeeze(-1).clamp(max=logits.shape[-1] - 1)


def row_uniforms(seeds: Sequence[int], max_tokens: int) -> torch.Tensor:
    """[rows, max_tokens]: row r's uniform for its step t, from a generator seeded with `seeds[r]`."""
    uniforms = torch.empty(len(seeds), max(1, max_tokens))
    for index, seed in enumerate(seeds):
        generator = torch.Generator().manual_seed(int(seed) % 2**63)
        uniforms[index] = torch.rand(uniforms.shape[1], generator=generator)
    return uniforms


def decode(model, tokenizer, prompt_ids: Sequence[Sequence[int]], n: int, seeds: Sequence[int], temperature: float,
           max_tokens: int, eos_ids: set[int], stop: Sequence[str] = (), top_k: int = 0,
           top_p: float = 1.0) -> list[list[Row]]:
    """Per prompt, n rows; sample j of prompt i draws with seed `seeds[i] + j`. The model must be one
    `supports` accepts."""
    if max_tokens <= 0:
        return [[Row([], "length") for _ in range(n)] for _ in prompt_ids]
    device = model.device
    width = max(len(ids) for ids in prompt_ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.tensor([[pad] * (width - len(ids)) + list(ids) for ids in prompt_ids], device=device)
    mask = torch.zeros(len(prompt_ids), width, dtype=torch.bool, device=device)
    for index, ids in enumerate(prompt_ids):
        mask[index, width - len(ids):] = True
    layers = model.config.num_hidden_layers
    with torch.no_grad(), prefix_attention(model):
        prompt_cache = Cache(layers=[PreallocatedLayer(width) for _ in range(layers)])
        prefill = model(input_ids=input_ids, attention_mask=mask.long(), past_key_values=prompt_cache, use_cache=True,
                        position_ids=(mask.long().cumsum(-1) - 1).clamp(min=0), logits_to_keep=1)
        rows = torch.arange(len(prompt_ids) * n, device=device)
        prefix = SharedPrefix([layer.keys for layer in prompt_cache.layers],
                              [layer.values for layer in prompt_cache.layers], mask, rows.clone(), n)
        state = _Batch(prefill.logits[:, -1].repeat_interleave(n, dim=0),
                       torch.tensor([len(ids) for ids in prompt_ids], device=device).repeat_interleave(n),
                       row_uniforms([seed + j for seed in seeds for j in range(n)], max_tokens).to(device),
                       rows, max_tokens)
        cache = Cache(layers=[PreallocatedLayer(min(max_tokens, FIRST_CAPACITY), max_tokens) for _ in range(layers)])
        results = _run(model, cache, prefix, state, temperature, top_k, top_p, eos_ids, _stop_check(tokenizer, stop))
    return [results[index * n:(index + 1) * n] for index in range(len(prompt_ids))]


@dataclass
class _Batch:
    """The running rows: their last logits, next positions, uniforms, original row indices, and the
    tokens drawn so far."""

    logits: torch.Tensor
    positions: torch.Tensor
    uniforms: torch.Tensor
    rows: torch.Tensor
    max_tokens: int

    def __post_init__(self):
        self.tokens = torch.zeros(len(self.rows), self.max_tokens, dtype=torch.long, device=self.logits.device)

    def keep(self, keep: torch.Tensor, cache: Cache, prefix: SharedPrefix) -> None:
        for name in ("logits", "positions", "uniforms", "rows", "tokens"):
            setattr(self, name, getattr(self, name)[keep])
        cache.batch_select_indices(keep)
        prefix.slots = prefix.slots[keep]
        prefix.keep(torch.unique(prefix.slots // prefix.n))


def _stop_check(tokenizer, stop: Sequence[str]):
    stop = [text for text in stop if text]
    if not stop:
        return None
    from transformers import StopStringCriteria

    return StopStringCriteria(tokenizer, stop)


def _run(model, cache, prefix: SharedPrefix, state: _Batch, temperature, top_k, top_p, eos_ids,
         stop_check) -> list[Row]:
    results: list[Row | None] = [None] * len(state.rows)
    eos = torch.tensor(sorted(eos_ids), dtype=torch.long, device=state.logits.device)
    running = torch.ones(len(state.rows), dtype=torch.bool, device=state.logits.device)
    for step in range(state.max_tokens):
        tokens = sample_next(state.logits, state.uniforms[:, step], temperature, top_k, top_p)
        state.tokens[:, step] = tokens
        ended = torch.isin(tokens, eos)
        stopped = (ended | stop_check(state.tokens[:, :step + 1], None)) if stop_check else ended
        done = running & (stopped | (step + 1 == state.max_tokens))
        for index in done.nonzero().flatten().tolist():
            length = step if ended[index] else step + 1
            reason = "stop" if stopped[index] else "length"
            results[state.rows[index]] = Row(state.tokens[index, :length].tolist(), reason)
        running &= ~done
        count = int(running.sum())
        if count == 0:
            break
        if count < COMPACT_BELOW * len(running):
            keep = running.nonzero().flatten()
            state.keep(keep, cache, prefix)
            tokens, running = tokens[keep], running[keep]
        # the new tokens attend to their prompt (shared_prefix) and to all new tokens before them: no mask
        output = model(input_ids=tokens.unsqueeze(-1), position_ids=state.positions.unsqueeze(-1),
                       past_key_values=cache, use_cache=True, shared_prefix=prefix)
        state.logits = output.logits[:, -1]
        state.positions = state.positions + 1
    return results
