"""Prompt literals character for character, with a tokenizer that has a chat template (ChatML,
built here in a second) and with none (the plain-text fallback)."""
from __future__ import annotations

import pytest

from data.records import Problem
from prompts import MAGIC_SPLITTER, extract_code, format_prompt, get_stop_strings, make_raw_chat_prompt_with_context

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
EVALPLUS_USER = ("Please provide a self-contained Python script that solves the following problem in a markdown "
                 "code block:")
EVALPLUS_PREFIX = ("Below is a Python script with a self-contained function that solves the problem and passes "
                   "corresponding tests:\n```python\n")


@pytest.fixture(scope="module")
def chat_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<|im_start|>", "<|im_end|>"])
    tokenizer.train_from_iterator(["def f(x):\n    return x + 1\n"] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, chat_template=CHATML, eos_token="<|im_end|>")


def chatml(user: str, prefix: str) -> str:
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{prefix}"


HUMANEVAL = Problem("HumanEval/0", "HumanEval", 'def add(a, b):\n    """Add."""\n', "", {})
MBPP = Problem("2", "MBPP", "Write a function to add.", "", {"test_list": ["assert add(1, 2) == 3"]})


def test_humaneval_prompt_is_evalplus_instruction_form(chat_tokenizer):
    user = f'{EVALPLUS_USER}\n```\ndef add(a, b):\n    """Add."""\n```\n'
    assert format_prompt(HUMANEVAL, chat_tokenizer) == chatml(user, EVALPLUS_PREFIX)
    assert format_prompt(HUMANEVAL, None) == user + "\n" + EVALPLUS_PREFIX
    with_state = format_prompt(HUMANEVAL, None, state="def add(a, b):\n")
    assert with_state == user + "\n" + EVALPLUS_PREFIX + "def add(a, b):\n"


def test_mbpp_prompt_carries_the_first_assert(chat_tokenizer):
    user = f'{EVALPLUS_USER}\n```\n"""\nWrite a function to add.\nassert add(1, 2) == 3\n"""\n```\n'
    assert format_prompt(MBPP, chat_tokenizer) == chatml(user, EVALPLUS_PREFIX)


def test_do_not_format_returns_the_raw_text(chat_tokenizer):
    assert format_prompt(MBPP, chat_tokenizer, do_not_format=True) == "Write a function to add."


def test_context_turns_and_fallback(chat_tokenizer):
    text = make_raw_chat_prompt_with_context(["q1"], ["a1"], "q2", "pre", chat_tokenizer)
    assert text == "<|im_start|>user\nq1<|im_end|>\n<|im_start|>assistant\na1<|im_end|>\n" + chatml("q2", "pre")
    assert make_raw_chat_prompt_with_context(["q1"], ["a1"], "q2", "pre", None) == "q1\na1\nq2\npre"
    assert MAGIC_SPLITTER == "-[[]]-this-is-really-our-highest-priority-[[]]-"


def test_stop_strings_and_extraction():
    assert get_stop_strings("HumanEval") == ["```"]
    assert extract_code("MBPP", "    return a + b\n```\nThis adds.") == "    return a + b\n"
    with pytest.raises(ValueError):
        get_stop_strings("Nope")


APPS_PREFIX = ("Below is a self-contained Python script that solves the problem and realizes requested "
               "functionalities:\n```python\n")


@pytest.mark.parametrize("fn_name, style", [("add", "Call-Based format"), (None, "Standard Input format")])
def test_apps_prompt_follows_the_test_style(chat_tokenizer, fn_name, style):
    test = {"inputs": [], "outputs": []} | ({"fn_name": fn_name} if fn_name else {})
    problem = Problem("1", "APPS", "Add two numbers.", "class Solution:\n", test)
    user = (f"Please provide a self-contained Python script using {style} that solves the following problem in a "
            "markdown code block.\nProblem: Add two numbers.")
    assert format_prompt(problem, chat_tokenizer) == chatml(user, APPS_PREFIX + "class Solution:\n")
    assert format_prompt(problem, None) == user + "\n" + APPS_PREFIX + "class Solution:\n"
    assert get_stop_strings("APPS") == ["```"]


