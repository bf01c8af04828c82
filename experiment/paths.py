"""Every output path of every stage, in one place (the original's names, ARCHITECTURE.md).

Names follow the original convention: the backend slug is the model id or path with `/` -> `--`,
numbers print as Python `str()` of the parsed value (`0.7`, `1.0`, `None`), paths are relative to
the working directory.

    >>> completions_path("APPS", "Qwen/Qwen2.5-Coder-7B-Instruct", 0.7, 1024)
    'generate/Common/APPS/Qwen--Qwen2.5-Coder-7B-Instruct/temp_0.7_tokens_1024_completions.jsonl'
    >>> grpo_data_name(0.7, 1024, 0.05, 0.9, 0.5, 0.95)
    'temp_0.7_tokens_1024_grpo_data_0.05_0.9_0.5_0.95.jsonl'
    >>> shard_path("generate/x.jsonl", 1, 4)
    'generate/x.shard-1-of-4.jsonl'
"""
from __future__ import annotations

import hashlib
import os

GENERATE = "generate"
OUTPUT = "output"
LOGS = "logs"
AGGREGATE = "All"  # the directory of files aggregated over domains


def slug(backend: str) -> str:
    """`Qwen/Qwen2.5-Coder-7B-Instruct` -> `Qwen--Qwen2.5-Coder-7B-Instruct`."""
    return backend.replace("/", "--")


def short_slug(backend: str, limit: int = 64) -> str:
    """`slug`, or for a longer one its last characters after a hash of the whole, so a file name that holds it
    stays under the file system's 255 bytes (a value model's absolute path inside an evaluation's name).

    >>> short_slug("rms/ckpts/v/1")
    'rms--ckpts--v--1'
    >>> name = short_slug("/tmp/" + "x" * 80 + "/round_2/value"); len(name), name.endswith("--round_2--value")
    (64, True)
    """
    full = slug(backend)
    if len(full) <= limit:
        return full
    digest = hashlib.sha1(full.encode("utf-8")).hexdigest()[:12]
    return f"{digest}-{full[-(limit - len(digest) - 1):]}"


def shard_path(path: str, shard_id: int, num_shards: int) -> str:
    """`<name>.shard-<i>-of-<N>.jsonl` beside `<name>.jsonl` (no shard suffix when N is 1)."""
    if num_shards <= 1:
        return path
    stem = path[: -len(".jsonl")] if path.endswith(".jsonl") else path
    return f"{stem}.shard-{shard_id}-of-{num_shards}.jsonl"


# -- stage 1: common sampling and its processed data ----------------------------------------------

def common_dir(domain: str, backend: str) -> str:
    return os.path.join(GENERATE, "Common", domain, slug(backend))


def completions_name(temperature: float, max_tokens: int, do_not_format: bool = False) -> str:
    suffix = "_completions_no_format.jsonl" if do_not_format else "_completions.jsonl"
    return f"temp_{temperature}_tokens_{max_tokens}{suffix}"


def completions_path(domain: str, backend: str, temperature: float, max_tokens: int,
                     do_not_format: bool = False) -> str:
    return os.path.join(common_dir(domain, backend), completions_name(temperature, max_tokens, do_not_format))


def grpo_data_name(temperature: float, max_tokens: int, std_threshold: float, completion_threshold: float,
                   n_sample: int | float, alpha: float, extract_all_lines: bool = False) -> str:
    """The original's three names: `_all` (every prefix), `_basic` (n_sample <= 0: naive GRPO data),
    else thresholds, n_sample and alpha."""
    head = f"temp_{temperature}_tokens_{max_tokens}_grpo_data"
    if extract_all_lines:
        return f"{head}_{std_threshold}_{completion_threshold}_all.jsonl"
    if n_sample <= 0:
        return f"{head}_basic.jsonl"
    return f"{head}_{std_threshold}_{completion_threshold}_{n_sample}_{alpha}.jsonl"


def dpo_data_name(temperature: float, max_tokens: int) -> str:
    return f"temp_{temperature}_tokens_{max_tokens}_dpo_data.jsonl"


