"""Prompt machinery over the benchmark registry: the chat-formatted prompt for a problem, the
stop strings and code extraction of a domain. The literals themselves live in each benchmark's
module under `data/` (they are data and carry over exactly from the original project)."""
from __future__ import annotations

from prompts.chat import MAGIC_SPLITTER, make_raw_chat_prompt, make_raw_chat_prompt_with_context
from prompts.stops import get_stop_strings

__all__ = ["MAGIC_SPLITTER", "make_raw_chat_prompt", "make_raw_chat_prompt_with_context", "format_prompt",
           "format_for_think", "format_for_act", "get_stop_strings", "extract_code", "formatted_completion"]


def format_prompt(problem, tokenizer=None, state: str | None = None, do_not_format: bool = False, **kwargs) -> str:
    """The whole prompt for `problem`, ending inside the assistant turn after the response prefix
    and `state` (the code so far; default the problem's starter code). With `do_not_format`, the
    raw problem text as it is (the original's --do_not_format)."""
    if do_not_format:
        return problem.prompt
    from data.registry import get_benchmark

    benchmark = get_benchmark(problem.domain)
    state = problem.init_state if state is None else state
    return make_raw_chat_prompt(benchmark.user_message(problem), benchmark.response_prefix(problem, state),
                                tokenizer, **kwargs)


def format_for_think(problem, tokenizer, state: str, **kwargs) -> str:
    """MCTS --use_thought, stage 1 (the original's format_for_think): the question and the code so far
    as history, then the request for a thought; the assistant turn opens with the think prefix."""
    benchmark = _benchmark(problem)
    return make_raw_chat_prompt_with_context(
        [benchmark.user_message(problem)], [benchmark.response_prefix(problem, state)], benchmark.think_request,
        benchmark.think_prefix, tokenizer, **kwargs)


def format_for_act(problem, tokenizer, state: str, thought: str, **kwargs) -> str:
    """MCTS --use_thought, stage 2 (the original's format_for_act): the thought joins the history, then
    the request for the code; the assistant turn opens with the act prefix and the code so far."""
    benchmark = _benchmark(problem)
    return make_raw_chat_prompt_with_context(
        [benchmark.user_message(problem), benchmark.think_request],
        [benchmark.response_prefix(problem, state), benchmark.think_prefix + thought],
        benchmark.act_request, benchmark.act_prefix(problem, state), tokenizer, **kwargs)


def _benchmark(problem):
    from data.registry import get_benchmark

    return get_benchmark(problem.domain)


def formatted_completion(domain: str, init_state: str, sample: str) -> str:
    """The whole program a raw sample stands for: the starter code (or partial program) followed by
    the extracted code, right-stripped (the original's formatted_completion).

    >>> formatted_completion("TinyCode", "def f():\\n", "    return 1\\n```\\nmore")
    'def f():\\n    return 1'
    """
    return init_state + extract_code(domain, sample).rstrip()


def extract_code(domain: str, sample: str) -> str:
    """The code part of a raw sample (BigCodeBench, APPS: text before the closing fence)."""
    from data.registry import get_benchmark

    return get_benchmark(domain).extract_code(sample)
