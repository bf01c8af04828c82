"""Every engine busy: the stages' default batches grow with the backend's engines, and generation overlaps
judging. The README's sampling, evaluation and MCTS commands run in-process against the real data-parallel
backend over 8 spawned fake engines (each tags its answers with its number, so a call's sequences are
counted per engine as the engines received them) and a fake judge that takes its time and notes when; the
cohort schedule of the tree search is checked to change no tree."""
from __future__ import annotations

import doctest
import os
import time
import zlib
from collections import Counter
from dataclasses import dataclass

import pytest

from data.jsonl import write_jsonl
from data.records import Verdict
from models.data_parallel import DataParallelBackend, serve
from models.outputs import Generation, PromptOutput

ENGINES = 8
TAILS = ["    y = 1\n    return y\n```\n", "    y = 2\n    if y:\n        return y\n    return 0\n```\n",
         "    return None\n```\n", "    z = 3\n    y = z\n    return y\n```\n"]


class TaggingEngine:
    """A fake engine: sample j of a prompt with seed s continues with TAILS[(s + j) % 4]; its outputs'
    `prompt_tokens` carry its GPU number (CUDA_VISIBLE_DEVICES), so the caller sees which engine answered."""

    def generate(self, prompts, n=1, temperature=0.7, max_tokens=16, stop=None, seed=None):
        time.sleep(0.02)
        engine = int(os.environ["CUDA_VISIBLE_DEVICES"])
        seeds = seed if seed is not None else [0] * len(prompts)
        return [PromptOutput(engine, [Generation(TAILS[(prompt_seed + j) % len(TAILS)], 4, "stop") for j in range(n)])
                for prompt_seed in seeds]


def tagging_replica(connection, model, engine, options):
    connection.send(("ready", 0, None))
    serve(connection, TaggingEngine())


@dataclass
class Call:
    started: float
    ended: float
    per_engine: Counter  # engine -> sequences it decoded in this call


class Recording:
    """The backend as a stage sees it; notes each call's time span and the sequences of each engine."""

    def __init__(self, backend):
        self.backend, self.calls = backend, []
        self.engines, self.preferred_batch_sequences = backend.engines, backend.preferred_batch_sequences
        self.batches_seeded_prompts, self.tokenizer = True, None

    def generate(self, prompts, n=1, **options):
        started = time.monotonic()
        outputs = self.backend.generate(prompts, n=n, **options)
        per_engine = Counter()
        for output in outputs:
            per_engine[output.prompt_tokens] += n
        self.calls.append(Call(started, time.monotonic(), per_engine))
        return outputs

    def per_engine(self) -> list[tuple[int, int]]:
        """(fewest, most) sequences an engine got, per call (an engine given nothing counts 0)."""
        return [(min(call.per_engine[e] for e in range(ENGINES)), max(call.per_engine.values())) for call in self.calls]


class SlowJudge:
    """Stands in for `evaluation.judging.verify`: 0.15 s per batch, rewards from a hash; notes its spans."""

    def __init__(self):
        self.spans: list[tuple[float, float]] = []

    def __call__(self, sandbox, benchmark, items, timeout=None, on_done=None, **options):
        started = time.monotonic()
        time.sleep(0.15)
        verdicts = [[Verdict((zlib.crc32(program.encode()) % 3) / 2, "failed") for program in programs]
                    for _, programs in items]
        for index, group in enumerate(verdicts):
            if on_done is not None:
                on_done(index, group)
        self.spans.append((started, time.monotonic()))
        return verdicts


def overlapped(calls: list[Call], spans: list[tuple[float, float]]) -> bool:
    """Whether a generate call started while a judging was under way."""
    return any(start < call.started < end for call in calls for start, end in spans)


@pytest.fixture(scope="module")
def engines():
    backend = DataParallelBackend("fake", ENGINES, engine="fake", gpu_groups=[[str(i)] for i in range(ENGINES)],
                                  replica_main=tagging_replica, startup_timeout=120.0, call_timeout=60.0)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """900 TinyCode problems (10 generated ones, repeated under new ids: generating 900 takes a while)."""
    from data.tinycode import generate

    _, test = generate(seed=0, n_train=0, n_test=10)
    records = [{**test[index % 10], "task_id": f"TinyCode/test/{index}"} for index in range(900)]
    path = tmp_path_factory.mktemp("tinycode900")
    write_jsonl(str(path / "test.jsonl"), records)
    return path


@pytest.fixture
def stage(engines, data_dir, tmp_path, monkeypatch):
    """Runs a stage's main in `tmp_path` with the 8 engines and the slow judge; returns (backend, judge)."""
    import evaluation.eval
    import evaluation.verify
    import experiment.sample
    import experiment.sample_mcts

    backend, judge = Recording(engines), SlowJudge()
    monkeypatch.chdir(tmp_path)
    for module in (experiment.sample, experiment.sample_mcts, evaluation.eval):
        monkeypatch.setattr(module, "backend_from_args", lambda args, placement=None: backend)
    for module in (experiment.sample, experiment.sample_mcts, evaluation.verify):
        monkeypatch.setattr(module, "verify", judge)
    common = ["--domain", "TinyCode", "--directory", str(data_dir), "--file", "test.jsonl", "--backend", "fake",
              "--workers", "1", "--skip_env_check"]

    def run(main, *flags):
        assert main([*common, *flags]) == 0
        return backend, judge

    return run