BCB = Problem("BigCodeBench/0", "BigCodeBench", "Count words.", "import re\ndef task_func(text):\n", {})
DS = Problem("0", "DS1000", "Problem:\nSort it.\nA:\n<code>\n", "<code>\n", {})


def test_bigcodebench_and_ds1000_literals(chat_tokenizer):
    user = ("Please provide a self-contained Python script that solves the following problem in a markdown code "
            "block.\nProblem: Count words.")
    assert format_prompt(BCB, chat_tokenizer) == chatml(user, APPS_PREFIX + "import re\ndef task_func(text):\n")
    ds_user = ("Please directly complete the required program to solve the following problem.\n"
               "Problem:\nSort it.\nA:\n<code>\n")
    assert format_prompt(DS, None) == ds_user + "\n" + "<code>\n"
    assert get_stop_strings("DS1000") == ["</code>", "### SOLUTION END", "### END SOLUTION", "# SOLUTION END",
                                         "# END SOLUTION", "END SOLUTION", "SOLUTION END"]
    assert extract_code("DS1000", "x.sort()\n### END SOLUTION\nrest</code>") == "x.sort()\n"
    assert extract_code("BigCodeBench", "    return 1\n```\ntext") == "    return 1\n"


def test_prompts_stops_is_the_original_import_path():
    """`from prompts.stops import get_stop_strings` (the original README's path) is the one implementation,
    with the original's lists for its domains and ValueError for an unknown one."""
    import prompts
    from data.registry import domains, get_benchmark
    from prompts.stops import get_stop_strings as from_stops

    assert from_stops is prompts.get_stop_strings
    assert len(domains()) >= 8
    for domain in domains():
        assert from_stops(domain) == list(get_benchmark(domain).stop_strings)
    assert from_stops("BigCodeBench") == from_stops("APPS") == ["```"]
    with pytest.raises(ValueError):
        from_stops("Nope")


def test_thought_prompts_are_the_original_literals(chat_tokenizer):
    """MCTS --use_thought (the original's prompts): think = history [question, reply + state], the ask, the think
    prefix; act = that history plus [ask, think prefix + thought], the act request and prefix + state."""
    from prompts import format_for_act, format_for_think

    state = "import re\ndef task_func(text):\n"
    user = ("Please provide a self-contained Python script that solves the following problem in a markdown code "
            "block.\nProblem: Count words.")
    turn = "<|im_start|>{}\n{}<|im_end|>\n".format
    ask = "The script is not yet complete. How should we proceed to complete this script?"
    think_prefix = "Let's think step by step about how to continue:\n"
    assert format_for_think(BCB, chat_tokenizer, state) == (
        turn("user", user) + turn("assistant", APPS_PREFIX + state) + chatml(ask, think_prefix))
    act_prefix = ("Based on the ideas, below is a complete self-contained Python script that solves the problem and "
                  "realizes requested functionalities:\n```python\n")
    act_user = "Based on these ideas, please provide a complete self-contained Python script to the problem."
    assert format_for_act(BCB, chat_tokenizer, state, "Split, then count.") == (
        turn("user", user) + turn("assistant", APPS_PREFIX + state) + turn("user", ask)
        + turn("assistant", think_prefix + "Split, then count.") + chatml(act_user, act_prefix + state))
    ds_user = ("Please directly complete the required program to solve the following problem.\n"
               "Problem:\nSort it.\nA:\n<code>\n")
    ds_ask = "The program is not yet complete. How should we proceed to complete this program?"
    assert format_for_think(DS, None, "<code>\n") == f"{ds_user}\n<code>\n\n{ds_ask}\n{think_prefix}"
    assert format_for_act(DS, None, "<code>\n", "sort") == (
        f"{ds_user}\n<code>\n\n{ds_ask}\n{think_prefix}sort\n"
        "Based on these ideas, please provide a complete program to the problem.\n\n<code>\n")
