"""The skeleton every stage script's `main` runs in: logging set up once (`models.training.configure_logging`),
then the stage's body, where bad input ends the run with one line on stderr and exit 2 and a sandbox that
cannot run ends it with one line and exit 1 (lines already written are kept: a rerun resumes); and the
generating stages' whole run on top of it: the problems left to do, the environment check in the sandbox
the programs then run in (before any model time), the output path printed.

    def main(argv=None) -> int:
        args = parse_args(argv)
        return run_stage(args, output_path(args), RESULT_ARGS, check_run_args, run)

    def main(argv=None) -> int:  # a stage with a body of its own
        return stage_main(summarize_files, parse_args(argv))
"""
from __future__ import annotations

import argparse
import logging
import sys
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from data.jsonl import output_lock
from data.records import Problem
from evaluation import env_check
from evaluation.sandbox import Sandbox, SandboxError
from experiment.common import plan_run
from models.errors import EngineError
from models.training import configure_logging

logger = logging.getLogger(__name__)

BAD_INPUT_EXIT = 2  # a data file, an argument or the environment is wrong: nothing was run
FAILURE_EXIT = 1  # the sandbox or the engine could not run


class Refused(Exception):
    """The stage may not start (a module the programs need is missing); the message is the whole line."""


def stage_main(body: Callable[..., object], *args) -> int:
    """Set up logging, run `body(*args)`, return the exit code: 0 when it returns; 2 with one line on
    bad input (a `ValueError`, `data.jsonl.DataError` among them, or `Refused`); 1 with one line when
    the sandbox or the generation engine cannot run (`models.errors.EngineError`). Any other exception
    is a bug and keeps its traceback."""
    configure_logging()
    try:
        body(*args)
    except Refused as exc:
        return _fail(str(exc), BAD_INPUT_EXIT)
    except ValueError as exc:
        return _fail(f"error: {exc}", BAD_INPUT_EXIT)
    except (SandboxError, EngineError) as exc:  # EngineError: a replica died, hung or failed; CUDA unusable
        return _fail(f"error: {exc}", FAILURE_EXIT)
    return 0


def _fail(line: str, code: int) -> int:
    print(line, file=sys.stderr)
    return code


@contextmanager
def checked_sandbox(args: argparse.Namespace, problems: Sequence[Problem]) -> Iterator[Sandbox]:
    """A sandbox (--workers, --exec_python) in which the environment check on `problems` has passed
    (--skip_env_check skips it): a missing module stops the stage here, never as a silent 0 per program.
    Raises `Refused` with the check's line, SandboxError when the sandbox cannot start."""
    with Sandbox(workers=args.workers, exec_python=args.exec_python) as sandbox:
        refusal = env_check.run_check(args, problems, sandbox)
        if refusal:
            raise Refused(refusal)
        yield sandbox


def run_stage(args: argparse.Namespace, output: str, result_args: Sequence[str], check, run) -> int:
    """A generating stage's main: `check(args)`, then `run(args, todo, output, sandbox)` on the problems
    not yet in `output`, in a `checked_sandbox`, holding the output's lock (another run on it: exit 2);
    prints the output path. Exit codes as `stage_main`."""

    def body() -> None:
        check(args)
        with output_lock(output):  # one writer: from before the resume read to the last line
            problems, done = plan_run(args, output, result_args)
            todo = [problem for problem in problems if problem.id not in done]
            logger.info("%s: %d problems to run, %d already in %s", args.domain, len(todo), len(done), output)
            if todo:
                with checked_sandbox(args, todo) as sandbox:
                    run(args, todo, output, sandbox)
        print(output)

    return stage_main(body)