def test_backends_ask_for_a_batch_per_engine(engines):
    import experiment.common
    from models.api_backend import APIBackend
    from models.generation import HFBackend
    from models.vllm_backend import VLLMBackend

    assert (engines.engines, engines.preferred_batch_sequences) == (8, 2048)
    assert (VLLMBackend.engines, VLLMBackend.preferred_batch_sequences) == (1, 256)
    assert APIBackend.preferred_batch_sequences == 256
    assert HFBackend.preferred_batch_sequences == 0  # the stages keep their measured defaults
    assert doctest.testmod(experiment.common).failed == 0


def test_sample_gives_each_engine_a_full_batch_and_judges_while_generating(stage):
    from experiment.sample import main

    # README: python -m experiment.sample --domain BigCodeBench --backend ... --n 5 --temperature 0.7 --max_tokens 1024
    backend, judge = stage(main, "--n", "5", "--temperature", "0.7", "--max_tokens", "1024")
    assert [sum(call.per_engine.values()) for call in backend.calls] == [416 * 5, 416 * 5, 68 * 5]
    assert backend.per_engine()[0] == (260, 260)  # was 20 per engine: 32 problems x 5 over 8 engines
    assert overlapped(backend.calls, judge.spans)


def test_sample_explicit_chunk_size_wins(stage):
    from experiment.sample import main

    backend, _ = stage(main, "--n", "5", "--idx_list", *map(str, range(64)), "--chunk_size", "32")
    assert [call.per_engine for call in backend.calls] == [Counter({e: 20 for e in range(ENGINES)})] * 2


def test_eval_common_one_call_for_the_readme_command(stage):
    from evaluation.eval import main

    # README: python -m evaluation.eval --method Common --domain APPS --backend ... --file test_500.jsonl --n 1
    #         --num_sample 5 --temperature 0.7 --max_tokens 1024
    backend, _ = stage(main, "--method", "Common", "--n", "1", "--num_sample", "5", "--temperature", "0.7",
                       "--max_tokens", "1024")
    assert len(backend.calls) == 1 and backend.per_engine() == [(112, 113)]  # all 900; was 2 per engine


def test_eval_common_judges_a_chunk_while_sampling_the_next(stage, tmp_path):
    import json

    from evaluation.eval import main

    backend, judge = stage(main, "--method", "Common", "--n", "5", "--temperature", "0.7", "--max_tokens", "1024")
    assert [sum(call.per_engine.values()) for call in backend.calls] == [416 * 5, 416 * 5, 68 * 5]
    assert overlapped(backend.calls, judge.spans)
    verified = next(tmp_path.rglob("*_verified.jsonl"))
    assert len({json.loads(line)["id"] for line in verified.read_text().splitlines()}) == 900


def test_mcts_cohorts_keep_the_engines_busy_and_overlap_the_judge(stage):
    from experiment.sample_mcts import main

    # README: python -m experiment.sample_mcts --domain APPS --backend ... --iteration_limit 100 --num_sample 5
    #         --num_decision 5 --exploration_constant 0.2 --eps 0.1 --temperature 0.7 --max_tokens 1024
    # (3 iterations instead of 100: the batch of a call does not depend on it)
    backend, judge = stage(main, "--iteration_limit", "3", "--num_sample", "5", "--num_decision", "5",
                           "--exploration_constant", "0.2", "--eps", "0.1", "--temperature", "0.7",
                           "--max_tokens", "1024")
    # two cohorts of 416 trees: the first round of each is 416 expansions x 5 samples
    assert [sum(call.per_engine.values()) for call in backend.calls[:2]] == [416 * 5] * 2
    assert backend.per_engine()[0] == (260, 260)  # was 10 per engine: 16 trees x 5 over 8 engines
    assert overlapped(backend.calls, judge.spans)


# -- cohorts change no tree --------------------------------------------------------------------------

def test_two_cohorts_search_the_same_trees_and_overlap():
    from experiment.mcts_batch import SearchConfig, run_searches
    from tests.test_mcts import Scorer, ScriptedPolicy, make_prompt, problems

    class SlowScorer(Scorer):
        def __init__(self):
            super().__init__()
            self.spans = []

        def evaluate(self, items):
            started = time.monotonic()
            time.sleep(0.02)
            rewards = super().evaluate(items)
            self.spans.append((started, time.monotonic()))
            return rewards

    def trees(cohorts, max_active):
        policy, scorer = ScriptedPolicy(), SlowScorer()
        starts = []
        generate = policy.generate
        policy.generate = lambda *a, **k: (starts.append(time.monotonic()), generate(*a, **k))[1]
        config = SearchConfig(domain="TinyCode", num_sample=3, num_decision=2, iteration_limit=12,
                              max_active=max_active, cohorts=cohorts)
        results = run_searches(problems(6), policy, config, make_prompt, evaluate=scorer.evaluate)
        return {r.problem.id: r.record["tree"] for r in results}, scorer.seen, starts, scorer.spans

    one, seen_one, starts_one, spans_one = trees(1, 4)
    two, seen_two, starts_two, spans_two = trees(2, 4)
    assert one == two and seen_one == seen_two  # each tree the same, no program judged twice
    assert not any(start < call < end for call in starts_one for start, end in spans_one)
    assert any(start < call < end for call in starts_two for start, end in spans_two)
