"""The caller's side of the sandbox: a pool of worker processes fed from one queue.

`Sandbox` starts the workers (worker.py, run as a script by `exec_python`), writes them jobs and
reads back results through their pipes, from one dispatch thread; the package docstring says what
the sandbox protects against and what it does not.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import selectors
import shutil
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from concurrent.futures import Future
from typing import Iterable, Sequence

from data.records import SAFE_ENV, Job, Result, result_from_wire
from evaluation.sandbox.host import available_cpus, make_shared_dir, missing_protection

logger = logging.getLogger(__name__)

# Run as a script: its siblings import by plain name, and exec_python needs nothing of ours installed.
WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
# Modules most programs import: loaded once in each worker so that a forked child finds them ready.
# Few: each module preloaded makes every fork dearer (see worker.py).
DEFAULT_PRELOAD = ("math", "typing", "re", "collections", "itertools", "functools", "heapq", "string")


class SandboxError(RuntimeError):
    """The sandbox itself could not run (workers fail to start); never raised for a program."""


def _worker_env(exec_python: str) -> dict:
    """The workers' (and so every child's) whole environment: nothing of the caller's."""
    bin_dir = os.path.dirname(os.path.abspath(exec_python))
    return {**SAFE_ENV, "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"}


class _WorkerProcess:
    """One worker process and what the dispatch thread keeps for it."""

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
        # removed on close, or by the next sandbox when this process was killed (see host.py).
        self.shared_dir, self._shared_lock = make_shared_dir()
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

    def _start_worker(self, index: int) -> _WorkerProcess:
        worker = _WorkerProcess(self, index)
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

    def _flush(self, worker: _WorkerProcess) -> None:
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

    def _on_readable(self, worker: _WorkerProcess) -> None:
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

    def _on_message(self, worker: _WorkerProcess, message: dict) -> None:
        if "ready" in message:
            worker.ready, worker.isolation = True, message["ready"]
            self._failed_starts = 0
            _warn_once(missing_protection(worker.isolation, self.no_privileges))
            if worker.isolation.get("preload_failed"):
                _warn_once("sandbox: workers could not preload %s" % ", ".join(worker.isolation["preload_failed"]))
            return
        job_id, _, future = worker.in_flight.popleft()
        assert job_id == message["id"], "sandbox worker answered out of order"
        future.set_result(result_from_wire(message["result"]))

    def _on_worker_death(self, worker: _WorkerProcess) -> None:
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
