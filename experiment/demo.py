"""The whole method on TinyCode on CPU, through the stage commands themselves, and the paper's tables
in miniature (`make demo`).

Runs in output/demo/ as its working directory (its generate/, output/, models/ckpts/ and rms/ckpts/
live there; the tiny policy is linked in from models/ckpts/tiny-coder, trained first if absent):
  sample the policy on TinyCode train problems -> process into naive (`basic`) and ReST-GRPO data, and
  outcome-reward data -> one GRPO round on each -> MCTS traces -> value data -> a value model (VM) and an
  outcome reward model (ORM) -> evaluation on TinyCode test problems of the base, naive-GRPO and ReST-GRPO
  policies, and of ORM best-of-N, ORM-MCTS and VM-MCTS at the same sample budget.
Writes  output/demo/table.md, table.json (every figure with its 95% interval, the fraction of GRPO
        training groups whose rewards did not vary, for naive and ReST data), budget.png, and
        commands.sh (every command it ran, in order). Settings: config/demo.json.
A rerun resumes: stages resume by id, finished trainings are kept.

    python -m experiment.demo [--config config/demo.json]
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

from data.jsonl import read_jsonl, write_json
from experiment import paths

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join("output", "demo")
DOMAIN = "TinyCode"


class Runner:
    """Runs stage commands in the demo's working directory, logging each to commands.sh."""

    def __init__(self, work: str, threads: int):
        self.work, self.start, self.count = work, time.monotonic(), 0
        self.env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1",
                    "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
        self.log = open(os.path.join(work, "commands.sh"), "a", encoding="utf-8")

    def __call__(self, title: str, *argv: str) -> None:
        self.count += 1
        command = " ".join(shlex.quote(part) for part in argv)
        print(f"\n[demo {self.count:2d} | {time.monotonic() - self.start:6.0f} s] {title}\n  $ {command}", flush=True)
        self.log.write(f"# {title}\n{command}\n")
        self.log.flush()
        completed = subprocess.run([sys.executable if part == "python" else part for part in argv], cwd=self.work,
                                   env=self.env)
        if completed.returncode != 0:
            raise SystemExit(f"demo: step {self.count} ({title}) failed with exit {completed.returncode}; "
                             f"rerun `make demo` to resume")

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def ids(count: int) -> str:
    return ",".join(str(index) for index in range(count))


def prepare(config: dict, run: Runner) -> None:
    """The TinyCode data in the working directory, and the tiny policy (trained once, in the repo)."""
    policy = os.path.join(REPO, config["policy"])
    if not os.path.exists(os.path.join(policy, "config.json")):
        print("[demo] training the tiny policy first (python -m models.tiny; about 6 minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "models.tiny", "--output", policy, "--if_missing", "true",
                        "--eval_n", "0"], cwd=REPO, env=run.env, check=True)
    link = os.path.join(run.work, config["policy"])
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if not os.path.lexists(link):
        os.symlink(policy, link)
    if not os.path.exists(os.path.join(run.work, "data", DOMAIN, "test.jsonl")):
        run("TinyCode problems", "python", "-m", "data.tinycode", "--seed", str(config["seed"]))


def train_policies(config: dict, run: Runner) -> dict[str, str]:
    """Sample, process, one GRPO round on naive and on ReST data; returns {label: policy path}."""
    policy, T, M, seed = config["policy"], str(config["temperature"]), str(config["max_tokens"]), str(config["seed"])
    common = ["--backend", policy, "--temperature", T, "--max_tokens", M]
    run("sample the policy on train problems", "python", "-m", "experiment.sample", "--domain", DOMAIN,
        "--file", "train.jsonl", "--idx_list", ids(config["train_problems"]), "--n", str(config["sample_n"]),
        "--seed", seed, *common)
    rest = config["rest"]
    rest_flags = [flag for name, value in rest.items() for flag in (f"--{name}", str(value))]
    run("naive GRPO data (basic)", "python", "-m", "experiment.process_gen_data", "--domain", DOMAIN,
        "--method", "Common", "--mode", "grpo", "--n_sample", "0", *common)
    run("ReST-GRPO data", "python", "-m", "experiment.process_gen_data", "--domain", DOMAIN, "--method", "Common",
        "--mode", "grpo", *rest_flags, "--seed", seed, *common)
    run("outcome-reward data", "python", "-m", "experiment.process_gen_data", "--domain", DOMAIN,
        "--method", "Common", "--mode", "orm", *common)
    directory = paths.common_dir(DOMAIN, policy)
    data = {"naive": paths.grpo_data_name(config["temperature"], config["max_tokens"], 0.05, 0.9, 0, 0.95),
            "rest": paths.grpo_data_name(config["temperature"], config["max_tokens"], rest["std_accept_threshold_grpo"],
                                         rest["completion_accept_threshold_grpo"], rest["n_sample"], rest["alpha"])}
    grpo = config["grpo"]
    policies = {"base": policy}
    for label, name in data.items():
        save_dir = os.path.join("models", "ckpts", "grpo", f"demo-{label}", "1")
        policies[label] = save_dir
        if os.path.exists(os.path.join(run.work, save_dir, "trainer_state.json")):
            continue
        run(f"GRPO round 1 on {label} data", "python", os.path.join(REPO, "models", "train_grpo.py"), policy,
            save_dir, os.path.join(directory, name), "--max_steps", str(grpo["max_steps"]),
            "--num_generations", str(grpo["num_generations"]), "--batch_size_per_device",
            str(grpo["batch_size_per_device"]), "--lr", str(grpo["lr"]), "--beta", str(grpo["beta"]),
            "--symbol_reward", str(grpo["symbol_reward"]), "--trailing_penalty", str(grpo["trailing_penalty"]),
            "--temperature", T, "--max_completion_length", M, "--max_prompt_length", "512",
            "--report_to", "none", "--logging_steps", "1", "--save_steps", "1000", "--seed", seed)
    return policies


