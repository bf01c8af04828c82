"""Reward statistics of a sampling run: histograms of the rewards and of each problem's reward std.

Reads   generate/Common/<Domain>/<slug>/temp_<T>_tokens_<M>_completions[_no_format].jsonl (`--domain All`:
        the code domains' files together).
Writes  logs/<Domain|All>/<slug>/temp_<T>_tokens_<M>[_no_format]_{rewards,stds}.png (50 bins), and prints
        one JSON line: problems, mean reward, mean std, fraction of problems with zero std.
With --do_not_format on re-sampled ReST-GRPO prompts (experiment.collect_grpo_data) beside a run on the
plain prompts it gives the paper's naive-vs-ReST reward-spread comparison.

    python -m experiment.get_reward_data --domain TinyCode --backend models/ckpts/tiny-coder \
        --temperature 0.7 --max_tokens 256
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from data.jsonl import DataError, read_unique
from experiment import paths
from experiment.process_gen_data import CODE_DOMAINS, domain_list


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domain", default="All", help="one domain, a comma-separated list, or All (code domains)")
    parser.add_argument("--backend", default="gpt-4o-mini", help="the sampling run's model")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max_tokens", type=int, default=1024)
    parser.add_argument("--do_not_format", action="store_true", help="read the _no_format (ReST prompts) files")
    return parser.parse_args(argv)


def reward_stats(paths_: list[str]) -> tuple[list[float], list[float]]:
    """All rewards, and the population std of each problem's rewards."""
    rewards, stds = [], []
    for path in paths_:
        for _, item in read_unique(path):  # a problem twice would count twice
            completions = (item.get("result") or {}).get("completions") or []
            if completions:
                values = [completion["reward"] for completion in completions]
                rewards += values
                stds.append(float(np.std(values)))
    return rewards, stds


def histogram(values: list[float], title: str, xlabel: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.hist(values, bins=50, color="tab:blue", alpha=0.8)
    axis.set(title=title, xlabel=xlabel, ylabel="count")
    figure.tight_layout()
    figure.savefig(path, dpi=300)
    plt.close(figure)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        names = list(CODE_DOMAINS) if args.domain == paths.AGGREGATE else domain_list(args.domain)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sources = [paths.completions_path(domain, args.backend, args.temperature, args.max_tokens, args.do_not_format)
               for domain in names]
    sources = [source for source in sources if os.path.exists(source)]
    if not sources:
        print(f"error: no completions files for {args.domain} ({args.backend}, T={args.temperature}, "
              f"M={args.max_tokens})", file=sys.stderr)
        return 2
    rewards, stds = reward_stats(sources)
    label = "ReST-GRPO" if args.do_not_format else "Naive GRPO"
    where = paths.AGGREGATE if args.domain == paths.AGGREGATE or len(names) > 1 else names[0]
    plots = {}
    for kind, values, xlabel in (("rewards", rewards, "reward"), ("stds", stds, "reward std per problem")):
        plots[kind] = paths.reward_plot_path(where, args.backend, args.temperature, args.max_tokens,
                                             args.do_not_format, kind)
        histogram(values, f"{label}: {xlabel}", xlabel, plots[kind])
    print(json.dumps({"problems": len(stds), "mean_reward": float(np.mean(rewards)) if rewards else 0.0,
                      "mean_std": float(np.mean(stds)) if stds else 0.0,
                      "zero_std_fraction": float(np.mean([std == 0 for std in stds])) if stds else 0.0,
                      "plots": plots}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
