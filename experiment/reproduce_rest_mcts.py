"""ReST-MCTS*'s claims in miniature on TinyMath on CPU (`python -m experiment.reproduce --config
config/rest_mcts.json`, `make reproduce-rest-mcts`): the search against self-consistency at matched token budgets,
the policies of self-training rounds 0, 1, 2 against each other and against ReST-EM at matched tokens, and the
value model's within-problem AUC each round.

Runs in output/rest_mcts_mini/ (or --work), through the stage commands, with experiment.runner's Runner, in
three phases (a later phase needs numbers or models only an earlier one makes):
  A  problems   TinyMath with `problems.n_train` train tasks; the training pool is train positions
                `train_problems` (by default 6000-6255: tasks the tiny policy never saw, so the rounds learn from
                their own solutions, not from a second pass over the policy's SFT data)
     rounds_1   experiment.rest_mcts --rounds 1 in rounds/ (round 0: samples, quality values, the first value
                model; round 1: MCTS*, both data files, SFT, value model)
     eval_base  greedy pass@1 of the base policy on the first `eval.problems` test tasks
     samples    the base policy's `auc.n` samples per test task (the items every round's value model ranks)
  B  rounds_2   the same command with --rounds 2 (rounds 0 and 1 are found done)
     rest_em    ReST-EM: the base policy samples `n_em` solutions per pool task, SFT on the correct ones with the
                rounds' settings, from the base; `n_em` is fixed by a rule, not chosen: round 1's search tokens
                per task over the base policy's mean tokens per sample in round 0 (so both spend the same
                generated tokens on the same tasks), rounded, at least 1
     eval_round1, eval_rest_em
  C  eval_round2, and the decoders with round 2's policy and value model on the test tasks: self-consistency
     (majority) and value-weighted self-consistency at each `decoding.sc_samples`, MCTS* at each
     `decoding.star_iterations`; each MCTS* row is compared with the SC rows of the smallest sample count whose
     generated tokens per task are at least its own (the baselines never get fewer tokens)
Writes  <work>/table.json, table.md (reproduce_rest_mcts_table), timing.json, commands.sh, logs/<step>.log.
"""
from __future__ import annotations

import json
import os

from data.jsonl import write_json
from experiment import paths
from experiment.reproduce_rest_mcts_table import generated_tokens
from experiment.runner import REPO, Runner, Step, flags, ids

DOMAIN = "TinyMath"
TRAIN_FILE, TEST_FILE = "train.jsonl", "test.jsonl"
ROUNDS_DIR = "rounds"
EM_DIR = "rest_em"


def pool_ids(config: dict) -> str:
    """The training pool's positions in train.jsonl.

    >>> pool_ids({"train_problems": [3, 6]})
    '3,4,5'
    """
    first, end = config["train_problems"]
    return ",".join(str(index) for index in range(first, end))


def em_samples(search_tokens: float, problems: int, tokens_per_sample: float) -> int:
    """ReST-EM's samples per task at the search's token budget: tokens per task over tokens per sample.

    >>> em_samples(search_tokens=12000, problems=10, tokens_per_sample=40.0)
    30
    >>> em_samples(search_tokens=10, problems=10, tokens_per_sample=40.0)
    1
    """
    return max(1, round(search_tokens / problems / tokens_per_sample))


