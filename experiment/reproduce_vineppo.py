"""VinePPO's claim in miniature on TinyMath on CPU (`python -m experiment.reproduce --config config/vineppo.json`,
`make reproduce-vineppo`): Monte Carlo values (K = 4 and K = 8) against GRPO's group advantages and PPO's learned
critic, every arm from the same tiny policy with the same episodes per iteration, each with several training seeds.

Runs in output/vineppo/ (or --work), through the stage commands, with experiment.reproduce's Runner:
  problems   TinyMath (data.tinymath): the first `rl_problems` of train are the RL pool, the first
             `eval.problems` of test (held-out templates and lengths) the evaluation set
  data       experiment.grpo_prompts: one GRPO record per pool problem, formatted for the policy
  train      models/train_vineppo.py per arm and seed: `iterations` iterations of prompts_per_iteration x
             num_generations episodes, a checkpoint every `save_every` iterations
  evaluate   evaluation.eval of the base policy and of every checkpoint (`eval`: greedy pass@1, fixed here)
  values     experiment.value_error on the final critic-arm checkpoint of the first seed: MC(K) and the critic
             against a K = `reference_rollouts` estimate on states of held-out test solutions
Writes  <work>/table.json, table.md (reproduce_vineppo_table), timing.json, commands.sh, logs/<step>.log.
"""
from __future__ import annotations

import os

from experiment import paths
from experiment.runner import REPO, Step, flags, ids

DOMAIN = "TinyMath"
TRAIN_FILE, TEST_FILE = "train.jsonl", "test.jsonl"


def iteration_steps(training: dict) -> int:
    """Optimizer steps per iteration: epochs x mini-batches of the iteration's episodes.

    >>> iteration_steps({"prompts_per_iteration": 8, "num_generations": 4, "mini_batch_size": 16, "num_iterations": 2})
    4
    """
    episodes = training["prompts_per_iteration"] * training["num_generations"]
    if episodes % training["mini_batch_size"]:
        raise ValueError(f"{episodes} episodes per iteration is not a multiple of mini_batch_size "
                         f"{training['mini_batch_size']}")
    return training["num_iterations"] * episodes // training["mini_batch_size"]


def checkpoint_iterations(config: dict) -> list[int]:
    """The iterations evaluated: 0 (the base policy), every save_every-th, and the last.

    >>> checkpoint_iterations({"training": {"iterations": 6, "save_every": 2}})
    [0, 2, 4, 6]
    """
    training = config["training"]
    if training["iterations"] % training["save_every"]:
        raise ValueError(f"iterations {training['iterations']} is not a multiple of save_every "
                         f"{training['save_every']}")
    return list(range(0, training["iterations"] + 1, training["save_every"]))


