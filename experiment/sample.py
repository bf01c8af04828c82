"""Stage 1.1: sample N programs per problem and verify them in the sandbox while generation goes on.

Reads   the domain's data file (data/<Domain>/..., or --directory/--file).
Writes  generate/Common/<Domain>/<slug>/temp_<T>_tokens_<M>_completions.jsonl (`_completions_no_format`
        with --do_not_format; `.shard-<i>-of-<N>` with shards), one line per problem:
        {id, prompt, init_state, test, token_usage {prompt, completion},
         result {formatted_prompt, completions [{sample, formatted_sample, formatted_completion, reward,
                                                 status, finish_reason, completion_tokens}]}}
        and <output>.args.json. Resumes by id; refuses to resume with arguments that change results.

    python -m experiment.sample --domain TinyCode --file test.jsonl --backend models/ckpts/tiny-coder \
        --n 4 --temperature 0.7 --max_tokens 256

Shards: run `--num_shards N --shard_id i` for each i (on any machines), then
`python -m experiment.merge_shards <output without the shard suffix> --num_shards N`.
"""
from __future__ import annotations

import argparse
import logging
import sys
from concurrent.futures import Future, ThreadPoolExecutor

from data.jsonl import JsonlAppender
from data.records import Problem
from data.registry import get_benchmark
from evaluation.judging import verify
from evaluation.sandbox import Sandbox
from experiment import paths
from experiment.common import (
    GENERATION_RESULT_ARGS,
    add_generation_args,
    add_problem_args,
    backend_from_args,
    check_run_args,
    idx_list,
    items_per_call,
    problem_seed,
    stop_strings,
)
from experiment.stage import run_stage
from prompts import extract_code, format_prompt, formatted_completion

logger = logging.getLogger("experiment.sample")
# arguments that change what a line holds: a resumed run must match the earlier one in all of them
RESULT_ARGS = (*GENERATION_RESULT_ARGS, "low_b", "n", "timeout")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_problem_args(parser)
    add_generation_args(parser)
    parser.add_argument("--chunk_size", type=int, default=None,
                        help="problems per generation call (default: at least 256 sequences per vLLM engine, e.g. "
                             "416 at --n 5 over 8 engines; 32 with the hf engine; 1 where it samples prompt by "
                             "prompt under per-prompt seeds: a model its decoding loop cannot run); "
                             "a kill loses at most the chunk being generated and the one being verified")
    parser.add_argument("--output", default=None, help="output file (default: the original's path)")
    args = parser.parse_args(argv)
    args.idx_list = idx_list(args.idx_list)
    return args


def output_path(args: argparse.Namespace) -> str:
    path = args.output or paths.completions_path(args.domain, args.backend, args.temperature, args.max_tokens,
                                                 args.do_not_format)
    return paths.shard_path(path, args.shard_id, args.num_shards)


def completion_record(domain: str, init_state: str, generation) -> dict:
    return {"sample": generation.text, "formatted_sample": extract_code(domain, generation.text),
            "formatted_completion": formatted_completion(domain, init_state, generation.text),
            "finish_reason": generation.finish_reason, "completion_tokens": generation.completion_tokens}


def problem_record(problem: Problem, formatted_prompt: str, output, n: int) -> dict:
    completions = [completion_record(problem.domain, problem.init_state, g) for g in output.generations]
    return {"id": problem.id, "prompt": problem.prompt, "init_state": problem.init_state, "test": problem.test,
            "token_usage": {"prompt": output.prompt_tokens * n,
                            "completion": sum(g.completion_tokens for g in output.generations)},
            "result": {"formatted_prompt": formatted_prompt, "completions": completions}}


class Recorder:
    """Verifies finished generations on one background thread (the sandbox runs while the model
    samples the next chunk) and appends each problem's line as soon as its programs are judged; only
    that thread writes the output and the progress bar."""

    def __init__(self, sandbox: Sandbox, benchmark, out: JsonlAppender, args: argparse.Namespace, bar):
        self.sandbox, self.benchmark, self.out, self.args, self.bar = sandbox, benchmark, out, args, bar
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify")
        self.pending: list[Future] = []
        self.reward_sum, self.programs = 0.0, 0

    def submit(self, problems: list[Problem], records: list[dict]) -> None:
        while len(self.pending) >= 2:  # bound what a kill can lose and what memory holds
            self.pending.pop(0).result()
        self.pending.append(self.thread.submit(self._verify, problems, records))

    def _verify(self, problems: list[Problem], records: list[dict]) -> None:
        items = [(problem, [c["formatted_completion"] for c in record["result"]["completions"]])
                 for problem, record in zip(problems, records)]

        def on_done(index: int, verdicts) -> None:
            record = records[index]
            for completion, verdict in zip(record["result"]["completions"], verdicts):
                completion["reward"] = verdict.reward + self.args.low_b
                completion["status"] = verdict.status
            self.out.write(record)
            self.reward_sum += sum(verdict.reward for verdict in verdicts)
            self.programs += len(verdicts)
            self.bar.update(1)
            self.bar.set_postfix(mean_reward=f"{self.reward_sum / max(1, self.programs):.3f}")

        # training data: the hardened judge (a reward hack is never paid)
        verify(self.sandbox, self.benchmark, items, self.args.timeout, on_done, hardened=True)

    def finish(self) -> None:
        for future in self.pending:
            future.result()
        self.thread.shutdown()


def run(args: argparse.Namespace, problems: list[Problem], output: str, sandbox: Sandbox) -> None:
    """Sample and verify `problems` into `output`, the programs judged in `sandbox` (the stage's, where
    the environment check ran)."""
    from tqdm import tqdm

    benchmark = get_benchmark(args.domain)
    backend = backend_from_args(args)
    tokenizer = getattr(backend, "tokenizer", None)
    stop = stop_strings(args)
    # per-problem seeds: an engine that batches them gets chunks that keep its engines busy; one that does
    # not, a problem at a time
    chunk_size = args.chunk_size or (items_per_call(backend, args.n, 32) if backend.batches_seeded_prompts else 1)
    with JsonlAppender(output) as out, tqdm(total=len(problems), unit="problem", file=sys.stderr) as bar:
        recorder = Recorder(sandbox, benchmark, out, args, bar)
        try:
            for start in range(0, len(problems), chunk_size):
                chunk = problems[start:start + chunk_size]
                prompts = [format_prompt(problem, tokenizer, do_not_format=args.do_not_format, **args.kwargs)
                           for problem in chunk]
                outputs = backend.generate(prompts, n=args.n, temperature=args.temperature,
                                           max_tokens=args.max_tokens, stop=stop,
                                           seed=[problem_seed(args.seed, problem.id) for problem in chunk])
                recorder.submit(chunk, [problem_record(problem, prompt, output, args.n)
                                        for problem, prompt, output in zip(chunk, prompts, outputs)])
        finally:  # chunks generated before an engine failure are still judged and written
            recorder.finish()


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_stage(args, output_path(args), RESULT_ARGS, check_run_args, run)


if __name__ == "__main__":
    sys.exit(main())