class StarProtocol:
    """Every step of the miniature from the config, and where each output lands."""

    def __init__(self, config: dict, work: str):
        self.config, self.work = config, work
        self.policy = config["policy"]
        self.seed = str(config["seed"])
        self.data_dir = os.path.join(work, "data", DOMAIN)
        self.policy_path = os.path.abspath(os.path.join(work, self.policy))  # as experiment.rest_mcts names it
        self.em_dir = EM_DIR

    # -- the rounds ------------------------------------------------------------------------------------------
    def rounds_argv(self, rounds: int) -> list[str]:
        config = self.config
        round0, search, policy_data = config["round0"], config["search"], config["policy_data"]
        seed = ["--seed", self.seed]
        return ["python", "-m", "experiment.rest_mcts", "--work", ROUNDS_DIR, "--rounds", str(rounds),
                "--domain", DOMAIN, "--directory", self.data_dir, "--file", TRAIN_FILE, "--idx_list",
                pool_ids(config), "--backend", self.policy, *flags(round0), *flags(policy_data),
                "--init", config["init"],
                "--sample_args", " ".join(seed),
                "--search_args", " ".join([*flags(search), *seed]),
                "--sft_args", " ".join([*flags(config["sft"]), "--save_strategy", "no", "--logging_steps", "5",
                                        *seed]),
                "--value_args", " ".join([*flags(config["value"]), "--max_length", "512", *seed])]

    def round_file(self, index: int) -> str:
        return os.path.join(ROUNDS_DIR, f"round_{index}", "round.json")

    def read_round(self, index: int) -> dict:
        with open(os.path.join(self.work, self.round_file(index)), encoding="utf-8") as handle:
            return json.load(handle)

    # -- evaluation ------------------------------------------------------------------------------------------
    def evaluation(self, name: str, policy: str, extra: list[str], after: tuple) -> tuple[Step, str]:
        from evaluation.eval import output_paths, parse_args

        argv = ["--domain", DOMAIN, "--directory", self.data_dir, "--file", TEST_FILE, "--backend", policy, *extra]
        results = output_paths(parse_args(argv))["results"]
        return Step(name, f"evaluate {name}", ["python", "-m", "evaluation.eval", *argv, "--idx_list",
                                               ids(self.config["eval"]["problems"]), "--seed", self.seed],
                    after, done=results), results

    def greedy(self, name: str, policy: str, after: tuple = ()) -> tuple[Step, str]:
        return self.evaluation(name, policy, ["--temperature", "0", "--n", "1", "--max_tokens",
                                              str(self.config["eval"]["max_tokens"])], after)

    def phase_a(self) -> tuple[list[Step], dict]:
        problems = self.config["problems"]
        steps = [Step("problems", "TinyMath train and test splits",
                      ["python", "-m", "data.tinymath", "--seed", self.seed, "--n_train", str(problems["n_train"]),
                       "--n_test", str(problems["n_test"])], done=os.path.join("data", DOMAIN, TEST_FILE)),
                 Step("rounds_1", "ReST-MCTS* rounds 0 and 1", self.rounds_argv(1), ("problems",),
                      done=self.round_file(1))]
        base_step, base = self.greedy("eval_base", self.policy, ("problems",))
        auc = self.config["auc"]
        samples_step, samples = self.evaluation("samples", self.policy, [
            "--temperature", str(auc["temperature"]), "--n", str(auc["n"]), "--max_tokens",
            str(self.config["eval"]["max_tokens"])], ("problems",))
        return steps + [base_step, samples_step], {"base": base, "samples": samples}

    def em_plan(self) -> dict:
        """ReST-EM's sample count by the token rule, from round 1's search and round 0's samples."""
        samples_file = os.path.join(self.work, ROUNDS_DIR, "round_0", paths.completions_path(
            DOMAIN, self.policy_path, self.config["round0"]["temperature"], self.config["round0"]["max_tokens"]))
        sample_tokens, _, sample_count = generated_tokens(samples_file)
        search_tokens, problems, _ = generated_tokens(self.read_round(1)["trace"])
        per_sample = sample_tokens / sample_count
        return {"n": em_samples(search_tokens, problems, per_sample), "search_tokens": search_tokens,
                "problems": problems, "round0_tokens_per_sample": round(per_sample, 2)}

    def em_steps(self, n: int) -> list[Step]:
        """ReST-EM, run in its own folder (its samples would otherwise share a file name with round 0's)."""
        settings, policy = self.config["rest_em"], self.policy_path
        common = ["--domain", DOMAIN, "--backend", policy, "--temperature", str(settings["temperature"]),
                  "--max_tokens", str(settings["max_tokens"]), "--seed", self.seed]
        data = os.path.join(paths.common_dir(DOMAIN, policy),
                            paths.sft_data_name(settings["temperature"], settings["max_tokens"]))
        return [
            Step("em_sample", f"ReST-EM: {n} samples per pool task from the base policy", [
                "python", "-m", "experiment.sample", *common, "--directory", self.data_dir, "--file", TRAIN_FILE,
                "--idx_list", pool_ids(self.config), "--n", str(n)], cwd=EM_DIR),
            Step("em_data", "ReST-EM: the correct samples as SFT data", [
                "python", "-m", "experiment.process_gen_data", *common, "--method", "Common", "--mode", "sft"],
                ("em_sample",), done=os.path.join(EM_DIR, data), cwd=EM_DIR),
            Step("em_sft", "ReST-EM: SFT from the base policy", [
                "python", os.path.join(REPO, "models", "train.py"), policy, "policy", data, "--mode", "sft",
                *flags(self.config["sft"]), "--save_strategy", "no", "--logging_steps", "5", "--report_to", "none",
                "--seed", self.seed], ("em_data",), done=os.path.join(EM_DIR, "policy", "config.json"), cwd=EM_DIR)]

    def phase_b(self, n_em: int) -> tuple[list[Step], dict]:
        round1 = self.read_round(1)
        steps = [Step("rounds_2", "ReST-MCTS* round 2", self.rounds_argv(2), done=self.round_file(2)),
                 *self.em_steps(n_em)]
        r1_step, r1 = self.greedy("eval_round1", round1["policy"])
        em_step, em = self.greedy("eval_rest_em", os.path.join(EM_DIR, "policy"), ("em_sft",))
        return steps + [r1_step, em_step], {"round1": r1, "rest_em": em}

    def phase_c(self) -> tuple[list[Step], dict]:
        round2 = self.read_round(2)
        steps, results = [], {}
        step, results["round2"] = self.greedy("eval_round2", round2["policy"])
        steps.append(step)
        decoding = self.config["decoding"]
        value_model = round2["value_model"]
        sampling = ["--temperature", str(decoding["temperature"]), "--n", "1"]
        for count in decoding["sc_samples"]:
            for vote in ("majority", "weighted"):
                label = f"sc_{vote}@{count}"
                ranker = ["--rm_backend", value_model] if vote == "weighted" else []
                step, results[label] = self.evaluation(
                    f"eval_sc_{vote}_{count}", round2["policy"],
                    [*sampling, "--method", "SC", "--vote", vote, "--num_sample", str(count), "--max_tokens",
                     str(decoding["max_tokens"]), *ranker], ())
                steps.append(step)
        for iterations in decoding["star_iterations"]:
            label = f"mcts_star@{iterations}"
            step, results[label] = self.evaluation(
                f"eval_mcts_star_{iterations}", round2["policy"],
                [*sampling, "--method", "MCTS_STAR", "--iteration_limit", str(iterations), "--max_tokens",
                 str(decoding["star_max_tokens"]), "--max_depth", str(decoding["star_max_depth"]), "--rm_backend",
                 value_model], ())
            steps.append(step)
        return steps, results