def train_value_models(config: dict, run: Runner) -> dict[str, str]:
    """MCTS traces -> value data -> the VM; outcome rewards -> the ORM; returns {label: model path}."""
    policy, T, M, seed = config["policy"], str(config["temperature"]), str(config["max_tokens"]), str(config["seed"])
    mcts = config["mcts"]
    mcts_flags = [flag for name, value in mcts.items() for flag in (f"--{name}", str(value))]
    run("MCTS traces on train problems", "python", "-m", "experiment.sample_mcts", "--domain", DOMAIN, "--file",
        "train.jsonl", "--idx_list", ids(config["mcts_train_problems"]), "--backend", policy, "--temperature", T,
        "--max_tokens", M, "--seed", seed, *mcts_flags)
    run("value data from the traces", "python", "-m", "experiment.process_gen_data", "--domain", DOMAIN,
        "--method", "MCTS", "--backend", policy, "--temperature", T, "--max_tokens", M, *mcts_flags)
    trace = paths.mcts_name(None, mcts["iteration_limit"], mcts["num_sample"], mcts["num_decision"],
                            mcts["exploration_constant"], mcts["eps"], config["temperature"], config["max_tokens"])
    data = {"vm": os.path.join(paths.mcts_dir(DOMAIN, policy), paths.value_data_name(trace)),
            "orm": os.path.join(paths.common_dir(DOMAIN, policy),
                                paths.orm_data_name(config["temperature"], config["max_tokens"]))}
    value = config["value_model"]
    models = {}
    for label, path in data.items():
        save_dir = os.path.join("rms", "ckpts", f"demo-{label}", "1")
        models[label] = save_dir
        if os.path.exists(os.path.join(run.work, save_dir, "best", "config.json")):
            continue
        run(f"train the {label.upper()}", "python", os.path.join(REPO, "rms", "train.py"), policy, save_dir, path,
            "transformers_scalar", "--rm_type", "prm" if label == "vm" else "orm", "--deepspeed_config", "none",
            "--epochs", str(value["epochs"]), "--lr", str(value["lr"]), "--batch_size_per_device",
            str(value["batch_size_per_device"]), "--max_length", "512", "--report_to", "none", "--seed", seed)
    return models


def evaluate(config: dict, run: Runner, policies: dict[str, str], models: dict[str, str]) -> dict[str, str]:
    """Every row of the tables; returns {row: results file}."""
    T, M, seed = str(config["temperature"]), str(config["max_tokens"]), str(config["seed"])
    base = ["python", "-m", "evaluation.eval", "--domain", DOMAIN, "--file", "test.jsonl", "--idx_list",
            ids(config["test_problems"]), "--temperature", T, "--max_tokens", M, "--seed", seed]
    budget = config["budget"]
    search = ["--iteration_limit", str(budget["iteration_limit"]), "--num_sample", str(budget["num_sample"]),
              "--num_decision", str(budget["num_decision"]), "--exploration_constant",
              str(budget["exploration_constant"]), "--eps", str(budget["eps"])]
    rows = {
        "Base policy": (policies["base"], ["--n", str(config["eval_n"])]),
        "Naive GRPO": (policies["naive"], ["--n", str(config["eval_n"])]),
        "ReST-GRPO": (policies["rest"], ["--n", str(config["eval_n"])]),
        "ORM best-of-N": (policies["base"], ["--n", "1", "--rm_backend", models["orm"], "--rm_type", "orm",
                                             "--num_sample", str(budget["best_of_n"])]),
        "ORM-MCTS": (policies["base"], ["--method", "MCTS", "--n", "1", "--rm_backend", models["orm"],
                                        "--rm_type", "orm", *search]),
        "VM-MCTS": (policies["base"], ["--method", "MCTS", "--n", "1", "--rm_backend", models["vm"],
                                       "--rm_type", "prm", *search]),
    }
    results = {}
    for row, (policy, flags) in rows.items():
        run(f"evaluate: {row}", *base, "--backend", policy, *flags)
        results[row] = results_path(policy, flags, config)
    return results


