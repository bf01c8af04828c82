"""What the sampling, tree-search and evaluation stages share: their command-line arguments, which
problems a run (or one shard of it) covers, per-problem seeds, the backend, and what a run has left to do
(resume, arguments beside the output); the run itself and its exit codes are `experiment.stage`.

    problems = select_problems(benchmark.load(args.directory, args.file), args.idx_list,
                               args.num_shards, args.shard_id)
    backend = backend_from_args(args)
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
from typing import Sequence

from data.jsonl import DataError, read_done, write_json
from data.records import Problem
from data.registry import get_benchmark
from evaluation import env_check
from models.gpu_plan import (
    DEFAULT_MEMORY_UTILIZATION,
    PLACEMENT_RULE,
    Placement,
    gpu_memory_bytes,
    model_shape,
    physical_gpu_ids,
    plan_parallel,
    plan_placement,
    visible_gpus,
)

logger = logging.getLogger(__name__)


# -- argument parsing (the original's list and kwargs rules) ----------------------------------------

def int_or_float(text: str) -> int | float:
    """`1` -> 1 (a count), `1.0` or `0.5` -> a float (a ratio)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def none_or_float(text: str) -> float | None:
    """`None` (the original's printed default, e.g. of --time_limit) or a number."""
    return None if text == "None" else float(text)


def parse_value(text: str):
    """A `--kwargs` value: all digits -> int, digits.digits -> float, true/false -> bool, else str."""
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d+", text):
        return float(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


class ParseKwargs(argparse.Action):
    """`--kwargs enable_thinking=false k=v ...` -> {"enable_thinking": False, "k": "v"}."""

    def __call__(self, parser, namespace, values, option_string=None):
        result = {}
        for item in values:
            key, sep, value = item.partition("=")
            if not sep or not key:
                parser.error(f"{option_string}: expected key=value, got {item!r}")
            result[key] = parse_value(value)
        setattr(namespace, self.dest, result)


def idx_list(values: Sequence[str] | None) -> list[int] | None:
    """`--idx_list 0 1 2` (the README's form) and `--idx_list 0,1,2` (the original parser's) alike."""
    if not values:
        return None
    return [int(part) for value in values for part in value.split(",") if part.strip()]


def str_list(text: str) -> list[str]:
    """`--stop a,b` -> ["a", "b"] (the original's comma-separated list)."""
    return [part for part in text.split(",") if part]


def add_problem_args(parser: argparse.ArgumentParser, domain: str = "BigCodeBench") -> None:
    parser.add_argument("--domain", default=domain, help="benchmark (data/registry.py): APPS, BigCodeBench, DS1000, "
                        "TinyCode, HumanEval, HumanEvalPlus, MBPP, MBPPPlus")
    parser.add_argument("--directory", default=None, help="data directory (default data/<Domain>)")
    parser.add_argument("--file", default=None, help="data file name inside the directory")
    parser.add_argument("--idx_list", nargs="*", default=None,
                        help="positions in the data file to run: '0 1 2' or '0,1,2' (default all)")
    parser.add_argument("--num_shards", type=int, default=1, help="split the problems into this many shards")
    parser.add_argument("--shard_id", type=int, default=0, help="which shard this run covers (0-based)")


def add_generation_args(parser: argparse.ArgumentParser, n_default: int = 5) -> None:
    parser.add_argument("--backend", default="gpt-4o-mini", help="model id or path (local engines) or API model name")
    parser.add_argument("--use_api", action="store_true",
                        help="sample from an OpenAI-compatible server (OPENAI_BASE_URL, OPENAI_API_KEY)")
    parser.add_argument("--engine", default="auto", choices=("auto", "hf", "vllm"),
                        help="local engine; auto: vLLM when installed and a GPU is visible, else transformers")
    parser.add_argument("--low_b", type=float, default=0.0, help="constant added to every verifier score")
    parser.add_argument("--n", type=int, default=n_default, help="samples per problem")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature")
    parser.add_argument("--max_tokens", type=int, default=1024, help="max new tokens per sample")
    parser.add_argument("--stop", type=str_list, default=None,
                        help="comma-separated stop strings (default: the domain's)")
    parser.add_argument("--vllm_tensor_parallel_size", type=int, default=-1,
                        help="vLLM tensor parallel size; -1: the smallest that divides the model's heads and fits")
    parser.add_argument("--vllm_data_parallel_size", type=int, default=-1,
                        help="vLLM engines side by side (one process each, tensor-parallel GPUs apiece); -1: as many "
                             "as the policy's GPUs hold")
    parser.add_argument("--vllm_gpu_memory_utilization", type=float, default=None,
                        help="vLLM's share of each policy GPU (default 0.9, lowered when a reward model shares it)")
    parser.add_argument("--do_not_format", action="store_true",
                        help="use the problem text as the whole prompt (no chat template or instruction)")
    parser.add_argument("--kwargs", nargs="*", action=ParseKwargs, default={},
                        help="chat-template arguments, e.g. enable_thinking=false")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (per problem: seed + id)")
    parser.add_argument("--device", default=None, help="hf engine device (default cuda when visible, else cpu)")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="hf engine: sequences decoded as one batch (default 256 on CPU, 32 on a GPU)")
    parser.add_argument("--exec_python", default=None,
                        help="interpreter that runs programs (BigCodeBench/DS1000 need their own environment)")
    parser.add_argument("--skip_env_check", action="store_true",
                        help="do not run a few reference solutions first to find modules --exec_python lacks")
    parser.add_argument("--workers", type=int, default=None,
                        help="sandbox workers (default: the CPUs this process may use)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per program (default: the benchmark's)")
    parser.epilog = "\n\n".join(part for part in (parser.epilog, PLACEMENT_RULE) if part)