def sft_data_name(temperature: float, max_tokens: int) -> str:
    return f"temp_{temperature}_tokens_{max_tokens}_sft_data.jsonl"


def quality_data_name(temperature: float, max_tokens: int) -> str:
    """ReST-MCTS*'s round-0 value data (ours): the samples as a prefix tree with quality values."""
    return f"temp_{temperature}_tokens_{max_tokens}_quality_data.jsonl"


def orm_data_name(temperature: float, max_tokens: int) -> str:
    """Outcome-reward data (ours): every sampled program with its final reward, value-data records."""
    return f"temp_{temperature}_tokens_{max_tokens}_orm_data.jsonl"


def problem_grpo_data_name(file: str | None) -> str:
    """GRPO data of every problem of a data file, no sampling first (`experiment.grpo_prompts`, for
    VinePPO and on-policy GRPO): `grpo_data_<file stem>.jsonl` (`grpo_data_test.jsonl` for the default)."""
    stem = os.path.basename(file or "test.jsonl").split(".")[0]
    return f"grpo_data_{stem}.jsonl"


def prompts_name(data_name: str) -> str:
    """GRPO data re-written as problems to re-sample (`collect_grpo_data`): `<stem>_prompts.jsonl`
    (the original's rstrip('.jsonl') turned `_all` into `_a`; the suffix is removed here)."""
    stem = data_name[: -len(".jsonl")] if data_name.endswith(".jsonl") else data_name
    return f"{stem}_prompts.jsonl"


def reward_plot_path(domain: str, backend: str, temperature: float, max_tokens: int, do_not_format: bool,
                     kind: str) -> str:
    """`logs/{domain}/{slug}/temp_{T}_tokens_{M}[_no_format]_{rewards|stds}.png`."""
    suffix = "_no_format" if do_not_format else ""
    return os.path.join(LOGS, domain, slug(backend), f"temp_{temperature}_tokens_{max_tokens}{suffix}_{kind}.png")


# -- stage 2: MCTS traces and value data -----------------------------------------------------------

def mcts_name(time_limit: float | None, iteration_limit: int | None, num_sample: int, num_decision: int,
              exploration_constant: float, eps: float, temperature: float, max_tokens: int,
              use_thought: bool = False, mc_rollouts: int = 0) -> str:
    """The original's trace name; traces with Monte-Carlo value targets (K rollouts per line prefix)
    end in `_mc_<K>` so they never mix with plain ones."""
    return (f"time_{time_limit}_iter_{iteration_limit}_sample_{num_sample}_decision_{num_decision}"
            f"_exp_{exploration_constant}_eps_{eps}_temp_{temperature}_tokens_{max_tokens}"
            f"_thought_{'yes' if use_thought else 'no'}{f'_mc_{mc_rollouts}' if mc_rollouts else ''}.jsonl")


def mcts_dir(domain: str, backend: str) -> str:
    return os.path.join(GENERATE, "MCTS", domain, slug(backend))


def mcts_path(domain: str, backend: str, **settings) -> str:
    return os.path.join(mcts_dir(domain, backend), mcts_name(**settings))


def mcts_star_name(mode: str, time_limit: float | None, iteration_limit: int | None, branch: int,
                   exploration_constant: float, roll_forward_steps: int, end_gate: float, inf: float, alpha: float,
                   max_depth: int, temperature: float, max_tokens: int) -> str:
    """An MCTS* trace's name (`sample_mcts --algorithm star`): every setting that changes the search.

    >>> mcts_star_name("generate", None, 40, 3, 0.5, 1, 0.8, 0.9, 0.5, 16, 0.7, 256)[:60]
    'star_generate_time_None_iter_40_branch_3_exp_0.5_roll_1_gate'
    """
    return (f"star_{mode}_time_{time_limit}_iter_{iteration_limit}_branch_{branch}_exp_{exploration_constant}"
            f"_roll_{roll_forward_steps}_gate_{end_gate}_inf_{inf}_alpha_{alpha}_depth_{max_depth}"
            f"_temp_{temperature}_tokens_{max_tokens}.jsonl")


