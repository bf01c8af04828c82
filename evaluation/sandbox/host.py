"""What the caller's side of the sandbox learns from the machine: how many CPUs it may use, the
shared directory jobs exchange files through, and what protection a worker reports missing.
"""
from __future__ import annotations

import fcntl
import math
import os
import shutil
import tempfile
import time


def available_cpus(proc_self: str = "/proc/self", cgroup_root: str = "/sys/fs/cgroup") -> int:
    """The CPUs this process may use: its affinity mask (taskset, Slurm's cpusets), capped by a
    cgroup CPU quota (v2 cpu.max, v1 cpu.cfs_quota_us, on this cgroup or any parent; containers
    and Slurm jobs), rounded up; at least 1. os.cpu_count() is the machine's count instead."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota(proc_self, cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def _cgroup_quota(proc_self: str, cgroup_root: str) -> float | None:
    """The tightest CPU quota (in CPUs) over this process's cgroup and its parents, or None."""
    try:
        with open(os.path.join(proc_self, "cgroup")) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: one unified hierarchy
            base, read = cgroup_root, _v2_quota
        elif "cpu" in controllers.split(","):
            base = next((os.path.join(cgroup_root, name) for name in (controllers, "cpu", "cpu,cpuacct")
                         if os.path.isdir(os.path.join(cgroup_root, name))), None)
            read = _v1_quota
            if base is None:
                continue
        else:
            continue
        parts = [part for part in path.split("/") if part]
        for depth in range(len(parts), -1, -1):
            quota = read(os.path.join(base, *parts[:depth]))
            if quota is not None:
                quotas.append(quota)
    return min(quotas) if quotas else None


def _v2_quota(directory: str) -> float | None:
    try:
        quota, period = open(os.path.join(directory, "cpu.max")).read().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _v1_quota(directory: str) -> float | None:
    try:
        quota = int(open(os.path.join(directory, "cpu.cfs_quota_us")).read())
        period = int(open(os.path.join(directory, "cpu.cfs_period_us")).read())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


SHARED_PREFIX = "restrl_sandbox_shared_"


def make_shared_dir() -> tuple[str, int]:
    """A new shared directory, locked (flock) by this process for as long as it lives: the kernel
    drops the lock when the process dies, even by SIGKILL, so the next sandbox on the machine
    removes the directories whose lock nobody holds."""
    _remove_stale_shared_dirs(tempfile.gettempdir())
    path = tempfile.mkdtemp(prefix=SHARED_PREFIX)
    lock = os.open(os.path.join(path, ".lock"), os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    return path, lock


def _remove_stale_shared_dirs(base: str, grace_seconds: float = 60.0) -> list[str]:
    """Remove this user's shared directories left by killed processes; returns them."""
    removed = []
    try:
        names = [name for name in os.listdir(base) if name.startswith(SHARED_PREFIX)]
    except OSError:
        return removed
    for name in names:
        path = os.path.join(base, name)
        try:
            if os.lstat(path).st_uid != os.geteuid():
                continue
            lock = os.open(os.path.join(path, ".lock"), os.O_RDWR)
        except FileNotFoundError:  # no lock file: one being made now, or an old one (no locks then)
            try:
                if time.time() - os.lstat(path).st_mtime > grace_seconds:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
            except OSError:
                pass
            continue
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its sandbox is alive
            os.close(lock)
            continue
        shutil.rmtree(path, ignore_errors=True)
        os.close(lock)
        removed.append(path)
    return removed


def missing_protection(isolation: dict, no_privileges: bool = False) -> str | None:
    """One line naming what a worker's isolation report lacks, or None when it is contained."""
    if isolation.get("root") or isolation.get("user_namespace") is True:
        if isolation.get("read_only") is not True:
            return ("sandbox: the filesystem could not be made read-only for programs: they can write "
                    "wherever this user can")
        return None
    why = "no_privileges=True" if no_privileges else str(isolation.get("user_namespace", "not tried"))
    why = why.removeprefix("unavailable: ")
    return ("sandbox: user namespaces unavailable (%s): programs run as this user, unconfined: they can write "
            "wherever it can, reach the network and signal its processes (README, 'The sandbox' says how to "
            "enable them)" % why)