def run(args, config: dict) -> int:
    """experiment.reproduce's main for a config with `"experiment": "rest_mcts"`."""
    from experiment.reproduce_rest_mcts_table import write_outputs
    from experiment.runner import prepare_policy, stage_time

    os.makedirs(args.work, exist_ok=True)
    write_json(os.path.join(args.work, "reproduce.args.json"), {"config": config, "work": args.work})
    runner = Runner(args.work, config["threads"], config["parallel"])
    prepare_policy(config, runner, ("--task", DOMAIN))
    protocol = StarProtocol(config, os.path.abspath(args.work))
    results: dict = {}

    def run_phase(steps: list, found: dict) -> None:
        results.update(found)
        if not args.table_only:
            runner.run(steps)

    run_phase(*protocol.phase_a())
    plan = None
    if os.path.exists(os.path.join(args.work, protocol.round_file(1))):  # phase B needs round 1's tokens
        plan = protocol.em_plan()
        run_phase(*protocol.phase_b(plan["n"]))
        if os.path.exists(os.path.join(args.work, protocol.round_file(2))):  # phase C, round 2's models
            run_phase(*protocol.phase_c())
    elapsed = stage_time(args.work, runner, record=not args.table_only)
    write_outputs(args.work, config, protocol, results, plan, elapsed)
    return 0