def results_path(policy: str, flags: list[str], config: dict) -> str:
    """The results file evaluation.eval writes for these flags (the same derivation it uses)."""
    from evaluation.eval import output_paths, parse_args

    argv = ["--domain", DOMAIN, "--backend", policy, "--temperature", str(config["temperature"]),
            "--max_tokens", str(config["max_tokens"]), *flags]
    return output_paths(parse_args(argv))["results"]


def zero_std_fraction(work: str, policy_dir: str) -> float | None:
    """TRL's logged fraction of GRPO groups whose rewards all agree, averaged over the training steps."""
    state = os.path.join(work, policy_dir, "trainer_state.json")
    if not os.path.exists(state):
        return None
    with open(state, encoding="utf-8") as handle:
        history = json.load(handle)["log_history"]
    values = [entry["frac_reward_zero_std"] for entry in history if "frac_reward_zero_std" in entry]
    return sum(values) / len(values) if values else None


def table(work: str, results: dict[str, str], policies: dict[str, str], elapsed: float) -> tuple[str, dict]:
    rows = {}
    for row, path in results.items():
        record = next(record for _, record in read_jsonl(os.path.join(work, path)))
        rows[row] = {key: record.get(key) for key in ("n_problems", "n_load_failed", "strict_acc", "strict_acc_ci95",
                                                     "average_acc", "pass@1", "samples_per_problem",
                                                     "tokens_per_problem")}
    zero_std = {label: zero_std_fraction(work, policies[label]) for label in ("naive", "rest")}
    widest = max((row["strict_acc_ci95"][1] - row["strict_acc_ci95"][0]) / 2 for row in rows.values())
    lines = ["| method | pass@1 (strict) | 95% interval | avg test pass rate | samples / problem | tokens / problem |",
             "|---|---|---|---|---|---|"]
    for name, row in rows.items():
        low, high = row["strict_acc_ci95"]
        lines.append(f"| {name} | {row['strict_acc']:.3f} | [{low:.3f}, {high:.3f}] | {row['average_acc']:.3f} | "
                     f"{row['samples_per_problem']:.1f} | {row['tokens_per_problem']:.0f} |")
        if name == "ReST-GRPO":
            lines.append("| *decoding at one sample budget:* | | | | | |")
    fmt = lambda value: "n/a" if value is None else f"{value:.3f}"  # noqa: E731
    n_problems = next(iter(rows.values()))["n_problems"]
    lines += ["", f"Fraction of GRPO training groups with zero reward std: naive data {fmt(zero_std['naive'])}, "
                  f"ReST data {fmt(zero_std['rest'])}.",
              f"{n_problems} TinyCode test problems; intervals are 95% bootstrap intervals over problems. The widest "
              f"half-width is {widest:.3f}: differences smaller than that are not resolved here, and that is wider "
              "than most effects the paper reports (a few points), so this table shows the method running end to "
              "end, not the paper's effect sizes.",
              f"Measured on this machine: {elapsed / 60:.1f} minutes from the demo's start (training the tiny "
              "policy included when it was absent; installation not included)."]
    return "\n".join(lines), {"rows": rows, "zero_std_fraction": zero_std, "widest_half_width": widest,
                              "elapsed_s": round(elapsed, 1)}


def plot(work: str, results: dict[str, str]) -> None:
    specs = [f"{row}={os.path.join(work, path)}" for row, path in results.items() if row not in ("Naive GRPO",
                                                                                                  "ReST-GRPO")]
    subprocess.run([sys.executable, "-m", "evaluation.plot", "--x", "samples", "--output",
                    os.path.join(work, "budget.png"), "--title", "TinyCode: accuracy at a sample budget", *specs],
                   check=True, stdout=subprocess.DEVNULL)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=os.path.join(REPO, "config", "demo.json"), help="demo settings")
    parser.add_argument("--work", default=WORK, help="working directory of the stages")
    args = parser.parse_args(argv)
    with open(args.config, encoding="utf-8") as handle:
        config = json.load(handle)
    os.makedirs(args.work, exist_ok=True)
    write_json(os.path.join(args.work, "demo.args.json"), {"config": config, "work": args.work})
    run = Runner(args.work, config["threads"])
    prepare(config, run)
    policies = train_policies(config, run)
    models = train_value_models(config, run)
    results = evaluate(config, run, policies, models)
    markdown, figures = table(args.work, results, policies, run.elapsed())
    with open(os.path.join(args.work, "table.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown + "\n")
    write_json(os.path.join(args.work, "table.json"), {**figures, "config": config})
    plot(args.work, results)
    print("\n" + markdown)
    print(f"\nwritten: {args.work}/table.md, table.json, budget.png, commands.sh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
