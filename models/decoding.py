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
ATTENTION = "rest_rl_decode"  # our attention function's name in transformers' AttentionInterface


@dataclass
class Row:
    token_ids: list[int]  # the sampled tokens, end-of-sequence token excluded
    finish_reason: str  # "stop" (a stop string or end of sequence) or "length"


class PreallocatedLayer(DynamicLayer):
    """A layer cache sized once for prompt + new tokens: appending writes in place (the default
    DynamicLayer concatenates, copying the whole cache every step), dropping rows selects them."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self.length = capacity, 0

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
            raise ValueError(f"cache holds {self.capacity} tokens, {end} given")
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

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self.key_buffer = self.key_buffer.repeat_interleave(repeats, dim=0)
            self.value_buffer = self.value_buffer.repeat_interleave(repeats, dim=0)
            self._views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self.key_buffer = self.key_buffer[indices]
            self.value_buffer = self.value_buffer[indices]
            self._views()


def decode_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                     **kwargs):
    """transformers' sdpa attention, except for one new token per row (decoding), where the query
    heads that share a key/value head are grouped against it: sdpa with a padding mask first copies
    the whole cache once per query head (`repeat_kv`), which on CPU costs more than the attention."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    plain = dropout == 0.0 and kwargs.get("softcap") is None and kwargs.get("s_aux") is None
    if query.shape[2] != 1 or not plain or (attention_mask is not None and attention_mask.dtype != torch.bool):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    batch, heads, _, dim = query.shape
    grouped = query.view(batch, key.shape[1], heads // key.shape[1], dim)
    scores = torch.matmul(grouped, key.transpose(2, 3)) * (dim ** -0.5 if scaling is None else scaling)
    if attention_mask is not None:  # [batch, 1, 1, length], True where attended
        scores = scores.masked_fill(~attention_mask, float("-inf"))
    output = torch.matmul(scores.softmax(dim=-1).to(value.dtype), value)
    return output.reshape(batch, 1, heads, dim), None


@contextlib.contextmanager
def grouped_decode_attention(model):
    """The model attends with `decode_attention` inside the block (when it takes an attention
    function by name, as transformers' own models do), and as before after it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    previous = model.config._attn_implementation
    if previous != "sdpa":
        yield
        return
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
    """Per prompt, n rows; sample j of prompt i draws with seed `seeds[i] + j`."""
    if max_tokens <= 0:
        return [[Row([], "length") for _ in range(n)] for _ in prompt_ids]
    device = model.device
    width = max(len(ids) for ids in prompt_ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.tensor([[pad] * (width - len(ids)) + list(ids) for ids in prompt_ids], device=device)
    mask = torch.zeros(len(prompt_ids), width + max_tokens, dtype=torch.long, device=device)
    for index, ids in enumerate(prompt_ids):
        mask[index, width - len(ids):] = 1
    cache = Cache(layers=[PreallocatedLayer(width + max_tokens) for _ in range(model.config.num_hidden_layers)])
    with torch.no_grad(), grouped_decode_attention(model):
        prefill = model(input_ids=input_ids, attention_mask=mask[:, :width], past_key_values=cache, use_cache=True,
                        position_ids=(mask[:, :width].cumsum(-1) - 1).clamp(min=0), logits_to_keep=1)
        cache.batch_repeat_interleave(n)
        state = _Batch(prefill.logits[:, -1].repeat_interleave(n, dim=0), mask.repeat_interleave(n, dim=0),
                       torch.tensor([len(ids) for ids in prompt_ids], device=device).repeat_interleave(n),
                       row_uniforms([seed + j for seed in seeds for j in range(n)], max_tokens).to(device),
                       torch.arange(len(prompt_ids) * n, device=device), max_tokens)
        rows = _run(model, cache, state, width, temperature, top_k, top_p, eos_ids, _stop_check(tokenizer, stop))
    return [rows[index * n:(index + 1) * n] for index in range(len(prompt_ids))]


@dataclass
class _Batch:
    """The running rows: their last logits, attention masks, next positions, uniforms, original row
    indices, and the tokens drawn so far."""

    logits: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    uniforms: torch.Tensor
    rows: torch.Tensor
    max_tokens: int

    def __post_init__(self):
        self.tokens = torch.zeros(len(self.rows), self.max_tokens, dtype=torch.long, device=self.logits.device)

    def keep(self, keep: torch.Tensor, cache: Cache) -> None:
        for name in ("logits", "mask", "positions", "uniforms", "rows", "tokens"):
            setattr(self, name, getattr(self, name)[keep])
        cache.batch_select_indices(keep)


def _stop_check(tokenizer, stop: Sequence[str]):
    stop = [text for text in stop if text]
    if not stop:
        return None
    from transformers import StopStringCriteria

    return StopStringCriteria(tokenizer, stop)


def _run(model, cache, state: _Batch, width: int, temperature, top_k, top_p, eos_ids, stop_check) -> list[Row]:
    results: list[Row | None] = [None] * len(state.rows)
    eos = torch.tensor(sorted(eos_ids), dtype=torch.long, device=state.logits.device)
    running = torch.ones(len(state.rows), dtype=torch.bool, device=state.logits.device)
    for step in range(state.max_tokens):
        tokens = sample_next(state.logits, state.uniforms[:, step], temperature, top_k, top_p)
        state.tokens[:, step] = tokens
        ended = torch.isin(tokens, eos)
        stopped = ended | stop_check(state.tokens[:, :step + 1], None) if stop_check else ended
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
            state.keep(keep, cache)
            tokens, running = tokens[keep], running[keep]
        state.mask[:, width + step] = 1
        output = model(input_ids=tokens.unsqueeze(-1), attention_mask=state.mask[:, :width + step + 1],
                       position_ids=state.positions.unsqueeze(-1), past_key_values=cache, use_cache=True)
        state.logits = output.logits[:, -1]
        state.positions = state.positions + 1
    return results