def add_search_args(parser: argparse.ArgumentParser, title: str = "MCTS", iteration_limit: int = 100,
                    exploration_constant: float = 0.2):
    """The tree-search settings (sample_mcts, process_gen_data's file selectors, eval: defaults differ)."""
    group = parser.add_argument_group(title)
    group.add_argument("--time_limit", type=none_or_float, default=None,
                       help="seconds of search per problem (None: no limit); the first limit reached stops")
    group.add_argument("--iteration_limit", type=int, default=iteration_limit,
                       help="selections per problem (0: no limit)")
    group.add_argument("--num_sample", type=int, default=5,
                       help="completions sampled per expansion (evaluation: also the N of best-of-N)")
    group.add_argument("--num_decision", type=int, default=3, help="visible children kept per expanded node")
    group.add_argument("--exploration_constant", type=float, default=exploration_constant, help="c in UCT")
    group.add_argument("--eps", type=float, default=0.1, help="added to the child's visits in the UCT denominator")
    return group


# arguments of add_problem_args/add_generation_args that change what a stage's line holds: a resumed run
# must match the earlier one in all of them (each stage adds its own)
GENERATION_RESULT_ARGS = ("domain", "directory", "file", "backend", "use_api", "engine", "temperature", "max_tokens",
                          "stop", "do_not_format", "kwargs", "seed", "num_shards", "shard_id")
SEARCH_RESULT_ARGS = ("time_limit", "iteration_limit", "num_sample", "num_decision", "exploration_constant", "eps")


def check_shards(args: argparse.Namespace) -> None:
    if args.num_shards < 1 or not 0 <= args.shard_id < args.num_shards:
        raise DataError("--shard_id", None, f"needs 0 <= shard_id < num_shards, got {args.shard_id} of "
                        f"{args.num_shards}")


# -- which problems, which seeds ---------------------------------------------------------------------

def select_problems(problems: Sequence[Problem], indices: Sequence[int] | None = None, num_shards: int = 1,
                    shard_id: int = 0) -> list[Problem]:
    """The problems at `indices` (data-file positions; default all), then every `num_shards`-th of them
    starting at `shard_id`: shards are disjoint and together cover the selection."""
    if indices is not None:
        bad = [index for index in indices if not 0 <= index < len(problems)]
        if bad:
            raise DataError("--idx_list", None, f"positions {bad} outside the {len(problems)} problems")
        chosen = [problems[index] for index in dict.fromkeys(indices)]
    else:
        chosen = list(problems)
    return chosen[shard_id::num_shards]