class VineProtocol:
    """Every step of the miniature from the config, and where each output lands."""

    def __init__(self, config: dict):
        self.config = config
        self.policy = config["policy"]
        self.data = os.path.join(paths.common_dir(DOMAIN, self.policy), paths.problem_grpo_data_name(TRAIN_FILE))

    def prepare_steps(self) -> list[Step]:
        problems = self.config["problems"]
        return [Step("problems", "TinyMath train and test splits",
                     ["python", "-m", "data.tinymath", "--seed", str(self.config["seed"]), "--n_train",
                      str(problems["n_train"]), "--n_test", str(problems["n_test"])],
                     done=os.path.join("data", DOMAIN, TEST_FILE)),
                Step("grpo_data", "GRPO records of the RL pool",
                     ["python", "-m", "experiment.grpo_prompts", "--domain", DOMAIN, "--file", TRAIN_FILE,
                      "--idx_list", ids(self.config["rl_problems"]), "--backend", self.policy], ("problems",),
                     done=self.data)]

    def save_dir(self, arm: str, seed: int) -> str:
        return os.path.join("models", "ckpts", "vineppo", f"{arm}_seed{seed}")

    def checkpoint(self, arm: str, seed: int, iteration: int) -> str:
        if iteration == 0:
            return self.policy
        step = iteration * iteration_steps(self.config["training"])
        return os.path.join(self.save_dir(arm, seed), f"checkpoint-{step}")

    def train_step(self, arm: str, seed: int) -> Step:
        training = dict(self.config["training"])
        per_iteration = iteration_steps(training)
        iterations, save_every = training.pop("iterations"), training.pop("save_every")
        save_dir = self.save_dir(arm, seed)
        return Step(f"train_{arm}_seed{seed}", f"{arm}, training seed {seed}", [
            "python", os.path.join(REPO, "models", "train_vineppo.py"), self.policy, save_dir, self.data,
            *flags(self.config["arms"][arm]), *flags(training), "--max_steps", str(iterations * per_iteration),
            "--save_steps", str(save_every * per_iteration), "--report_to", "none", "--logging_steps", "1",
            "--gradient_checkpointing", "false", "--seed", str(seed)], ("grpo_data",),
            done=os.path.join(save_dir, "trainer_state.json"))

    def evaluation(self, name: str, policy: str, after: tuple) -> tuple[Step, str]:
        from evaluation.eval import output_paths, parse_args

        settings = self.config["eval"]
        argv = ["--domain", DOMAIN, "--file", TEST_FILE, "--backend", policy, "--temperature",
                str(settings["temperature"]), "--max_tokens", str(settings["max_tokens"]), "--n", str(settings["n"])]
        results = output_paths(parse_args(argv))["results"]
        return Step(name, f"evaluate {policy}", ["python", "-m", "evaluation.eval", *argv, "--idx_list",
                                                 ids(settings["problems"]), "--seed", str(self.config["seed"])],
                    after, done=results), results

    def value_step(self) -> tuple[Step, str]:
        settings, training = self.config["value_error"], self.config["training"]
        seed = self.config["train_seeds"][0]
        policy = self.checkpoint(settings["arm"], seed, training["iterations"])
        output = os.path.join("output", "vineppo_value_error.json")
        return Step("value_error", f"MC(K) and critic values against K = {settings['reference_rollouts']}", [
            "python", "-m", "experiment.value_error", "--domain", DOMAIN, "--file", TEST_FILE, "--backend", policy,
            "--idx_list", ids(settings["problems"]), "--mc_rollouts", *[str(k) for k in settings["mc_rollouts"]],
            "--reference_rollouts", str(settings["reference_rollouts"]), "--temperature",
            str(training["temperature"]), "--top_p", str(training["top_p"]), "--max_tokens",
            str(training["max_completion_length"]), "--max_value_steps", str(training["max_value_steps"]),
            "--seed", str(self.config["seed"]), "--output", output],
            (f"train_{settings['arm']}_seed{seed}",), done=output), output

    def steps(self) -> tuple[list[Step], dict, str]:
        """(steps, {arm: {seed: {iteration: results path}}}, the value-error report)."""
        steps = self.prepare_steps()
        base_step, base = self.evaluation("eval_base", self.policy, ("problems",))
        steps.append(base_step)
        results: dict[str, dict[int, dict[int, str]]] = {arm: {} for arm in self.config["arms"]}
        for seed in self.config["train_seeds"]:  # seed-major: every arm's first seed finishes first
            for arm in self.config["arms"]:
                steps.append(self.train_step(arm, seed))
                results[arm][seed] = {0: base}
                for iteration in checkpoint_iterations(self.config)[1:]:
                    step, results[arm][seed][iteration] = self.evaluation(
                        f"eval_{arm}_seed{seed}_it{iteration}", self.checkpoint(arm, seed, iteration),
                        (f"train_{arm}_seed{seed}",))
                    steps.append(step)
        value_step, value_report = self.value_step()
        steps.append(value_step)
        return steps, results, value_report


def run(args, config: dict) -> int:
    """experiment.reproduce's main for a config with `"experiment": "vineppo"`."""
    from data.jsonl import write_json
    from experiment.reproduce_vineppo_table import write_outputs
    from experiment.runner import Runner, prepare_policy, stage_time

    os.makedirs(args.work, exist_ok=True)
    write_json(os.path.join(args.work, "reproduce.args.json"), {"config": config, "work": args.work})
    runner = Runner(args.work, config["threads"], config["parallel"])
    prepare_policy(config, runner, ("--task", DOMAIN))
    protocol = VineProtocol(config)
    steps, results, value_report = protocol.steps()
    if not args.table_only:
        runner.run(steps)
    elapsed = stage_time(args.work, runner, record=not args.table_only)
    save_dirs = {arm: [protocol.save_dir(arm, seed) for seed in config["train_seeds"]] for arm in config["arms"]}
    write_outputs(args.work, config, save_dirs, results, value_report, elapsed)
    return 0