def mcts_star_path(domain: str, backend: str, **settings) -> str:
    """`generate/MCTS_STAR/<Domain>/<slug>/<mcts_star_name>`."""
    return os.path.join(GENERATE, "MCTS_STAR", domain, slug(backend), mcts_star_name(**settings))


def value_data_name(trace_name: str, aggregated_domains: list[str] | None = None) -> str:
    """`<trace stem>_rewards.jsonl`; aggregated: `<stem>_domains_<D1>_<D2>..._rewards.jsonl`."""
    stem = trace_name[: -len(".jsonl")]
    if aggregated_domains:
        stem += "_domains_" + "_".join(aggregated_domains)
    return f"{stem}_rewards.jsonl"


def policy_data_name(trace_name: str, value_threshold: float, len_threshold: int,
                     aggregated_domains: list[str] | None = None) -> str:
    """ReST-MCTS*'s policy (SFT) data from a star trace: `<trace stem>_sft_data_<value>_<len>.jsonl`;
    aggregated: `<stem>_domains_<D1>_<D2>..._sft_data_<value>_<len>.jsonl`.

    >>> policy_data_name("trace.jsonl", 0.2, 50)
    'trace_sft_data_0.2_50.jsonl'
    """
    stem = trace_name[: -len(".jsonl")]
    if aggregated_domains:
        stem += "_domains_" + "_".join(aggregated_domains)
    return f"{stem}_sft_data_{value_threshold}_{len_threshold}.jsonl"


# -- evaluation --------------------------------------------------------------------------------------

def eval_dir(domain: str, method: str, backend: str) -> str:
    """`output/{domain}_results/{Common|MCTS}/{slug}/` (lower-case domain, as the original's apps_results)."""
    return os.path.join(OUTPUT, f"{domain.lower()}_results", method, slug(backend))


def eval_name(kind: str, temperature: float, max_tokens: int, n: int, method: str = "Common",
              rm_backend: str | None = None, rm_class: str | None = None, rm_type: str | None = None,
              num_sample: int = 5, search: dict | None = None, vote: str | None = None) -> str:
    """The original's evaluation file names with the reward model's class and type added, so runs with other
    reward models do not overwrite or resume each other; `kind`: completions, verified or results. MCTS_STAR
    names carry its `search` settings (as `mcts_star_name`), and a voting method (SC, MCTS_STAR) its `vote`.

    >>> eval_name("results", 0.7, 1024, 1)
    'temp_0.7_tokens_1024_n_1_results.jsonl'
    >>> eval_name("verified", 0.7, 1024, 1, rm_backend="rms/ckpts/v/1", rm_class="transformers_scalar",
    ...           rm_type="orm", num_sample=8)
    'rm_rms--ckpts--v--1_transformers_scalar_orm_sample_8_temp_0.7_tokens_1024_n_1_verified.jsonl'
    """
    if method == "MCTS_STAR":
        stem = mcts_star_name(**{**(search or {}), "temperature": temperature, "max_tokens": max_tokens})
        return (f"rm_{short_slug(rm_backend or 'none')}_{rm_class}_vote_{vote}_{stem[: -len('.jsonl')]}"
                f"_n_{n}_{kind}.jsonl")
    head = f"vote_{vote}_" if vote else ""
    if method == "MCTS" or rm_backend:
        head += f"rm_{short_slug(rm_backend or 'none')}_{rm_class}_{rm_type}_"
        if method == "MCTS":
            settings = search or {}
            head += (f"time_{settings.get('time_limit')}_iter_{settings.get('iteration_limit')}_sample_{num_sample}"
                     f"_decision_{settings.get('num_decision')}_exp_{settings.get('exploration_constant')}"
                     f"_eps_{settings.get('eps')}_")
        else:
            head += f"sample_{num_sample}_"
    elif vote:
        head += f"sample_{num_sample}_"
    return f"{head}temp_{temperature}_tokens_{max_tokens}_n_{n}_{kind}.jsonl"
