"""Build a checkout copy and a venv that an unprivileged user (uid 65534) can read, under /tmp,
and run the sandbox tests there as that user: `setpriv --reuid 65534 ...`. Used by the slow test
in tests/test_sandbox.py and by hand:

    .venv/bin/python -m tests.unprivileged [pytest arguments]

The venv comes from the system interpreter (/usr/bin/python3: a venv of ours may sit under /root,
which other users cannot enter), and gets copies of pytest and its pure-Python dependencies; the
checkout copy holds only the packages the sandbox tests import. About a second to build.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"
TEST_PACKAGES = ("pytest", "pluggy", "iniconfig", "packaging", "pygments")
COPIED = ("pyproject.toml", "evaluation", "data", "prompts", "tests/conftest.py",
          "tests/test_sandbox.py", "tests/unprivileged.py")
SETPRIV = ("setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups")


def why_not_possible() -> str | None:
    """Why the unprivileged run cannot happen here, or None."""
    if os.geteuid() != 0:
        return "needs root to switch to uid 65534"
    if shutil.which("setpriv") is None:
        return "no setpriv (util-linux)"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"no {SYSTEM_PYTHON}"
    probe = subprocess.run([*SETPRIV, "unshare", "-Urnm", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return "user namespaces are not allowed here: " + (probe.stderr.strip() or f"exit {probe.returncode}")
    return None


def build(base: Path) -> tuple[Path, Path]:
    """(interpreter, checkout) under `base`, readable by everyone."""
    checkout, venv = base / "checkout", base / "venv"
    for name in COPIED:
        source, target = REPO / name, checkout / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.jsonl*", "*.json"))
        elif source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    for package in TEST_PACKAGES:
        _copy_distribution(package, site)
    (site / "restrl_checkout.pth").write_text(str(checkout) + "\n")
    for path in [base, *base.rglob("*")]:  # the user's own checkout, venv and home, as on a cluster
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
    return venv / "bin" / "python", checkout


def _copy_distribution(name: str, site: Path) -> None:
    distribution = importlib.metadata.distribution(name)
    for file in distribution.files or ():
        source = Path(distribution.locate_file(file))
        if "__pycache__" in file.parts or not source.is_file() or ".." in file.parts:
            continue
        target = site / file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def run(pytest_args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run pytest as uid 65534 on the copy; the copy is removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="restrl_unprivileged_", dir="/tmp"))
    try:
        python, checkout = build(base)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(base), "LANG": "C.UTF-8",
               "OMP_NUM_THREADS": "1", "RESTRL_TEST_SECRET_SOURCE": "unprivileged"}
        return subprocess.run([*SETPRIV, str(python), "-B", "-m", "pytest", "-p", "no:cacheprovider", *pytest_args],
                              cwd=checkout, env=env, capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    reason = why_not_possible()
    if reason:
        sys.exit(f"cannot run unprivileged: {reason}")
    process = run(sys.argv[1:] or ["-q", "tests/test_sandbox.py", "-m", "not slow"])
    print(process.stdout[-6000:], process.stderr[-3000:])
    sys.exit(process.returncode)
