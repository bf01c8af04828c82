"""What the experiment drivers share (`experiment.reproduce`, its VinePPO miniature, `experiment.rest_mcts`):
a step scheduler that runs stage commands in dependency order, logs them, resumes finished work, and
keeps each invocation's seconds in timing.json.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass

from data.jsonl import write_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Step:
    name: str  # unique; also the log file's name
    title: str
    argv: list[str]
    after: tuple[str, ...] = ()  # steps that must have finished first
    done: str | None = None  # a path (in the working directory) whose existence means: nothing to do
    cwd: str | None = None  # a folder inside the working directory to run in (default: the working directory)


class Runner:
    """Runs steps in dependency order, up to `parallel` at once, in the working directory; logs each
    command to commands.sh (in start order) and its output to logs/<name>.log."""

    def __init__(self, work: str, threads: int, parallel: int):
        self.work, self.parallel, self.start = work, max(1, parallel), time.monotonic()
        self.env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                    "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "offline",
                    "PYTHONUNBUFFERED": "1"}
        os.makedirs(os.path.join(work, "logs"), exist_ok=True)
        self.commands = open(os.path.join(work, "commands.sh"), "a", encoding="utf-8")
        self.seconds: dict[str, float] = {}

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def _launch(self, step: Step) -> subprocess.Popen:
        command = " ".join(shlex.quote(part) for part in step.argv)
        if step.cwd:
            command = f"(cd {shlex.quote(step.cwd)} && {command})"
        print(f"[{self.elapsed():6.0f} s] start {step.name}: {step.title}\n  $ {command}", flush=True)
        self.commands.write(f"# {step.title}\n{command}\n")
        self.commands.flush()
        log = open(os.path.join(self.work, "logs", f"{step.name}.log"), "a", encoding="utf-8")
        cwd = os.path.join(self.work, step.cwd) if step.cwd else self.work
        os.makedirs(cwd, exist_ok=True)
        process = subprocess.Popen([sys.executable if part == "python" else part for part in step.argv],
                                   cwd=cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        process.log, process.began = log, time.monotonic()
        return process

    def run(self, steps: list[Step]) -> None:
        names = [step.name for step in steps]
        assert len(set(names)) == len(names), "step names must be unique"
        pending, running, finished = list(steps), {}, set()
        while pending or running:
            for step in list(pending):
                if len(running) >= self.parallel:
                    break
                if all(name in finished for name in step.after):
                    pending.remove(step)
                    if step.done and os.path.exists(os.path.join(self.work, step.done)):
                        finished.add(step.name)
                        continue
                    running[step.name] = (step, self._launch(step))
            if pending and not running:
                missing = sorted({name for step in pending for name in step.after} - set(names))
                raise SystemExit(f"reproduce: steps wait on unknown steps {missing}")
            time.sleep(0.5)
            for name, (step, process) in list(running.items()):
                if process.poll() is None:
                    continue
                process.log.close()
                del running[name]
                self.seconds[name] = round(time.monotonic() - process.began, 1)
                if process.returncode != 0:
                    self._fail(step, process.returncode, running)
                finished.add(name)
                print(f"[{self.elapsed():6.0f} s] done  {name} ({self.seconds[name]:.0f} s)", flush=True)

    def _fail(self, step: Step, code: int, running: dict) -> None:
        for _, process in running.values():  # they resume on the next run
            process.terminate()
            process.wait()
        with open(os.path.join(self.work, "logs", f"{step.name}.log"), encoding="utf-8", errors="replace") as handle:
            tail = handle.readlines()[-15:]
        sys.stderr.write("".join(tail))
        raise SystemExit(f"reproduce: step {step.name} ({step.title}) failed with exit {code}; its log is "
                         f"{self.work}/logs/{step.name}.log; run the same command again to resume")


def ids(count: int) -> str:
    return ",".join(str(index) for index in range(count))


def flags(settings: dict) -> list[str]:
    return [part for name, value in settings.items() for part in (f"--{name}", str(value))]


def prepare_policy(config: dict, run: Runner, tiny_flags: tuple[str, ...] = ()) -> None:
    """The tiny policy (trained once, in the repository, with `python -m models.tiny *tiny_flags`) linked in;
    the time a training takes is not counted in the run's `elapsed()`."""
    policy = os.path.join(REPO, config["policy"])
    if not os.path.exists(os.path.join(policy, "config.json")):
        print("[reproduce] training the tiny policy first (python -m models.tiny; about 6 minutes)", flush=True)
        began = time.monotonic()
        subprocess.run([sys.executable, "-m", "models.tiny", *tiny_flags, "--output", policy, "--if_missing", "true",
                        "--eval_n", "0"], cwd=REPO, env=run.env, check=True)
        run.start += time.monotonic() - began  # the stages' time (elapsed_s) leaves the policy's training out
    link = os.path.join(run.work, config["policy"])
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if not os.path.lexists(link):
        os.symlink(policy, link)


def stage_time(work: str, run: Runner, record: bool = True) -> float:
    """Seconds the stages and the table took, over every invocation that ran a stage (a resumed run adds
    its own time; one that only rebuilds the table adds nothing)."""
    runs = timing_runs(work)
    if record and (run.seconds or not runs):  # an invocation that only rebuilt the table adds nothing
        runs.append({"elapsed_s": round(run.elapsed(), 1), "steps_run": len(run.seconds),
                     "step_seconds": run.seconds})
        write_json(os.path.join(work, "timing.json"), {"runs": runs})
    return sum(entry["elapsed_s"] for entry in runs)


def step_seconds(work: str) -> dict[str, float]:
    """Each step's seconds, from the invocation that last ran it (timing.json)."""
    return {name: seconds for entry in timing_runs(work) for name, seconds in entry.get("step_seconds", {}).items()}


def timing_runs(work: str) -> list[dict]:
    """timing.json's record of every invocation that ran a stage (empty before the first)."""
    path = os.path.join(work, "timing.json")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)["runs"]
