"""The hf backend with a tiny random model built on the spot (mechanics, not quality): batched
sampling, n per prompt, stop strings cut the text, a seed repeats the samples, save and reload."""
from __future__ import annotations

import pytest

from models.generation import HFBackend, build_backend, cut_at_stop

TEXTS = ["def add(a, b):\n    return a + b\n", "x = [1, 2, 3]\nprint(sum(x))\n", "```python\nprint(42)\n```\n"] * 30


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from models.tiny import build_model, build_tokenizer

    tokenizer = build_tokenizer(TEXTS, vocab_size=300)
    model = build_model(tokenizer)
    path = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def backend(tiny_dir):
    return build_backend(tiny_dir, engine="hf", device="cpu", batch_size=8)


def test_shapes_counts_and_reasons(backend):
    outputs = backend.generate(["def f(", "x = [1"], n=3, temperature=1.0, max_tokens=12, seed=0)
    assert len(outputs) == 2 and all(len(o.generations) == 3 for o in outputs)
    assert all(o.prompt_tokens > 0 for o in outputs)
    for generation in (g for o in outputs for g in o.generations):
        assert 0 <= generation.completion_tokens <= 12
        assert generation.finish_reason in ("stop", "length")
        assert (generation.finish_reason == "length") == (generation.completion_tokens == 12)


def test_stop_strings_end_generations(backend):
    # with a random model, pick as stop string text the model is sure to produce: a single space or
    # letter; no returned text may contain it, and sequences that hit it end with "stop"
    outputs = backend.generate(["def f("] * 4, n=2, temperature=1.0, max_tokens=40, stop=["e", " "], seed=1)
    generations = [g for o in outputs for g in o.generations]
    assert all("e" not in g.text and " " not in g.text for g in generations)
    assert any(g.finish_reason == "stop" and g.completion_tokens < 40 for g in generations)


def test_same_seed_same_samples(backend):
    first = backend.generate(["def f(", "x"], n=2, temperature=1.0, max_tokens=16, seed=7)
    second = backend.generate(["def f(", "x"], n=2, temperature=1.0, max_tokens=16, seed=7)
    other = backend.generate(["def f(", "x"], n=2, temperature=1.0, max_tokens=16, seed=8)
    texts = lambda outputs: [g.text for o in outputs for g in o.generations]  # noqa: E731
    assert texts(first) == texts(second)
    assert texts(first) != texts(other)


def test_greedy_is_deterministic_and_reload_keeps_ids(tiny_dir, backend):
    reloaded = HFBackend(tiny_dir, device="cpu")
    assert reloaded.tokenizer("def add(a, 12)")["input_ids"] == backend.tokenizer("def add(a, 12)")["input_ids"]
    a = backend.generate(["def add("], n=1, temperature=0.0, max_tokens=10)
    b = reloaded.generate(["def add("], n=1, temperature=0.0, max_tokens=10)
    assert a[0].generations[0].text == b[0].generations[0].text


def test_digits_are_one_token_each(backend):
    ids = backend.tokenizer("12345", add_special_tokens=False)["input_ids"]
    assert len(ids) == 5


def test_cut_at_stop():
    assert cut_at_stop("abc```def", ["```", "d"]) == ("abc", True)
    assert cut_at_stop("abc", ["x"]) == ("abc", False)


# -- the batched decoding loop (models/decoding.py) ------------------------------------------------------

PROMPTS = ["def f(", "x = [1, 2", "print(4", "```python\nimport os\ndef add(a, b):\n"]


def _samples(outputs):
    return [[(g.text, g.completion_tokens, g.finish_reason) for g in o.generations] for o in outputs]


def test_a_prompts_samples_do_not_depend_on_its_batch(tiny_dir):
    alone = HFBackend(tiny_dir, device="cpu")
    seeds = [11, 22, 33, 44]
    expected = [_samples(alone.generate([p], n=3, temperature=1.0, max_tokens=20, stop=["e"], seed=[s]))[0]
                for p, s in zip(PROMPTS, seeds)]
    together = alone.generate(PROMPTS[::-1], n=3, temperature=1.0, max_tokens=20, stop=["e"], seed=seeds[::-1])
    assert _samples(together)[::-1] == expected
    # rows split over batches of 4 (a prompt's samples in two batches), other neighbours
    chunked = HFBackend(tiny_dir, device="cpu", batch_size=4)
    mixed = chunked.generate([PROMPTS[2], PROMPTS[0], PROMPTS[3]], n=3, temperature=1.0, max_tokens=20, stop=["e"],
                             seed=[seeds[2], seeds[0], seeds[3]])
    assert _samples(mixed) == [expected[2], expected[0], expected[3]]
    assert len({sample for samples in expected for sample in samples}) > 1  # the samples are not all alike


