"""The paper's claims in miniature on TinyCode on CPU, through the stage commands themselves
(`make reproduce`; `make demo` is the same protocol at a smaller size).

Runs in output/reproduce/ (or --work) as its working directory: its data/, generate/, output/, models/ckpts/
and rms/ckpts/ live there; the tiny policy is linked in from models/ckpts/tiny-coder (trained first if absent).
  problems  TinyCode's test distribution (held-out block pairs, four-step tasks), split by template into an
            RL pool and an evaluation pool that share no composition; the tiny policy was fine-tuned on
            neither (its train split is the other distribution)
  policies  sample the base policy on the RL pool -> naive (`basic`), ReST-GRPO, SFT, DPO and outcome data
            (and fresh groups of the base policy on every naive and ReST prompt: their zero-std shares) ->
            GRPO on naive data (the GRPO loss and, as its own arm, the DAPO loss), ReST-GRPO round 1, a second
            ReST round sampled with the round-1 policy, ReST-EM (SFT) and ReST-DPO baselines
  rankers   MCTS traces on the RL pool -> value data -> the value model (VM); outcome data -> the ORM
  evaluate  on the evaluation pool: every policy's pass@1; ORM best-of-N, VM best-of-N, ORM-MCTS and VM-MCTS
            at each budget of policy samples per problem; ReST-RL (the final ReST policy with VM-MCTS);
            checkpoints along training for the efficiency curve
Writes  <work>/table.md, table.json (every comparison a paired difference with its bootstrap interval,
        evaluation.compare; the rankers' AUC on the base policy's evaluation programs; zero-std fractions;
        elapsed_s), efficiency.png, budget.png, zero_std.png, commands.sh (every command in the order it
        started; `bash commands.sh` in <work> replays them one after another) and logs/<step>.log.
Independent stages run side by side (`parallel` in the config), each on `threads` torch threads.
A rerun resumes: stages resume by id, finished trainings and evaluations are kept.

    python -m experiment.reproduce [--config config/reproduce.json] [--work output/reproduce]

A config with `"experiment": "vineppo"` (config/vineppo.json) runs VinePPO's miniature instead
(experiment/reproduce_vineppo.py, in output/vineppo); `"experiment": "rest_mcts"` (config/rest_mcts.json)
ReST-MCTS*'s (experiment/reproduce_rest_mcts.py, in output/rest_mcts_mini).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from data.jsonl import write_json
from experiment import paths
from experiment.runner import REPO, Runner, Step, flags, ids, prepare_policy, stage_time, step_seconds

DOMAIN = "TinyCode"
RL_FILE, EVAL_FILE = "rl.jsonl", "eval.jsonl"
# Which ready step starts first when a lane frees (the others keep their order): the chain to the rankers
# and the ReST rounds early, because the largest block of work (decoding at three budgets) waits on the
# rankers and ReST-RL on round 2.
PRIORITY = ["problems", "sample_base", "data_naive", "data_rest", "data_orm", "data_sft", "data_dpo", "rest_round1",
            "mcts_traces", "data_value", "train_orm", "train_vm", "sample_round1", "data_rest_round2", "rest_round2",
            "naive_grpo"]


def prepare(config: dict, run: Runner) -> list[Step]:
    """The tiny policy linked in; the problem pools generated."""
    prepare_policy(config, run)
    data = config["problems"]
    return [Step("problems", "TinyCode problems: RL and evaluation pools split by template",
                 ["python", "-m", "data.tinycode", "--seed", str(config["seed"]), "--n_train", str(data["n_train"]),
                  "--n_test", str(data["n_test"]), "--split_fraction", str(data["split_fraction"])],
                 done=os.path.join("data", DOMAIN, EVAL_FILE))]


class Protocol:
    """Builds every step of the experiment from the config, and knows where each output lands."""

    def __init__(self, config: dict):
        self.config = config
        self.T, self.M, self.seed = str(config["temperature"]), str(config["max_tokens"]), str(config["seed"])
        self.policy = config["policy"]

    # -- policies --------------------------------------------------------------------------------------------
    def sample(self, name: str, policy: str, after: tuple[str, ...]) -> Step:
        return Step(name, f"sample {policy} on the RL pool", [
            "python", "-m", "experiment.sample", "--domain", DOMAIN, "--file", RL_FILE, "--idx_list",
            ids(self.config["rl_problems"]), "--n", str(self.config["sample_n"]), "--seed", self.seed,
            "--backend", policy, "--temperature", self.T, "--max_tokens", self.M], after)

    def process(self, name: str, policy: str, mode: str, extra: list[str], output: str, after: tuple) -> Step:
        return Step(name, f"{mode} data from {policy}'s samples", [
            "python", "-m", "experiment.process_gen_data", "--domain", DOMAIN, "--method", "Common", "--mode", mode,
            *extra, "--seed", self.seed, "--backend", policy, "--temperature", self.T, "--max_tokens", self.M],
            after, done=os.path.join(paths.common_dir(DOMAIN, policy), output))

    def grpo_data(self, policy: str, kind: str) -> str:
        rest = self.config["rest"]
        if kind == "naive":
            return paths.grpo_data_name(self.config["temperature"], self.config["max_tokens"], 0.05, 0.9, 0, 0.95)
        return paths.grpo_data_name(self.config["temperature"], self.config["max_tokens"],
                                    rest["std_accept_threshold_grpo"], rest["completion_accept_threshold_grpo"],
                                    rest["n_sample"], rest["alpha"])

    def grpo(self, name: str, start: str, data_name: str, data_policy: str, loss: dict, after: tuple) -> Step:
        settings = self.config["grpo"]
        save_dir = os.path.join("models", "ckpts", "grpo", name)
        data = os.path.join(paths.common_dir(DOMAIN, data_policy), data_name)
        return Step(name, f"GRPO: {name}", [
            "python", os.path.join(REPO, "models", "train_grpo.py"), start, save_dir, data,
            *flags({key: value for key, value in settings.items()}), *flags(loss), "--temperature", self.T,
            "--max_completion_length", self.M, "--max_prompt_length", "512", "--report_to", "none",
            "--logging_steps", "1", "--seed", self.seed], after, done=os.path.join(save_dir, "trainer_state.json"))

    def zero_std_output(self) -> str:
        return os.path.join(paths.common_dir(DOMAIN, self.policy), "zero_std_naive_rest.jsonl")

    def zero_std_step(self) -> Step:
        """Fresh groups of the base policy on every prompt of the naive and the round-1 ReST data (Fig. x2)."""
        directory = paths.common_dir(DOMAIN, self.policy)
        settings = self.config["zero_std"]
        return Step("zero_std", "zero-std groups of the naive and the ReST data, on fresh samples", [
            "python", "-m", "experiment.zero_std", "--backend", self.policy, "--n",
            str(self.config["grpo"]["num_generations"]), "--groups", str(settings["groups"]), "--temperature", self.T,
            "--max_tokens", self.M, "--seed", self.seed,
            "--data", "naive=" + os.path.join(directory, self.grpo_data(self.policy, "naive")),
            "--data", "rest=" + os.path.join(directory, self.grpo_data(self.policy, "rest")),
            "--output", self.zero_std_output()], ("data_naive", "data_rest"))

    def baseline(self, name: str, mode: str, data_name: str, after: tuple) -> Step:
        save_dir = os.path.join("models", "ckpts", mode, name)
        data = os.path.join(paths.common_dir(DOMAIN, self.policy), data_name)
        return Step(name, f"{mode.upper()} baseline", [
            "python", os.path.join(REPO, "models", "train.py"), self.policy, save_dir, data, "--mode", mode,
            *flags(self.config[mode]), "--report_to", "none", "--logging_steps", "5", "--save_strategy", "no",
            "--seed", self.seed], after, done=os.path.join(save_dir, "config.json"))

    def policy_steps(self) -> tuple[list[Step], dict[str, str]]:
        base, config = self.policy, self.config
        rest = flags(config["rest"])
        t, m = config["temperature"], config["max_tokens"]
        steps = [self.sample("sample_base", base, ("problems",)),
                 self.process("data_naive", base, "grpo", ["--n_sample", "0"], self.grpo_data(base, "naive"),
                              ("sample_base",)),
                 self.process("data_rest", base, "grpo", rest, self.grpo_data(base, "rest"), ("sample_base",)),
                 self.process("data_orm", base, "orm", [], paths.orm_data_name(t, m), ("sample_base",)),
                 self.process("data_sft", base, "sft", [], paths.sft_data_name(t, m), ("sample_base",)),
                 self.process("data_dpo", base, "dpo", [], paths.dpo_data_name(t, m), ("sample_base",)),
                 self.zero_std_step()]
        grpo_loss, dapo_loss = config["grpo_loss"], config["dapo_loss"]
        steps += [self.grpo("rest_round1", base, self.grpo_data(base, "rest"), base, grpo_loss, ("data_rest",)),
                  self.grpo("naive_grpo", base, self.grpo_data(base, "naive"), base, grpo_loss, ("data_naive",)),
                  self.grpo("naive_dapo", base, self.grpo_data(base, "naive"), base, dapo_loss, ("data_naive",))]
        round1 = os.path.join("models", "ckpts", "grpo", "rest_round1")
        steps += [self.sample("sample_round1", round1, ("rest_round1",)),
                  self.process("data_rest_round2", round1, "grpo", rest, self.grpo_data(round1, "rest"),
                               ("sample_round1",)),
                  self.grpo("rest_round2", round1, self.grpo_data(round1, "rest"), round1, grpo_loss,
                            ("data_rest_round2",)),
                  self.baseline("rest_em_sft", "sft", paths.sft_data_name(t, m), ("data_sft",)),
                  self.baseline("rest_dpo", "dpo", paths.dpo_data_name(t, m), ("data_dpo",))]
        policies = {"base": base, "naive_grpo": os.path.join("models", "ckpts", "grpo", "naive_grpo"),
                    "naive_dapo": os.path.join("models", "ckpts", "grpo", "naive_dapo"), "rest_round1": round1,
                    "rest_round2": os.path.join("models", "ckpts", "grpo", "rest_round2"),
                    "rest_em_sft": os.path.join("models", "ckpts", "sft", "rest_em_sft"),
                    "rest_dpo": os.path.join("models", "ckpts", "dpo", "rest_dpo")}
        return steps, policies

    # -- rankers ---------------------------------------------------------------------------------------------
    def ranker_steps(self) -> tuple[list[Step], dict[str, str]]:
        config, base = self.config, self.policy
        mcts = config["mcts"]
        trace = paths.mcts_name(None, mcts["iteration_limit"], mcts["num_sample"], mcts["num_decision"],
                                mcts["exploration_constant"], mcts["eps"], config["temperature"], config["max_tokens"])
        value_data = os.path.join(paths.mcts_dir(DOMAIN, base), paths.value_data_name(trace))
        orm_data = os.path.join(paths.common_dir(DOMAIN, base),
                                paths.orm_data_name(config["temperature"], config["max_tokens"]))
        steps = [Step("mcts_traces", "MCTS traces of the base policy on the RL pool", [
                     "python", "-m", "experiment.sample_mcts", "--domain", DOMAIN, "--file", RL_FILE, "--idx_list",
                     ids(config["mcts_train_problems"]), "--backend", base, "--temperature", self.T, "--max_tokens",
                     self.M, "--seed", self.seed, *flags(mcts)], ("problems",)),
                 Step("data_value", "value data from the MCTS traces", [
                     "python", "-m", "experiment.process_gen_data", "--domain", DOMAIN, "--method", "MCTS",
                     "--backend", base, "--temperature", self.T, "--max_tokens", self.M, *flags(mcts)],
                     ("mcts_traces",), done=value_data)]
        models = {}
        value = config["value_model"]
        for label, data, after in (("vm", value_data, "data_value"), ("orm", orm_data, "data_orm")):
            save_dir = os.path.join("rms", "ckpts", label, "1")
            models[label] = save_dir
            steps.append(Step(f"train_{label}", f"train the {label.upper()}", [
                "python", os.path.join(REPO, "rms", "train.py"), base, save_dir, data, "transformers_scalar",
                "--rm_type", "prm" if label == "vm" else "orm", "--deepspeed_config", "none", *flags(value),
                "--max_length", "512", "--report_to", "none", "--seed", self.seed], (after,),
                done=os.path.join(save_dir, "best", "config.json")))
        return steps, models

    # -- evaluation ------------------------------------------------------------------------------------------
    def evaluation(self, name: str, policy: str, extra: list[str], problems: int, after: tuple) -> tuple[Step, str]:
        argv = ["--domain", DOMAIN, "--file", EVAL_FILE, "--backend", policy, "--temperature", self.T,
                "--max_tokens", self.M, *extra]
        from evaluation.eval import output_paths, parse_args

        results = output_paths(parse_args(argv))["results"]
        return Step(name, f"evaluate {name}", ["python", "-m", "evaluation.eval", *argv, "--idx_list", ids(problems),
                                               "--seed", self.seed], after, done=results), results

    def evaluation_steps(self, policies: dict[str, str], models: dict[str, str],
                         train_names: dict[str, str]) -> tuple[list[Step], dict[str, str]]:
        config = self.config
        steps, results = [], {}
        count, n = config["eval_problems"], str(config["eval_n"])
        for label, policy in policies.items():
            step, results[label] = self.evaluation(f"eval_{label}", policy, ["--n", n], count,
                                                   (train_names.get(label, "problems"),))
            steps.append(step)
        decoding = config["decoding"]
        count = decoding["eval_problems"]  # the first problems of the policies' evaluation set
        search = flags({key: decoding[key] for key in ("num_decision", "exploration_constant", "eps")})
        for budget in decoding["budgets"]:
            per_node = decoding["num_sample"]
            mcts = ["--method", "MCTS", "--iteration_limit", str(budget // per_node), "--num_sample", str(per_node),
                    *search]
            rows = {f"orm_bon@{budget}": (self.policy, "orm", ["--num_sample", str(budget)]),
                    f"vm_bon@{budget}": (self.policy, "vm", ["--num_sample", str(budget)]),
                    f"orm_mcts@{budget}": (self.policy, "orm", mcts),
                    f"vm_mcts@{budget}": (self.policy, "vm", mcts)}
            if budget == decoding["rest_rl_budget"]:
                rows[f"rest_rl@{budget}"] = (policies["rest_round2"], "vm", mcts)
            for label, (policy, ranker, extra) in rows.items():
                after = (f"train_{ranker}",) + ((train_names["rest_round2"],) if label.startswith("rest_rl") else ())
                step, results[label] = self.evaluation(
                    f"eval_{label.replace('@', '_at_')}", policy, ["--n", str(decoding["n"]), "--rm_backend",
                                                                  models[ranker], "--rm_type",
                                                                  "prm" if ranker == "vm" else "orm", *extra],
                    count, after)
                steps.append(step)
        return steps, results

    def curve_steps(self, policies: dict[str, str]) -> tuple[list[Step], dict[str, dict[int, str]]]:
        """Checkpoints along training on the first curve_problems evaluation problems."""
        grpo, steps, curves = self.config["grpo"], [], {}
        points = range(grpo["save_steps"], grpo["max_steps"], grpo["save_steps"])
        for label in self.config["curve_arms"]:
            curves[label] = {}
            for step_count in points:
                checkpoint = os.path.join(policies[label], f"checkpoint-{step_count}")
                step, curves[label][step_count] = self.evaluation(
                    f"curve_{label}_{step_count}", checkpoint, ["--n", str(self.config["curve_n"])],
                    self.config["curve_problems"], (label,))
                steps.append(step)
        return steps, curves


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=os.path.join(REPO, "config", "reproduce.json"), help="settings")
    parser.add_argument("--work", default=None,
                        help="working directory of the stages (default: the config's `work`, else output/reproduce)")
    parser.add_argument("--table_only", action="store_true",
                        help="run no stage: build the table from what has finished (rows not finished are listed)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    args.work = args.work or config.get("work", os.path.join("output", "reproduce"))
    if config.get("experiment") == "vineppo":  # VinePPO's miniature: its own protocol and table
        from experiment.reproduce_vineppo import run as run_vineppo

        return run_vineppo(args, config)
    if config.get("experiment") == "rest_mcts":  # ReST-MCTS*'s miniature: its own protocol and table
        from experiment.reproduce_rest_mcts import run as run_rest_mcts

        return run_rest_mcts(args, config)
    os.makedirs(args.work, exist_ok=True)
    write_json(os.path.join(args.work, "reproduce.args.json"), {"config": config, "work": args.work})
    run = Runner(args.work, config["threads"], config["parallel"])
    protocol = Protocol(config)
    policy_steps, policies = protocol.policy_steps()
    ranker_steps, models = protocol.ranker_steps()
    train_names = {label: label for label in policies if label != "base"}
    evaluation_steps, results = protocol.evaluation_steps(policies, models, train_names)
    curve_steps, curves = protocol.curve_steps(policies)
    steps = prepare(config, run) + policy_steps + ranker_steps + evaluation_steps + curve_steps
    if not args.table_only:
        run.run(sorted(steps, key=lambda step: PRIORITY.index(step.name) if step.name in PRIORITY else len(PRIORITY)))
    from experiment.reproduce_table import write_outputs

    def elapsed() -> float:
        return stage_time(args.work, run, record=not args.table_only)

    write_outputs(args.work, config, policies, models, results, curves, elapsed, lambda: step_seconds(args.work),
                  zero_std_path=protocol.zero_std_output())
    return 0


def load_config(path: str) -> dict:
    """A config file; one with `"base": "<file>"` (beside it) holds only what differs from that file, merged
    into it key by key (nested settings too).

    >>> merge({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"d": 4}})
    {'a': 1, 'b': {'c': 2, 'd': 4}}
    """
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    base = config.pop("base", None)
    return merge(load_config(os.path.join(os.path.dirname(path), base)), config) if base else config


def merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


if __name__ == "__main__":
    sys.exit(main())
