"""How far VinePPO's MC(K) values and PPO's critic are from the true values of held-out states (VinePPO,
section 7: value networks barely beat a constant at telling states apart).

Reads   a policy (a VinePPO critic-arm checkpoint, with its `critic.pt` value head beside the model, or any
        policy with --critic none), the benchmark's problems at --idx_list (held out: the test split).
Does    samples one solution per problem, cuts it into steps (models.vine.split_steps; states up to
        --max_value_steps), and values every state with --reference_rollouts rollouts (the "true" value,
        itself an estimate: its standard error is at most 0.5 / sqrt(reference_rollouts)), then with each K
        of --mc_rollouts (fresh rollouts), the critic head on the policy's last hidden state of the state,
        and the constant that best fits the reference values (their mean: the floor any estimator should beat).
Writes  --output (JSON): per estimator the RMSE and mean absolute error against the reference, the number
        of states, and the paired difference of absolute errors against the critic with its bootstrap interval
        (states resampled; evaluation.compare).

    python -m experiment.value_error --backend models/ckpts/vineppo/critic/checkpoint-16 --domain TinyMath \
        --file test.jsonl --idx_list 0,1,2,3 --mc_rollouts 4 8 --reference_rollouts 64 --output value_error.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

from data.jsonl import DataError, write_json
from experiment.common import add_problem_args, idx_list, select_problems


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_problem_args(parser, domain="TinyMath")
    parser.add_argument("--backend", required=True, help="the policy (a checkpoint folder)")
    parser.add_argument("--critic", default=None,
                        help="the critic head (default <backend>/critic.pt when it exists; 'none': no critic row)")
    parser.add_argument("--mc_rollouts", type=int, nargs="+", default=[4, 8], help="the K of each MC(K) row")
    parser.add_argument("--reference_rollouts", type=int, default=64, help="rollouts of the reference value")
    parser.add_argument("--max_value_steps", type=int, default=24, help="states after this many steps are skipped")
    parser.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (solutions, rollouts)")
    parser.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling of solutions and rollouts")
    parser.add_argument("--max_tokens", type=int, default=160, help="completion length limit (a cut one scores 0)")
    parser.add_argument("--rollout_batch_size", type=int, default=256, help="rows decoded together")
    parser.add_argument("--seed", type=int, default=0, help="seed of the solutions and rollouts")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--output", required=True, help="the JSON report")
    return parser.parse_args(argv)


def errors(estimates: list[float], reference: list[float]) -> dict:
    """RMSE and mean absolute error of `estimates` against `reference`.

    >>> errors([0.5, 1.0], [0.5, 0.0])
    {'rmse': 0.707107, 'mean_abs': 0.5, 'n_states': 2}
    """
    gaps = [estimate - truth for estimate, truth in zip(estimates, reference)]
    return {"rmse": round(math.sqrt(sum(gap * gap for gap in gaps) / len(gaps)), 6),
            "mean_abs": round(sum(abs(gap) for gap in gaps) / len(gaps), 6), "n_states": len(gaps)}


def states_of(problems, prompt_ids, generate, tokenizer, max_tokens: int, max_value_steps: int):
    """(owner problem index, prompt ids, completion prefix ids) of every state of one sampled solution per
    problem, as VinePPO cuts them (models.vine.value_cuts)."""
    from models.vine import ANSWER_PREFIX, split_steps, value_cuts

    solutions = generate(prompt_ids, 1, [max_tokens] * len(prompt_ids))
    states = []
    for owner, (prompt, (rollout,)) in enumerate(zip(prompt_ids, solutions)):
        ends = split_steps(rollout.token_ids, lambda token: tokenizer.decode([token], skip_special_tokens=True),
                           ANSWER_PREFIX)
        states += [(owner, prompt, list(rollout.token_ids[:cut])) for cut in value_cuts(ends, max_value_steps)]
    return states


def critic_values(model, head, states) -> list[float]:
    """The head on the policy's last hidden state of prompt + prefix (the state a token is sampled in)."""
    import torch

    values = []
    with torch.no_grad():
        for _, prompt, prefix in states:
            hidden = model(input_ids=torch.tensor([prompt + prefix]), output_hidden_states=True).hidden_states[-1]
            values.append(float(head(hidden[0, -1].float())))
    return values


def load_head(path: str, hidden_size: int):
    import torch

    head = torch.nn.Linear(hidden_size, 1)
    head.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["head"])
    return head


def paired_gap(errors_a: list[float], errors_b: list[float], seed: int) -> dict:
    """Mean of |error A| - |error B| over the same states, with its 95% bootstrap interval."""
    from dataclasses import asdict

    from evaluation.compare import paired_bootstrap

    return asdict(paired_bootstrap([[abs(e) for e in errors_a]], [[abs(e) for e in errors_b]], seed=seed))


def main(argv=None) -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from data.registry import get_benchmark
    from models.prompt_tokens import prompts_for_special_tokens
    from models.vine import hf_rollouts, mc_values
    from prompts import format_prompt

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    benchmark = get_benchmark(args.domain)
    try:
        problems = select_problems(benchmark.load(args.directory, args.file), idx_list(args.idx_list))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tokenizer = AutoTokenizer.from_pretrained(args.backend, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(args.backend, attn_implementation="sdpa", dtype=torch.float32).eval()
    prompts = prompts_for_special_tokens([format_prompt(problem, tokenizer) for problem in problems], tokenizer)
    prompt_ids = [tokenizer(prompt)["input_ids"] for prompt in prompts]
    configured = getattr(model.generation_config, "eos_token_id", None)
    eos = {tokenizer.eos_token_id, *(configured if isinstance(configured, list) else [configured])}
    generate = hf_rollouts(model, tokenizer, {token for token in eos if token is not None}, args.temperature,
                           args.top_p, 0, args.rollout_batch_size)
    states = states_of(problems, prompt_ids, generate, tokenizer, args.max_tokens, args.max_value_steps)

    def score(owners: list[int], completions: list[list[int]]) -> list[float]:
        texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
        return [benchmark.grade(problems[owner], text).reward for owner, text in zip(owners, texts)]

    owners = [owner for owner, _, _ in states]
    prefixes = [(prompt, prefix) for _, prompt, prefix in states]
    budgets = [args.max_tokens - len(prefix) for _, _, prefix in states]
    reference, _ = mc_values(prefixes, budgets, owners, generate, score, args.reference_rollouts)
    estimates = {f"MC(K={k})": mc_values(prefixes, budgets, owners, generate, score, k)[0] for k in args.mc_rollouts}
    critic = args.critic or os.path.join(args.backend, "critic.pt")
    if critic != "none" and os.path.exists(critic):
        estimates["critic"] = critic_values(model, load_head(critic, model.config.hidden_size), states)
    estimates["constant (mean of the reference)"] = [sum(reference) / len(reference)] * len(reference)
    report = {"states": len(states), "problems": len(problems), "reference_rollouts": args.reference_rollouts,
              "reference_mean": round(sum(reference) / len(reference), 6), "estimators": {}}
    gaps = {name: [value - truth for value, truth in zip(values, reference)] for name, values in estimates.items()}
    for name, values in estimates.items():
        report["estimators"][name] = errors(values, reference)
        if "critic" in gaps and name != "critic":
            report["estimators"][name]["abs_error_minus_critic"] = paired_gap(gaps[name], gaps["critic"], args.seed)
    write_json(args.output, report)
    write_json(args.output + ".args.json", vars(args))
    print(json.dumps(report["estimators"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