def test_greedy_loop_matches_transformers_generate(tiny_dir):
    # prompts of different lengths (left padding, positions, the cache, grouped attention): the loop's
    # argmax tokens are transformers' own greedy tokens
    loop = HFBackend(tiny_dir, device="cpu")
    reference = HFBackend(tiny_dir, device="cpu", decoder="generate")
    a = loop.generate(PROMPTS, n=2, temperature=0.0, max_tokens=24)
    b = reference.generate(PROMPTS, n=2, temperature=0.0, max_tokens=24)
    assert _samples(a) == _samples(b)


def test_finished_rows_leave_the_batch_without_changing_the_others(tiny_dir, monkeypatch):
    import models.decoding

    backend = HFBackend(tiny_dir, device="cpu")
    call = dict(n=4, temperature=1.0, max_tokens=30, stop=["e", "a"], seed=9)
    compacted = backend.generate(PROMPTS, **call)
    monkeypatch.setattr(models.decoding, "COMPACT_BELOW", 0.0)  # finished rows stay in the batch to the end
    assert _samples(backend.generate(PROMPTS, **call)) == _samples(compacted)
    monkeypatch.setattr(models.decoding, "FIRST_CAPACITY", 3)  # the cache grows 3 -> 6 -> 12 -> 24 -> 30
    assert _samples(backend.generate(PROMPTS, **call)) == _samples(compacted)
    lengths = sorted(g.completion_tokens for o in compacted for g in o.generations)
    assert lengths[len(lengths) // 2] < 30 * 0.75  # most rows ended early: the batch was compacted


def test_sampler_draws_the_softmax_distribution_and_filters_like_transformers():
    import torch
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    from models.decoding import sample_next

    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, 0.0]])
    count = 20000
    uniforms = (torch.arange(count) + 0.5) / count  # evenly spread: frequencies are the probabilities
    for temperature, top_k, top_p in ((1.0, 0, 1.0), (0.7, 0, 1.0), (1.0, 3, 1.0), (1.0, 0, 0.8), (0.5, 2, 0.9)):
        tokens = sample_next(logits.expand(count, -1), uniforms, temperature, top_k, top_p)
        frequencies = torch.bincount(tokens, minlength=5).float() / count
        warped = logits / temperature
        if top_k:
            warped = TopKLogitsWarper(top_k)(None, warped)
        if top_p < 1:
            warped = TopPLogitsWarper(top_p)(None, warped)
        assert torch.allclose(frequencies, warped.softmax(-1)[0], atol=2e-4), (temperature, top_k, top_p)


def test_samples_ignore_the_checkpoints_generation_config(tiny_dir, tmp_path):
    # a checkpoint whose generation_config.json sets repetition_penalty (Qwen2.5's sets 1.05-1.1):
    # the hf engine samples with the options it is given, as vLLM and TRL do, on both paths
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    model.generation_config.repetition_penalty = 1000.0
    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_dir).save_pretrained(tmp_path)
    assert "repetition_penalty" in (tmp_path / "generation_config.json").read_text()
    call = dict(n=3, temperature=1.0, max_tokens=24, seed=[5, 6])
    for decoder in ("loop", "generate"):
        plain = HFBackend(tiny_dir, device="cpu", decoder=decoder).generate(PROMPTS[:2], **call)
        configured = HFBackend(str(tmp_path), device="cpu", decoder=decoder).generate(PROMPTS[:2], **call)
        assert _samples(configured) == _samples(plain), decoder


def test_finish_reasons_and_token_counts_of_the_loop(tiny_dir):
    backend = HFBackend(tiny_dir, device="cpu")
    outputs = backend.generate(PROMPTS, n=4, temperature=1.0, max_tokens=16, stop=["a"], seed=3)
    generations = [g for o in outputs for g in o.generations]
    assert all("a" not in g.text for g in generations)
    assert all(g.completion_tokens == 16 for g in generations if g.finish_reason == "length")
    assert all(g.finish_reason == "stop" for g in generations if g.completion_tokens < 16)
    assert {g.finish_reason for g in generations} == {"stop", "length"}
    # a sample cut at a stop string counts its tokens up to and with the stop string
    assert any(g.finish_reason == "stop" and g.completion_tokens > len(backend.tokenizer(g.text)["input_ids"])
               for g in generations)
    assert outputs[0].prompt_tokens == len(backend.tokenizer(PROMPTS[0], add_special_tokens=False)["input_ids"])


def test_models_the_loop_cannot_run_sample_with_generate(tiny_dir):
    from transformers import AutoModelForCausalLM

    loop = HFBackend(tiny_dir, device="cpu")
    loop.generate(PROMPTS[:1], n=2, temperature=1.0, max_tokens=4, seed=0)
    assert loop.batches_seeded_prompts and loop.model.config._attn_implementation == "sdpa"  # restored after a call
    eager = AutoModelForCausalLM.from_pretrained(tiny_dir, attn_implementation="eager")
    fallback = HFBackend(tiny_dir, device="cpu", model_object=eager)
    assert fallback.decoder == "generate" and not fallback.batches_seeded_prompts
    assert len(fallback.generate(PROMPTS[:2], n=2, temperature=1.0, max_tokens=4, seed=[1, 2])[1].generations) == 2
