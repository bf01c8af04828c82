"""The `api` generation backend: any OpenAI-compatible server (vLLM's, llama.cpp's, a hosted one)
behind the same `generate` as the hf backend, with the standard library only.

    export OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=...
    backend = APIBackend("tiny", tokenizer="models/ckpts/tiny-coder")     # or build_backend(..., use_api=True)
    outputs = backend.generate(prompts, n=4, temperature=0.7, max_tokens=256, stop=["```"], seed=0)

Our prompts are chat-templated text that ends inside an open assistant turn, so they go to
`/completions` as raw prompts (the chat endpoint would template them a second time). The URL and
key are read from the environment when the backend is built; the key is sent in the Authorization
header only, and never printed, logged, or put in a repr or an error message.

- Retries: 429, 5xx, connection errors and timeouts are retried with exponential backoff and full
  jitter (`backoff_base * 2**attempt`, capped at `backoff_max`, or the server's Retry-After), at
  most `max_retries` times; any other status (400, 401, 404, ...) fails at once.
- `n`: a server that returns fewer choices than asked (llama.cpp ignores `n`) is asked again for
  the rest, with the seed moved on so that a seeded server does not repeat itself.
- Seeds: prompt i asks with `seed + i * n`, or with its own seed when one per prompt is given
  (vLLM's server then seeds its choice j with that + j, as the vllm backend does).
- Token counts come from the response's `usage`. A choice whose finish reason is "length" used
  `max_tokens`; the rest of a response's completion tokens are shared among its other choices in
  proportion to their text length (exact when a response has one choice), so per-prompt sums are
  exact.
- Prompts are sent concurrently (a thread pool of `concurrency`).
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from tqdm import tqdm

from models.outputs import ENGINE_BATCH_SEQUENCES, Generation, PromptOutput, cut_at_stop, prompt_seeds

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))
DEFAULT_BASE_URL = "https://api.openai.com/v1"


class APIError(RuntimeError):
    """A request that failed for good: a non-retryable status, or retries used up."""


class APIBackend:
    """Completions from an OpenAI-compatible server; `tokenizer` is loaded from a local path when
    one is given (stages need it for chat templates), else None."""

    batches_seeded_prompts = True  # per-request seeds, concurrent requests
    engines = 1  # one server, however many engines stand behind it
    # a call of one vLLM engine's batch: `concurrency` requests stay in flight while the rest wait their turn
    preferred_batch_sequences = ENGINE_BATCH_SEQUENCES

    def __init__(self, model: str, tokenizer=None, base_url: str | None = None, max_retries: int = 6,
                 backoff_base: float = 1.0, backoff_max: float = 60.0, timeout: float = 300.0,
                 concurrency: int = 16, seed: int = 0):
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self._api_key = os.environ.get("OPENAI_API_KEY", "")
        self.max_retries, self.timeout, self.concurrency = max_retries, timeout, concurrency
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self._jitter = random.Random(seed)  # jitter spreads retries; it never changes a result
        if isinstance(tokenizer, str):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        self.tokenizer = tokenizer

    def __repr__(self) -> str:
        return f"APIBackend(model={self.model!r}, base_url={self.base_url!r})"

    def generate(self, prompts: Sequence[str], n: int = 1, temperature: float = 0.7, max_tokens: int = 1024,
                 stop: Sequence[str] | None = None, seed: int | Sequence[int] | None = None) -> list[PromptOutput]:
        """`seed`: one int for the call or one per prompt (see `prompt_seeds`)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        stop = [s for s in (stop or []) if s]
        seeds = prompt_seeds(seed, len(prompts), n)

        def one(index: int) -> PromptOutput:
            return self._generate_one(prompts[index], n, temperature, max_tokens, stop, seeds[index])

        workers = max(1, min(self.concurrency, len(prompts)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = pool.map(one, range(len(prompts)))
            return list(tqdm(results, total=len(prompts), desc="api", disable=len(prompts) < 32, leave=False))

    def _generate_one(self, prompt, n, temperature, max_tokens, stop, seed) -> PromptOutput:
        output: PromptOutput | None = None
        # a server that ignores n returns one choice a request: at most n requests in all
        for _ in range(n):
            missing = n - (len(output.generations) if output else 0)
            body = {"model": self.model, "prompt": prompt, "n": missing, "temperature": temperature,
                    "max_tokens": max_tokens}
            if stop:
                body["stop"] = list(stop)
            if seed is not None:
                body["seed"] = seed + n - missing
            response = self._post("/completions", body)
            generations, prompt_tokens = parse_completion(response, max_tokens, stop)
            if output is None:
                output = PromptOutput(prompt_tokens=prompt_tokens)
            output.generations += generations[:missing]
            if len(output.generations) >= n:
                return output
        raise APIError(f"{self.base_url}/completions returned {len(output.generations)} of {n} choices "
                       f"after {n} requests")

    def _post(self, path: str, body: dict) -> dict:
        url = self.base_url + path
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        for attempt in range(self.max_retries + 1):
            try:
                request = urllib.request.Request(url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                    return json.loads(reply.read())
            except urllib.error.HTTPError as error:
                detail = self._scrub(error.read()[:300].decode(errors="replace"))
                if error.code not in RETRY_STATUSES or attempt == self.max_retries:
                    raise APIError(f"{url}: HTTP {error.code} after {attempt + 1} attempt(s): {detail}") from None
                delay = self._delay(attempt, error.headers.get("Retry-After"))
                logger.warning("%s: HTTP %d, retry %d/%d in %.1f s", url, error.code, attempt + 1,
                               self.max_retries, delay)
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError,
                    json.JSONDecodeError) as error:
                reason = self._scrub(str(getattr(error, "reason", error)))
                if attempt == self.max_retries:
                    raise APIError(f"{url}: {reason} after {attempt + 1} attempt(s)") from None
                delay = self._delay(attempt, None)
                logger.warning("%s: %s, retry %d/%d in %.1f s", url, reason, attempt + 1, self.max_retries, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(self.backoff_max, float(retry_after))
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        return self._jitter.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** attempt))

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


def parse_completion(response: dict, max_tokens: int, stop: Sequence[str]) -> tuple[list[Generation], int]:
    """The generations and prompt token count of one `/completions` response (see the module doc
    for how completion tokens are shared among choices).

    >>> parse_completion({"choices": [{"index": 0, "text": "ab", "finish_reason": "stop"}],
    ...                   "usage": {"prompt_tokens": 5, "completion_tokens": 3}}, 16, [])
    ([Generation(text='ab', completion_tokens=3, finish_reason='stop')], 5)
    """
    if "choices" not in response:
        raise APIError(f"a completions response without choices (keys: {sorted(response)})")
    choices = sorted(response["choices"], key=lambda c: c.get("index", 0))
    usage = response.get("usage") or {}
    texts, reasons = [], []
    for choice in choices:
        text, stopped = cut_at_stop(choice.get("text") or "", stop)  # for servers that ignore `stop`
        texts.append(text)
        reasons.append("length" if choice.get("finish_reason") == "length" and not stopped else "stop")
    tokens = share_tokens(int(usage.get("completion_tokens") or 0), texts, reasons, max_tokens)
    generations = [Generation(text=t, completion_tokens=k, finish_reason=r) for t, k, r in zip(texts, tokens, reasons)]
    return generations, int(usage.get("prompt_tokens") or 0)


def share_tokens(total: int, texts: Sequence[str], reasons: Sequence[str], max_tokens: int) -> list[int]:
    """Per-choice completion tokens from a response's total: `max_tokens` for a "length" choice, the
    rest in proportion to text length (largest remainders), summing to `total`.

    >>> share_tokens(10, ["aaa", "a"], ["stop", "stop"], 16), share_tokens(20, ["x", "yy"], ["length", "stop"], 16)
    ([8, 2], [16, 4])
    """
    counts = [max_tokens if reason == "length" else 0 for reason in reasons]
    rest = max(0, total - sum(counts))
    open_choices = [i for i, reason in enumerate(reasons) if reason != "length"]
    weights = [max(1, len(texts[i])) for i in open_choices]
    if not open_choices:
        return counts
    shares = [rest * w / sum(weights) for w in weights]
    floors = [int(s) for s in shares]
    by_remainder = sorted(range(len(shares)), key=lambda k: floors[k] - shares[k])
    for k in by_remainder[: rest - sum(floors)]:
        floors[k] += 1
    for i, count in zip(open_choices, floors):
        counts[i] = count
    return counts