def problem_seed(seed: int, problem_id: str, salt: str = "") -> int:
    """A seed for one problem that depends only on the run's seed and the problem (and a salt for a
    second use), so shards and resumed runs draw what an unsharded run draws."""
    digest = hashlib.sha256(f"{seed}\0{problem_id}\0{salt}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


# -- the backend ---------------------------------------------------------------------------------------

# The original README's evaluation commands name checkpoints by paths its training commands never
# write (`ckpts/grpo/...` for `models/ckpts/grpo/...`, `ckpts/rm/...` for `rms/ckpts/...`): they
# resolve to where training put them, so those commands run as written.
CHECKPOINT_ALIASES = (("ckpts/grpo/", "models/ckpts/grpo/"), ("ckpts/rm/", "rms/ckpts/"))


def local_model_path(name: str) -> str:
    """`name` itself when it exists (or is a hub id); else the README alias's real location when that exists."""
    if os.path.exists(name):
        return name
    for alias, real in CHECKPOINT_ALIASES:
        if name.startswith(alias) and os.path.exists(real + name[len(alias):]):
            logger.info("%s: using %s (where training writes it)", name, real + name[len(alias):])
            return real + name[len(alias):]
    return name


def local_engine(args: argparse.Namespace) -> str:
    """hf or vllm for --engine: auto asks `resolve_engine` (vLLM when installed and a GPU torch can use is
    visible; GPUs it cannot use stop the run), except with --device cpu, an explicit request for the CPU."""
    from models.generation import resolve_engine

    if args.engine == "auto" and (args.device or "").startswith("cpu"):
        return "hf"
    return resolve_engine(args.engine)


def rm_trusts_remote_code(rm_class: str | None) -> bool:
    """Whether the reward model class loads the checkpoint's own code (intern, qwen, generalizable), so
    that the planner reads its config as its loader does."""
    from rms.value_models import value_model_classes

    return bool(getattr(value_model_classes().get(rm_class or ""), "trust_remote_code", False))


def plan_devices(args: argparse.Namespace, rm_path: str | None = None) -> Placement:
    """Where the policy and the reward model (at `rm_path`, if any) go (models/gpu_plan.py). The hf
    engine uses --device and puts the reward model on --rm_device or the policy's device; vLLM follows
    the placement rule. Nothing here initialises CUDA (vLLM forks its engine after this)."""
    rm_device = getattr(args, "rm_device", None)
    if args.use_api or local_engine(args) != "vllm":
        return Placement([], (rm_device or args.device) if rm_path else None, args.vllm_gpu_memory_utilization)
    trust = rm_trusts_remote_code(getattr(args, "rm_class", None))
    rm_bytes = model_shape(rm_path, trust_remote_code=trust)[1] if rm_path else None
    gpus = visible_gpus()
    placement = plan_placement(gpus, gpu_memory_bytes() if gpus else 0, rm_bytes, args.vllm_gpu_memory_utilization,
                               rm_device)
    if args.device and args.device.startswith("cuda"):  # --policy_device cuda:K: the policy on GPU K only
        placement.policy_gpus = [int(args.device.partition(":")[2] or 0)]
    return placement


def backend_from_args(args: argparse.Namespace, placement: Placement | None = None):
    """The generation backend the flags name (models.generation.build_backend): with vLLM, one engine
    on the first policy GPUs, or data-parallel replicas (one process per GPU group) when the plan has
    several or the policy's GPUs are not the first ones."""
    from models.generation import build_backend

    if args.use_api:
        return build_backend(args.backend, use_api=True)
    model = local_model_path(args.backend)
    if local_engine(args) != "vllm":
        return build_backend(model, engine="hf", device=args.device, batch_size=args.batch_size)
    placement = placement or plan_devices(args)
    gpus = placement.policy_gpus
    memory = placement.memory_utilization or DEFAULT_MEMORY_UTILIZATION
    if not gpus:  # a CPU build of vLLM
        return build_backend(model, engine="vllm", tensor_parallel_size=1, gpu_memory_utilization=memory)
    heads, weight_bytes = model_shape(model)
    tensor, data = plan_parallel(len(gpus), heads, weight_bytes, gpu_memory_bytes(), memory,
                                 args.vllm_tensor_parallel_size, args.vllm_data_parallel_size)
    logger.info("policy on GPUs %s: tensor parallel %d x data parallel %d, memory fraction %.2f", gpus, tensor, data,
                memory)
    if data == 1 and gpus[:tensor] == list(range(tensor)):
        return build_backend(model, engine="vllm", tensor_parallel_size=tensor, gpu_memory_utilization=memory)
    from models.data_parallel import DataParallelBackend

    return DataParallelBackend(model, data, engine="vllm", gpu_groups=replica_groups(gpus, tensor, data),
                               tensor_parallel_size=tensor, gpu_memory_utilization=memory)


def replica_groups(policy_gpus: Sequence[int], tensor: int, data: int, ids: Sequence[str] | None = None) -> list:
    """CUDA_VISIBLE_DEVICES of each replica: consecutive runs of `tensor` policy GPUs, named as this
    process sees them (its own CUDA_VISIBLE_DEVICES list, if set).

    >>> replica_groups([0, 1, 2, 3, 4, 5, 6], 1, 7, ["0", "1", "2", "3", "4", "5", "6", "7"])[-1]
    ['6']
    >>> replica_groups([0, 1, 2, 3], 2, 2, ["4", "5", "6", "7"])
    [['4', '5'], ['6', '7']]
    """
    ids = list(ids) if ids is not None else physical_gpu_ids()
    return [[ids[policy_gpus[replica * tensor + rank]] for rank in range(tensor)] for replica in range(data)]


def items_per_call(backend, sequences_per_item: int, default: int) -> int:
    """Problems (or trees) one generate call should carry: enough that each of the backend's `engines`
    gets at least its share of `preferred_batch_sequences`, in whole items per engine; `default` for a
    backend with no preference (hf). An explicit flag, when given, is used instead of this.

    >>> from types import SimpleNamespace as Backend
    >>> items_per_call(Backend(engines=8, preferred_batch_sequences=2048), 5, 32)
    416
    >>> items_per_call(Backend(engines=1, preferred_batch_sequences=0), 5, 32)
    32
    """
    preferred = getattr(backend, "preferred_batch_sequences", 0)
    if not preferred:
        return default
    engines = max(1, getattr(backend, "engines", 1))
    return engines * -(-preferred // (engines * max(1, sequences_per_item)))


def search_batching(backend, max_active: int | None, sequences_per_tree: int, default: int = 16) -> tuple[int, int]:
    """(trees searched at once, cohorts) for the tree search on `backend`. An engine outside this process
    (vllm, data-parallel replicas, a server) gets two cohorts, one generating while the other's programs
    are judged, each of `items_per_call` trees; hf keeps one cohort of `default` trees (its measured
    setting: the sandbox and the model share its CPUs). `max_active` (the flag) wins when given.

    >>> from types import SimpleNamespace as Backend
    >>> search_batching(Backend(engines=8, preferred_batch_sequences=2048), None, 5)
    (832, 2)
    >>> search_batching(Backend(engines=1, preferred_batch_sequences=0), None, 5), search_batching(Backend(), 4, 5)
    ((16, 1), (4, 1))
    """
    cohorts = 2 if getattr(backend, "preferred_batch_sequences", 0) else 1
    if max_active is None:
        max_active = cohorts * items_per_call(backend, sequences_per_tree, default)
    return max_active, min(cohorts, max_active)


def stop_strings(args: argparse.Namespace) -> list[str]:
    from prompts import get_stop_strings

    return args.stop if args.stop else get_stop_strings(args.domain)


# -- a stage's run: what is left to do ------------------------------------------------------------

def check_run_args(args: argparse.Namespace) -> None:
    """One-line errors for the shard and interpreter flags every stage has."""
    check_shards(args)
    env_check.check_interpreters(args.exec_python)


def plan_run(args: argparse.Namespace, output: str, result_args: Sequence[str]) -> tuple[list[Problem], dict]:
    """The problems this run (or shard) covers and the records `output` already holds; writes the
    arguments beside the output. Raises DataError on bad input or arguments that differ from the
    earlier run's."""
    problems = select_problems(get_benchmark(args.domain).load(args.directory, args.file), args.idx_list,
                               args.num_shards, args.shard_id)
    done = read_done(output, vars(args), result_args)
    write_json(output + ".args.json", vars(args))
    return problems, done
