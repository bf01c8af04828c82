"""Build the interpreter that runs BigCodeBench or DS-1000 programs, and check what one lacks.

Their programs need old pinned libraries (pandas 2.0, numpy 1.x, TensorFlow 2.1x, ...) that the
project's own environment does not have. This creates a separate virtual environment with the
pinned set from config/envs/ and prints the interpreter to pass as `--exec_python`:

    python -m data.build_env --domain BigCodeBench [--venv PATH] [--python PYTHON] [--dry-run]
    python -m evaluation.verify --domain BigCodeBench --exec_python .venv-bigcodebench/bin/python ...

--python (default: this interpreter) picks the file: BigCodeBench on Python 3.10 gets the original's
list as it is (`bigcodebench-py310.txt`; scikit-image 0.18.0 then builds from source), on 3.11 the
nearest installable pins (`bigcodebench.txt`, its header lists each change); DS-1000 gets
`ds1000.txt` on 3.10 and 3.11. --venv defaults to .venv-<domain> in the current directory (ignored by
git). --dry-run only resolves the pins (pip install --dry-run). Extra arguments after `--` go to pip
(e.g. `-- --extra-index-url https://download.pytorch.org/whl/cpu` for a CPU-only torch). For
BigCodeBench it then downloads the NLTK corpora some tasks fetch at run time into <venv>/nltk_data
(programs in the sandbox have no network); without network that step only warns
(--no-nltk-data skips it). The venv must be readable by other users and not under /tmp, which the
sandbox replaces by a private tmpfs.

`missing_libraries(names, exec_python)` says which modules an interpreter cannot import (in a
subprocess, never in this process); with `Benchmark.libraries(problem)` it tells which tasks an
environment can run at all.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Iterable

from data.records import SAFE_ENV

ENV_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config", "envs")
# domain -> {"major.minor" of the interpreter: requirement file}
REQUIREMENTS = {
    "BigCodeBench": {"3.10": "bigcodebench-py310.txt", "3.11": "bigcodebench.txt"},
    "DS1000": {"3.10": "ds1000.txt", "3.11": "ds1000.txt"},
}
# NLTK corpora the BigCodeBench tasks download at run time (`nltk.download(...)` in their code), which
# a sandbox without network cannot: fetched into <venv>/nltk_data, where NLTK looks (sys.prefix).
NLTK_DATA = {"BigCodeBench": ("punkt", "stopwords", "vader_lexicon", "words", "averaged_perceptron_tagger")}
_NLTK_FETCH = """\
import sys, nltk
for name in sys.argv[2:]:
    nltk.download(name, download_dir=sys.argv[1], quiet=True, raise_on_error=True)
"""
# Imports each name in its own try; prints the JSON list of those that failed, as the last line.
_CHECK = """\
import importlib, json, sys
failed = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException:
        failed.append(name)
sys.stdout.write("\\n" + json.dumps(failed) + "\\n")
"""


def python_version(python: str) -> str:
    out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def requirement_file(domain: str, version: str) -> str:
    files = REQUIREMENTS.get(domain)
    if files is None:
        raise ValueError(f"no execution environment for {domain!r}; known: {', '.join(REQUIREMENTS)}")
    if version not in files:
        raise ValueError(f"no pinned set for {domain} on Python {version}; use one of "
                         f"{', '.join(sorted(files))} (--python)")
    return os.path.join(ENV_DIR, files[version])


def build(domain: str, venv: str, python: str, dry_run: bool = False, pip_args: Iterable[str] = ()) -> str:
    """Create `venv` with `python`, install the domain's pinned set; returns its interpreter."""
    requirements = requirement_file(domain, python_version(python))
    interpreter = os.path.join(os.path.abspath(venv), "bin", "python")
    if not os.path.exists(interpreter):
        subprocess.run([python, "-m", "venv", venv], check=True)
    command = [interpreter, "-m", "pip", "install", "-r", requirements, *pip_args]
    if dry_run:
        command.append("--dry-run")
    subprocess.run(command, check=True)
    return interpreter


def fetch_nltk_data(domain: str, interpreter: str) -> str | None:
    """Download the domain's NLTK corpora next to `interpreter`'s venv; None on success, else why
    not (no network here: the tasks that need them then fail the ground-truth check)."""
    packages = NLTK_DATA.get(domain, ())
    if not packages:
        return None
    target = os.path.join(os.path.dirname(os.path.dirname(interpreter)), "nltk_data")
    try:
        out = subprocess.run([interpreter, "-c", _NLTK_FETCH, target, *packages], capture_output=True,
                             text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return "timed out"
    return None if out.returncode == 0 else (out.stderr.strip().splitlines() or ["failed"])[-1]


def _import_check(names: list[str], exec_python: str, timeout: float) -> list[str] | None:
    """The names that fail to import, or None when the checking process itself failed."""
    env = {**SAFE_ENV, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    with tempfile.TemporaryDirectory(prefix="restrl-imports-") as cwd:  # nothing to shadow a module
        try:
            out = subprocess.run([exec_python, "-s", "-B", "-c", _CHECK, *names], cwd=cwd, env=env,
                                 capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        return None
    try:
        return list(json.loads(lines[-1]))
    except ValueError:
        return None


def missing_libraries(names: Iterable[str], exec_python: str | None = None, timeout: float = 600.0) -> list[str]:
    """The modules of `names` that `exec_python` (default: this interpreter) cannot import.

    All are tried in one subprocess; if that process dies (an import that crashes the
    interpreter), each is tried in a process of its own."""
    names = sorted(set(names))
    if not names:
        return []
    exec_python = exec_python or sys.executable
    missing = _import_check(names, exec_python, timeout)
    if missing is None:
        missing = [name for name in names if _import_check([name], exec_python, timeout) != []]
    return sorted(missing)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domain", required=True, choices=sorted(REQUIREMENTS))
    parser.add_argument("--venv", default=None, help="where to create it (default .venv-<domain>)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the venv (3.10 or 3.11)")
    parser.add_argument("--dry-run", action="store_true", help="only resolve the pins")
    parser.add_argument("--no-nltk-data", action="store_true", help="do not download the NLTK corpora")
    parser.add_argument("pip_args", nargs="*", help="after --: extra arguments for pip install")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    venv = args.venv or f".venv-{args.domain.lower()}"
    try:
        interpreter = build(args.domain, venv, args.python, args.dry_run, args.pip_args)
    except (ValueError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    if args.dry_run:
        print(f"resolved; --exec_python would be {interpreter}")
        return 0
    problem = None if args.no_nltk_data else fetch_nltk_data(args.domain, interpreter)
    if problem:
        print(f"warning: NLTK data not downloaded ({problem}); the tasks that need it will fail",
              file=sys.stderr)
    print(interpreter)
    return 0


if __name__ == "__main__":
    sys.exit(main())
