"""The paper's claims in miniature on TinyCode on CPU, through the stage commands themselves
(`make reproduce`; `make demo` is the same protocol at a smaller size). Protocol v2 (docs/experiment.md).

Runs in output/reproduce/ (or --work) as its working directory: its data/, generate/, output/, models/ckpts/
and rms/ckpts/ live there; the tiny policy is linked in from models/ckpts/tiny-coder (trained first if absent).
  problems  TinyCode's test distribution (held-out block pairs, four-step tasks), split by template into an
            RL pool and an evaluation pool that share no composition; the tiny policy was fine-tuned on
            neither (its train split is the other distribution). The alpha rule (experiment/reproduce_rules.py)
            is applied to the RL pool's reference programs before any other step is built.
  policies  sample the base policy on the RL pool -> naive (`basic`), ReST-GRPO (alpha 0.95), alpha-matched ReST,
            SFT, DPO and outcome data (and fresh groups of the base policy on every naive and ReST prompt: their
            zero-std shares) -> GRPO, every arm the same max_steps (checked to cover each arm's data), on naive data
            (the GRPO loss, per training seed; the DAPO loss once), ReST-GRPO round 1 and the alpha-matched arm
            (per seed), a second ReST round per seed sampled with that seed's round-1 policy, ReST-EM (SFT) and
            ReST-DPO baselines (once)
  rankers   MCTS traces on the whole RL pool (the ORM's problems) -> value data -> the value model (VM);
            outcome data -> the ORM
  evaluate  on the evaluation pool: every policy's pass@1 (each seed); ORM best-of-N, VM best-of-N, ORM-MCTS and
            VM-MCTS at each budget of policy samples per problem; ReST-RL (each round-2 seed with VM-MCTS);
            checkpoints along training for the efficiency curve
Writes  <work>/table.md, table.json (every comparison a paired difference with its bootstrap interval,
        evaluation.compare, seeds resampled; the rankers' AUC on the base policy's evaluation programs and the gate
        it decides; zero-std fractions; the alpha rule; each arm's data, steps and symbol-bonus groups; elapsed_s),
        efficiency.png, budget.png, zero_std.png, commands.sh (every command in the order it started; `bash
        commands.sh` in <work> replays them one after another) and logs/<step>.log.
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
from experiment.reproduce_rules import alpha_rule, prompts_per_step, reference_line_counts, runtime_estimate
from experiment.runner import REPO, Runner, Step, flags, ids, prepare_policy, stage_time, step_seconds

DOMAIN = "TinyCode"
RL_FILE, EVAL_FILE = "rl.jsonl", "eval.jsonl"
# arms trained once per seed of `train_seeds` (the others, DAPO, SFT and DPO, once with `seed`)
SEEDED_ARMS = ("naive_grpo", "rest_round1", "rest_round2", "rest_alpha_matched")
# the GRPO data each first-round arm trains on (round 2 trains on ReST data of its own round-1 policy)
ARM_DATA = {"naive_grpo": "naive", "naive_dapo": "naive", "rest_round1": "rest", "rest_alpha_matched": "alpha_matched"}
GRPO_ARMS = (*ARM_DATA, "rest_round2")
# Which ready step starts first when a lane frees (by name prefix; the others keep their order): the chains to the
# rankers and to ReST round 2 early, because the largest block of work (decoding at three budgets) waits on the
# rankers, and round 2 and ReST-RL on round 1.
PRIORITY = ("problems", "sample_base", "data_", "steps_", "mcts_traces", "rest_round1_", "train_", "sample_round1_",
            "rest_round2_", "rest_alpha_matched_", "naive_grpo_", "naive_dapo_", "zero_std")


def priority(step: Step) -> int:
    return next((rank for rank, prefix in enumerate(PRIORITY) if step.name.startswith(prefix)), len(PRIORITY))


def problems_step(config: dict) -> Step:
    """The problem pools, generated."""
    data = config["problems"]
    return Step("problems", "TinyCode problems: RL and evaluation pools split by template",
                ["python", "-m", "data.tinycode", "--seed", str(config["seed"]), "--n_train", str(data["n_train"]),
                 "--n_test", str(data["n_test"]), "--split_fraction", str(data["split_fraction"])],
                done=os.path.join("data", DOMAIN, EVAL_FILE))


def alpha_rule_of(work: str, config: dict) -> dict | None:
    """The alpha-matched ReST arm's alpha by the config's rule on the RL pool's reference programs (None before
    the pools exist: a --table_only run on an empty working directory)."""
    directory = os.path.join(work, "data", DOMAIN)
    if not os.path.exists(os.path.join(directory, RL_FILE)):
        return None
    counts = reference_line_counts(directory, RL_FILE, config["rl_problems"])
    return alpha_rule(counts, config["rest"]["n_sample"], config["rest_alpha_rule"], config["rest"]["alpha"])


class Protocol:
    """Builds every step of the experiment from the config, and knows where each output lands: `policies`,
    `results` (row -> one path per training seed), `seeds`, `train_data` (GRPO arm -> its data per seed),
    `curves`, `models` and `trace`, for the table."""

    def __init__(self, config: dict, alpha_matched: float | None):
        self.config = config
        self.T, self.M, self.seed = str(config["temperature"]), str(config["max_tokens"]), str(config["seed"])
        self.policy = config["policy"]
        self.alpha_matched = alpha_matched  # None only before the pools exist, when nothing runs (--table_only)
        self.seeds = {arm: list(config["train_seeds"]) if arm in SEEDED_ARMS else [config["seed"]]
                      for arm in GRPO_ARMS}
        self.policies: dict[str, list[str]] = {}
        self.results: dict[str, list[str]] = {}
        self.train_data: dict[str, list[str]] = {}
        self.trained_by: dict[str, list[str]] = {}  # row -> the step that trained each of its policies
        self.curves: dict[str, dict[int, str]] = {}
        self.models: dict[str, str] = {}
        self.trace = ""

    def steps(self) -> list[Step]:
        """Every step after the problem pools, in priority order."""
        steps = self.policy_steps() + self.ranker_steps() + self.evaluation_steps() + self.curve_steps()
        return sorted(steps, key=priority)

    # -- data ------------------------------------------------------------------------------------------------
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

    def data_settings(self, kind: str) -> dict:
        """process_gen_data's GRPO flags of naive (`basic`), ReST (alpha 0.95) and alpha-matched ReST data."""
        rest = self.config["rest"]
        settings = {"naive": {**rest, "n_sample": 0}, "rest": rest,
                    "alpha_matched": {**rest, "alpha": self.alpha_matched}}
        return settings[kind]

    def grpo_data(self, policy: str, kind: str) -> str:
        settings = self.data_settings(kind)
        return os.path.join(paths.common_dir(DOMAIN, policy), paths.grpo_data_name(
            self.config["temperature"], self.config["max_tokens"], settings["std_accept_threshold_grpo"],
            settings["completion_accept_threshold_grpo"], settings["n_sample"], settings["alpha"]))

    def grpo_data_step(self, name: str, policy: str, kind: str, after: tuple) -> Step:
        return self.process(name, policy, "grpo", flags(self.data_settings(kind)),
                            os.path.basename(self.grpo_data(policy, kind)), after)

    def steps_check(self, label: str, data: str, after: str) -> Step:
        """Fails the run before any training on `data` when the common max_steps cannot cover it."""
        grpo = self.config["grpo"]
        return Step(f"steps_{label}", f"check that {grpo['max_steps']} GRPO steps go once through the {label} data", [
            "python", "-m", "experiment.reproduce_rules", "--data", data, "--max_steps", str(grpo["max_steps"]),
            "--prompts_per_step", str(prompts_per_step(grpo))], (after,))

    def zero_std_output(self) -> str:
        return os.path.join(paths.common_dir(DOMAIN, self.policy), "zero_std_naive_rest.jsonl")

    def zero_std_step(self, kinds: list[str]) -> Step:
        """Fresh groups of the base policy on every prompt of the naive and the first-round ReST data (Fig. x2)."""
        labels = {"naive": "naive", "rest": "rest", "alpha_matched": "rest_alpha_matched"}
        data = [part for kind in kinds for part in ("--data", f"{labels[kind]}={self.grpo_data(self.policy, kind)}")]
        return Step("zero_std", "zero-std groups of the naive and the ReST data, on fresh samples", [
            "python", "-m", "experiment.zero_std", "--backend", self.policy, "--n",
            str(self.config["grpo"]["num_generations"]), "--groups", str(self.config["zero_std"]["groups"]),
            "--temperature", self.T, "--max_tokens", self.M, "--seed", self.seed, *data,
            "--output", self.zero_std_output()], tuple(f"data_{kind}" for kind in kinds))

    # -- policies --------------------------------------------------------------------------------------------
    def grpo(self, arm: str, seed: int, start: str, data: str, after: tuple) -> Step:
        """One training of a GRPO arm with one seed, in its own save dir; registers its row."""
        save_dir = os.path.join("models", "ckpts", "grpo", arm, f"seed_{seed}")
        name = f"{arm}_s{seed}"
        loss = self.config["dapo_loss" if arm == "naive_dapo" else "grpo_loss"]
        self.register(arm, save_dir, name)
        self.train_data.setdefault(arm, []).append(data)
        return Step(name, f"GRPO: {arm}, seed {seed}", [
            "python", os.path.join(REPO, "models", "train_grpo.py"), start, save_dir, data,
            *flags(self.config["grpo"]), *flags(loss), "--temperature", self.T, "--max_completion_length", self.M,
            "--max_prompt_length", "512", "--report_to", "none", "--logging_steps", "1", "--seed", str(seed)],
            after, done=os.path.join(save_dir, "trainer_state.json"))

    def register(self, label: str, policy: str, trained_by: str) -> None:
        self.policies.setdefault(label, []).append(policy)
        self.trained_by.setdefault(label, []).append(trained_by)

    def baseline(self, name: str, mode: str, data_name: str, after: tuple) -> Step:
        save_dir = os.path.join("models", "ckpts", mode, name)
        data = os.path.join(paths.common_dir(DOMAIN, self.policy), data_name)
        self.register(name, save_dir, name)
        self.seeds[name] = [self.config["seed"]]
        return Step(name, f"{mode.upper()} baseline", [
            "python", os.path.join(REPO, "models", "train.py"), self.policy, save_dir, data, "--mode", mode,
            *flags(self.config[mode]), "--report_to", "none", "--logging_steps", "5", "--save_strategy", "no",
            "--seed", self.seed], after, done=os.path.join(save_dir, "config.json"))

    def policy_steps(self) -> list[Step]:
        base, t, m = self.policy, self.config["temperature"], self.config["max_tokens"]
        self.register("base", base, "problems")
        self.seeds["base"] = []  # not trained
        kinds = ["naive", "rest", "alpha_matched"]
        steps = [self.sample("sample_base", base, ("problems",))]
        for kind in kinds:
            steps += [self.grpo_data_step(f"data_{kind}", base, kind, ("sample_base",)),
                      self.steps_check(kind, self.grpo_data(base, kind), f"data_{kind}")]
        steps += [self.process("data_orm", base, "orm", [], paths.orm_data_name(t, m), ("sample_base",)),
                  self.process("data_sft", base, "sft", [], paths.sft_data_name(t, m), ("sample_base",)),
                  self.process("data_dpo", base, "dpo", [], paths.dpo_data_name(t, m), ("sample_base",)),
                  self.zero_std_step(kinds)]
        for arm, kind in ARM_DATA.items():
            steps += [self.grpo(arm, seed, base, self.grpo_data(base, kind), (f"steps_{kind}",))
                      for seed in self.seeds[arm]]
        for seed in self.seeds["rest_round2"]:  # round 2 of seed s starts from round 1 of seed s
            round1 = self.policies["rest_round1"][self.seeds["rest_round1"].index(seed)]
            data = self.grpo_data(round1, "rest")
            steps += [self.sample(f"sample_round1_s{seed}", round1, (f"rest_round1_s{seed}",)),
                      self.grpo_data_step(f"data_rest_round2_s{seed}", round1, "rest", (f"sample_round1_s{seed}",)),
                      self.steps_check(f"round2_s{seed}", data, f"data_rest_round2_s{seed}"),
                      self.grpo("rest_round2", seed, round1, data, (f"steps_round2_s{seed}",))]
        steps += [self.baseline("rest_em_sft", "sft", paths.sft_data_name(t, m), ("data_sft",)),
                  self.baseline("rest_dpo", "dpo", paths.dpo_data_name(t, m), ("data_dpo",))]
        return steps

    # -- rankers ---------------------------------------------------------------------------------------------
    def ranker_steps(self) -> list[Step]:
        """The value model on MCTS traces of the ORM's problems (the whole RL pool), the ORM on the base samples."""
        config, base = self.config, self.policy
        mcts = config["mcts"]
        trace = paths.mcts_name(None, mcts["iteration_limit"], mcts["num_sample"], mcts["num_decision"],
                                mcts["exploration_constant"], mcts["eps"], config["temperature"], config["max_tokens"])
        self.trace = os.path.join(paths.mcts_dir(DOMAIN, base), trace)
        value_data = os.path.join(paths.mcts_dir(DOMAIN, base), paths.value_data_name(trace))
        orm_data = os.path.join(paths.common_dir(DOMAIN, base),
                                paths.orm_data_name(config["temperature"], config["max_tokens"]))
        steps = [Step("mcts_traces", "MCTS traces of the base policy on the RL pool", [
                     "python", "-m", "experiment.sample_mcts", "--domain", DOMAIN, "--file", RL_FILE, "--idx_list",
                     ids(config["rl_problems"]), "--backend", base, "--temperature", self.T, "--max_tokens",
                     self.M, "--seed", self.seed, *flags(mcts)], ("problems",)),
                 Step("data_value", "value data from the MCTS traces", [
                     "python", "-m", "experiment.process_gen_data", "--domain", DOMAIN, "--method", "MCTS",
                     "--backend", base, "--temperature", self.T, "--max_tokens", self.M, *flags(mcts)],
                     ("mcts_traces",), done=value_data)]
        for label, data, after in (("vm", value_data, "data_value"), ("orm", orm_data, "data_orm")):
            save_dir = os.path.join("rms", "ckpts", label, "1")
            self.models[label] = save_dir
            steps.append(Step(f"train_{label}", f"train the {label.upper()}", [
                "python", os.path.join(REPO, "rms", "train.py"), base, save_dir, data, "transformers_scalar",
                "--rm_type", "prm" if label == "vm" else "orm", "--deepspeed_config", "none",
                *flags(config["value_model"]), "--max_length", "512", "--report_to", "none", "--seed", self.seed],
                (after,), done=os.path.join(save_dir, "best", "config.json")))
        return steps

    # -- evaluation ------------------------------------------------------------------------------------------
    def evaluation(self, name: str, policy: str, extra: list[str], problems: int, after: tuple) -> tuple[Step, str]:
        argv = ["--domain", DOMAIN, "--file", EVAL_FILE, "--backend", policy, "--temperature", self.T,
                "--max_tokens", self.M, *extra]
        from evaluation.eval import output_paths, parse_args

        results = output_paths(parse_args(argv))["results"]
        return Step(name, f"evaluate {name}", ["python", "-m", "evaluation.eval", *argv, "--idx_list", ids(problems),
                                               "--seed", self.seed], after, done=results), results

    def evaluation_steps(self) -> list[Step]:
        """Every policy (each seed), then the decoders at each budget on the base policy and ReST-RL on each
        round-2 seed; each row's results paths in `results`."""
        config, steps = self.config, []
        for label, policies in self.policies.items():
            for index, policy in enumerate(policies):
                suffix = f"_s{self.seeds[label][index]}" if label in GRPO_ARMS else ""
                step, path = self.evaluation(f"eval_{label}{suffix}", policy, ["--n", str(config["eval_n"])],
                                             config["eval_problems"], (self.trained_by[label][index],))
                steps.append(step)
                self.results.setdefault(label, []).append(path)
        decoding = config["decoding"]
        search = flags({key: decoding[key] for key in ("num_decision", "exploration_constant", "eps")})
        for budget in decoding["budgets"]:
            per_node = decoding["num_sample"]
            mcts = ["--method", "MCTS", "--iteration_limit", str(budget // per_node), "--num_sample", str(per_node),
                    *search]
            rows = [(f"orm_bon@{budget}", self.policy, "orm", ["--num_sample", str(budget)], "", ()),
                    (f"vm_bon@{budget}", self.policy, "vm", ["--num_sample", str(budget)], "", ()),
                    (f"orm_mcts@{budget}", self.policy, "orm", mcts, "", ()),
                    (f"vm_mcts@{budget}", self.policy, "vm", mcts, "", ())]
            if budget == decoding["rest_rl_budget"]:
                round2 = zip(self.seeds["rest_round2"], self.policies["rest_round2"], self.trained_by["rest_round2"])
                rows += [(f"rest_rl@{budget}", policy, "vm", mcts, f"_s{seed}", (trained,))
                         for seed, policy, trained in round2]
                self.seeds[f"rest_rl@{budget}"] = list(self.seeds["rest_round2"])
            for label, policy, ranker, extra, suffix, after in rows:
                rm = ["--rm_backend", self.models[ranker], "--rm_type", "prm" if ranker == "vm" else "orm"]
                step, path = self.evaluation(f"eval_{label.replace('@', '_at_')}{suffix}", policy,
                                             ["--n", str(decoding["n"]), *rm, *extra], decoding["eval_problems"],
                                             (f"train_{ranker}", *after))
                steps.append(step)
                self.results.setdefault(label, []).append(path)
        return steps

    def curve_steps(self) -> list[Step]:
        """Checkpoints along training (the first seed of each curve arm) on the first curve_problems evaluation
        problems, at every save_steps."""
        grpo, steps = self.config["grpo"], []
        for label in self.config["curve_arms"]:
            if label not in self.policies:
                continue
            self.curves[label] = {}
            for step_count in range(grpo["save_steps"], grpo["max_steps"], grpo["save_steps"]):
                checkpoint = os.path.join(self.policies[label][0], f"checkpoint-{step_count}")
                step, self.curves[label][step_count] = self.evaluation(
                    f"curve_{label}_{step_count}", checkpoint, ["--n", str(self.config["curve_n"])],
                    self.config["curve_problems"], (self.trained_by[label][0],))
                steps.append(step)
        return steps


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
    problems = problems_step(config)
    if not args.table_only:
        print(f"[reproduce] estimated at most {runtime_estimate(config)['wall_minutes']} minutes "
              "(experiment.reproduce_rules.runtime_estimate)", flush=True)
        prepare_policy(config, run)
        run.run([problems])  # the alpha rule reads the RL pool before any other step is built
    rule = alpha_rule_of(args.work, config)
    if rule:
        print(f"[reproduce] alpha-matched ReST arm: alpha {rule['value']} ({json.dumps(rule['shares'])})", flush=True)
    protocol = Protocol(config, rule["value"] if rule else None)
    steps = protocol.steps()
    if not args.table_only:
        run.run([problems] + steps)
    from experiment.reproduce_table import write_outputs

    def elapsed() -> float:
        return stage_time(args.work, run, record=not args.table_only)

    write_outputs(args.work, protocol, elapsed, lambda: step_seconds(args.work), rule)
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
