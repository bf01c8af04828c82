"""ReST-MCTS*'s self-training rounds, end to end, through the stage commands.

Round 0   the base policy samples --n solutions per training problem (experiment.sample); process_gen_data
          --mode quality merges each problem's samples into a prefix tree of shared steps and gives each state
          its quality value (experiment/quality_values.py); rms/train.py trains the round-0 value model on them,
          from the base policy.
Round r   MCTS* with round r-1's policy and value model (sample_mcts --algorithm star --mode generate) on the
          training problems; from its trace, value data (process_gen_data --value_targets quality) and policy data
          (the same with --mode sft: correct solutions of value >= --value_threshold and >= --len_threshold
          characters); the policy fine-tuned on the policy data (models/train.py --mode sft) and the value model
          trained on the value data (rms/train.py). --init last (default): both start from round r-1's models;
          base: both from the base policy (ReST-EM's choice: the policy never drifts through its own rounds).
          A round with no policy data keeps round r-1's policy, one with no value data its value model.

Writes <work>/round_<r>/: generate/... (each stage runs in its round's folder, so its files keep the usual
names), policy/ (r >= 1), value/best/, logs/<step>.log, commands.sh, and round.json (the round's models and
data, written last: its presence marks the round done). Resume: a done round is skipped; in the others the
sampling and the search resume by problem id, a finished training is kept, the SFT resumes from its last
checkpoint, a value model is trained again.

    python -m experiment.rest_mcts --rounds 2 --domain TinyMath --backend models/ckpts/tiny-math \
        --work output/rest_mcts --idx_list 0,1,2,3 --n 4 --search_args "--iteration_limit 8" --device cpu

Launch prefixes (--sft_launcher "accelerate launch --config_file config/x.yaml -m", --value_launcher
"deepspeed --num_gpus 1 --module") run the trainings on a GPU node; runs/rest_mcts_gsm8k.sh is the recipe.
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import shlex
import sys

from data.jsonl import read_jsonl, write_json
from data.registry import get_benchmark
from experiment import paths
from experiment.common import local_model_path
from experiment.runner import Runner, Step
from models.training import configure_logging

logger = logging.getLogger("experiment.rest_mcts")
ROUND_FILE = "round.json"
POLICY_DONE = "trainer_state.json"  # written by models/train.py after the final model
VALUE_DONE = os.path.join("best", "value_model.json")  # written by rms/train.py after the best model


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--rounds", type=int, default=2, help="self-training rounds after round 0 (the value model's first)")
    add("--work", default=os.path.join(paths.OUTPUT, "rest_mcts"), help="run folder (round_<r>/ inside)")
    add("--domain", default="TinyMath", help="benchmark of the training problems (data/registry.py)")
    add("--directory", default=None, help="data directory (default data/<Domain>)")
    add("--file", default="train.jsonl", help="training problems' file inside the directory")
    add("--idx_list", default=None, help="positions in the file to train on, '0,1,2' (default all)")
    add("--backend", required=True, help="the base policy (a local folder or a model id)")
    add("--init", default="last", choices=("last", "base"),
        help="last: round r's models start from round r-1's; base: from the base policy")
    add("--n", type=int, default=8, help="round 0: solutions sampled per problem")
    add("--temperature", type=float, default=0.7, help="round-0 sampling temperature")
    add("--max_tokens", type=int, default=256, help="round 0: tokens per solution")
    add("--device", default=None, help="the hf engine's device in the sampling and search stages (e.g. cpu)")
    add("--rm_class", default="transformers_scalar", help="value model class (rms/value_models.py)")
    add("--value_threshold", type=float, default=0.2, help="policy data: lowest value of a kept solution")
    add("--len_threshold", type=int, default=50, help="policy data: fewest characters of a kept solution")
    add("--sample_args", default="", help="more flags for experiment.sample (round 0), one string")
    add("--search_args", default="", help="more flags for experiment.sample_mcts (e.g. '--iteration_limit 40')")
    add("--sft_args", default="", help="more flags for models/train.py --mode sft (e.g. '--learning_rate 2e-5')")
    add("--value_args", default="", help="more flags for rms/train.py (e.g. '--lr 3e-6 --epochs 2')")
    add("--sft_launcher", default="python -m", help="what runs the SFT module (e.g. 'accelerate launch ... -m')")
    add("--value_launcher", default="python -m", help="what runs rms.train (e.g. 'deepspeed --num_gpus 1 --module')")
    add("--report_to", default="none", help="the trainings' logger: none, wandb or tensorboard")
    add("--threads", type=int, default=1, help="torch threads of each stage (OMP_NUM_THREADS)")
    args = parser.parse_args(join_pass_through(sys.argv[1:] if argv is None else list(argv)))
    if args.rounds < 0:
        parser.error(f"--rounds must be at least 0, got {args.rounds}")
    args.work = os.path.abspath(args.work)
    args.directory = os.path.abspath(args.directory or get_benchmark(args.domain).directory)
    args.backend = model_path(args.backend)
    return args


PASS_THROUGH = ("--sample_args", "--search_args", "--sft_args", "--value_args", "--sft_launcher", "--value_launcher")


def join_pass_through(argv: list[str]) -> list[str]:
    """`--search_args "--iteration_limit 8"` as `--search_args=--iteration_limit 8` (argparse would take a
    value that starts with `--` for a flag of its own).

    >>> join_pass_through(["--n", "4", "--sft_args", "--use_cpu true"])
    ['--n', '4', '--sft_args=--use_cpu true']
    """
    joined, index = [], 0
    while index < len(argv):
        if argv[index] in PASS_THROUGH and index + 1 < len(argv):
            joined.append(f"{argv[index]}={argv[index + 1]}")
            index += 2
        else:
            joined.append(argv[index])
            index += 1
    return joined


def model_path(name: str) -> str:
    """A local model as an absolute path (the stages run in other folders); a hub id as it is."""
    local = local_model_path(name)
    return os.path.abspath(local) if os.path.exists(local) else name


def round_dir(args: argparse.Namespace, index: int) -> str:
    return os.path.join(args.work, f"round_{index}")


def count_records(path: str) -> int:
    return sum(1 for _ in read_jsonl(path)) if os.path.exists(path) else 0


def count_problems(path: str) -> int:
    """Distinct problems (prompts) of a value-data file: rms/train.py holds out whole problems, so it needs two."""
    return len({record["prompt"] for _, record in read_jsonl(path)}) if os.path.exists(path) else 0


def problem_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--domain", args.domain, "--directory", args.directory, "--file", args.file]
    flags += ["--idx_list", args.idx_list] if args.idx_list else []
    return flags + (["--device", args.device] if args.device else [])


def module_argv(launcher: str, module: str, *flags: str) -> list[str]:
    return [*shlex.split(launcher), module, *flags]


# -- the steps of a round -----------------------------------------------------------------------------------

def value_step(args: argparse.Namespace, work: str, start: str, data: str) -> Step:
    return Step("train_value", f"value model from {start}", module_argv(
        args.value_launcher, "rms.train", start, os.path.join(work, "value"), data, args.rm_class,
        "--deepspeed_config", "none", "--report_to", args.report_to, *shlex.split(args.value_args)),
        done=os.path.join("value", VALUE_DONE))


def sft_step(args: argparse.Namespace, work: str, start: str, data: str) -> Step:
    save_dir = os.path.join(work, "policy")
    resume = ["--resume_from_checkpoint", "last"] if glob.glob(os.path.join(save_dir, "checkpoint-*")) else []
    return Step("train_policy", f"policy SFT from {start}", module_argv(
        args.sft_launcher, "models.train", start, save_dir, data, "--mode", "sft", "--report_to", args.report_to,
        *resume, *shlex.split(args.sft_args)), done=os.path.join("policy", POLICY_DONE))


def round0_paths(args: argparse.Namespace) -> dict:
    samples = paths.completions_path(args.domain, args.backend, args.temperature, args.max_tokens)
    return {"samples": samples, "value_data": os.path.join(os.path.dirname(samples), paths.quality_data_name(
        args.temperature, args.max_tokens))}


def round0_steps(args: argparse.Namespace) -> tuple[list[Step], dict]:
    """The sampling and the value data of round 0 (the value model follows when there is data)."""
    files = round0_paths(args)
    common = ["--backend", args.backend, "--temperature", str(args.temperature), "--max_tokens", str(args.max_tokens)]
    steps = [
        Step("sample", f"{args.n} samples per problem from the base policy", [
            "python", "-m", "experiment.sample", *problem_flags(args), *common, "--n", str(args.n),
            *shlex.split(args.sample_args)]),
        Step("value_data", "quality values on the prefix trees of the samples", [
            "python", "-m", "experiment.process_gen_data", "--domain", args.domain, *common, "--method", "Common",
            "--mode", "quality"]),
    ]
    return steps, files


def search_flags(args: argparse.Namespace, policy: str, value_model: str) -> list[str]:
    return ["--algorithm", "star", "--mode", "generate", *problem_flags(args), "--backend", policy,
            "--rm_backend", value_model, "--rm_class", args.rm_class, *shlex.split(args.search_args)]


def search_paths(args: argparse.Namespace, policy: str, value_model: str = "") -> dict:
    """The search's trace (where sample_mcts puts it for these flags) and the two data files beside it."""
    from experiment import sample_mcts, sample_star

    trace = sample_star.star_output_path(sample_mcts.parse_args(search_flags(args, policy, value_model)))
    name, folder = os.path.basename(trace), os.path.dirname(trace)
    return {"trace": trace, "value_data": os.path.join(folder, paths.value_data_name(name)),
            "policy_data": os.path.join(folder, paths.policy_data_name(name, args.value_threshold,
                                                                       args.len_threshold))}


def search_steps(args: argparse.Namespace, policy: str, value_model: str) -> tuple[list[Step], dict]:
    """The search of round r >= 1 and its two data files."""
    files = search_paths(args, policy, value_model)
    data = ["python", "-m", "experiment.process_gen_data", "--domain", args.domain, "--backend", policy,
            "--method", "MCTS", "--value_targets", "quality", "--trace", files["trace"]]
    steps = [
        Step("search", "MCTS* with the current policy and value model", [
            "python", "-m", "experiment.sample_mcts", *search_flags(args, policy, value_model)]),
        Step("value_data", "quality values on the search trees", data),
        Step("policy_data", "correct solutions of the search trees", [
            *data, "--mode", "sft", "--value_threshold", str(args.value_threshold),
            "--len_threshold", str(args.len_threshold)]),
    ]
    return steps, files


# -- rounds ---------------------------------------------------------------------------------------------------

def run_round0(args: argparse.Namespace, runner: Runner) -> dict:
    work = round_dir(args, 0)
    steps, files = round0_steps(args)
    runner.run(steps)
    data = os.path.join(work, files["value_data"])
    if count_problems(data) < 2:
        raise SystemExit(f"rest_mcts: round 0 found correct solutions for {count_problems(data)} problem(s) in "
                         f"{args.n} samples per problem, too few for value data ({data}: the value model holds "
                         "out whole problems); sample more (--n) or more problems")
    runner.run([value_step(args, work, args.backend, data)])
    return {"round": 0, "policy": args.backend, "value_model": os.path.join(work, "value"),
            "policy_trained": False, "value_trained": True, "value_data": data, "value_records": count_records(data)}


def run_round(args: argparse.Namespace, index: int, runner: Runner, previous: dict) -> dict:
    """Round `index` >= 1 from `previous` (round index-1's round.json)."""
    work = round_dir(args, index)
    steps, files = search_steps(args, previous["policy"], previous["value_model"])
    runner.run(steps)
    value_data, policy_data = (os.path.join(work, files[key]) for key in ("value_data", "policy_data"))
    summary = {"round": index, "policy": previous["policy"], "value_model": previous["value_model"],
               "policy_trained": False, "value_trained": False, "trace": os.path.join(work, files["trace"]),
               "value_data": value_data, "value_records": count_records(value_data),
               "policy_data": policy_data, "policy_records": count_records(policy_data)}
    if summary["policy_records"]:
        start = previous["policy"] if args.init == "last" else args.backend
        runner.run([sft_step(args, work, start, policy_data)])
        summary.update(policy=os.path.join(work, "policy"), policy_trained=True)
    if count_problems(value_data) >= 2:  # the value model holds out whole problems
        start = os.path.join(previous["value_model"], "best") if args.init == "last" else args.backend
        runner.run([value_step(args, work, start, value_data)])
        summary.update(value_model=os.path.join(work, "value"), value_trained=True)
    for key, trained, need in (("policy", summary["policy_trained"], "no correct end leaf passed the filter"),
                               ("value model", summary["value_trained"], "under two problems with a correct leaf")):
        if not trained:
            logger.warning("round %d: no %s data (%s); round %d's %s carries over", index, key, need, index - 1, key)
    return summary


def run_rounds(args: argparse.Namespace, make_runner=None) -> list[dict]:
    """Rounds 0..R, each skipped when its round.json exists; returns every round's summary."""
    make_runner = make_runner or (lambda work: Runner(work, args.threads, parallel=1))
    summaries: list[dict] = []
    for index in range(args.rounds + 1):
        work = round_dir(args, index)
        done_file = os.path.join(work, ROUND_FILE)
        if os.path.exists(done_file):
            with open(done_file, encoding="utf-8") as handle:
                summaries.append(json.load(handle))
            print(f"[rest_mcts] round {index}: done before ({done_file}), skipped", flush=True)
            continue
        os.makedirs(work, exist_ok=True)
        runner = make_runner(work)
        summary = run_round0(args, runner) if index == 0 else run_round(args, index, runner, summaries[-1])
        write_json(done_file, summary)
        summaries.append(summary)
        print(f"[rest_mcts] round {index} done: policy {summary['policy']}, value model {summary['value_model']}",
              flush=True)
    return summaries


def main(argv=None) -> int:
    configure_logging()
    args = parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    write_json(os.path.join(args.work, "rest_mcts.args.json"), vars(args))
    summaries = run_rounds(args)
    print(json.dumps({"work": args.work, "policy": summaries[-1]["policy"],
                      "value_model": summaries[-1]["value_model"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
