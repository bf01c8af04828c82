"""The sandbox worker: a small pre-warmed parent that forks one fresh child per program.

Started by `evaluation.sandbox.Sandbox` as `<exec_python> -s -B <this file> '<options json>'`: run
as a script, so its sibling modules (contain, mounts, syscalls, child, harness, guard) import by
plain name, and it must run on any Python >= 3.8 with the standard library alone (BigCodeBench and
DS-1000 programs run under their own interpreter, where this project is not installed). It reads
jobs from its stdin and writes results to its stdout, as frames of a 4-byte big-endian length
followed by UTF-8 JSON; the first frame it writes is its isolation report.

Start-up (once, contain.py): die with the parent; become a child subreaper; when root, enter
private network and mount namespaces, otherwise (where allowed) a user namespace with network,
mount and PID namespaces: no network but loopback, a read-only filesystem but for a private tmpfs
on /tmp, /var/tmp and /dev/shm (mounts.py).
Per job: compile its sources (harness.py); fork; the child enters its own session, takes the
limits, a scrubbed environment, stdin from a file or /dev/null, stdout/stderr into capped files,
drops root to a uid of its own or its capabilities in a user namespace (child.py), applies the
guard prelude (guard.py), runs setup / program / tests and streams its report into a pipe; the
worker waits with a wall-clock deadline, kills the child's process group and every process the
program left, removes the directory and empties the private tmp dirs.

The package docstring (evaluation/sandbox/__init__.py) says what this protects against and what not.
"""
# Imports are few on purpose: a fork costs more the more the worker has mapped (0.6 ms bare,
# 1.3 ms with a few dozen modules), and every program pays it. Children import what they need.
import errno
import gc
import json
import os
import select
import signal
import struct
import sys
import time

from child import ChildPaths, become_child
from contain import contain
from harness import REPORT_FD, Compiler, describe, on_alarm, parse_report, run_harness
from mounts import bind_in_place, fresh_dir, make_temp_dir, remove_dir

OUTPUT_HEAD = 4096
REPORT_CAP = 256 * 1024 * 1024
SWEEP_SECONDS = 5.0


class Worker:
    """The worker's state: its containment, its directories, its compiled-code cache."""

    def __init__(self, options):
        self.options = options
        self.compiler = Compiler()
        self.containment = None
        self.base_dir = self.work_dir = self.out_dir = None
        self.base_env = None

    def start(self):
        """Contain this process, make its directories, preload modules; once."""
        # Set once here, inherited by every child: writes past the file-size limit fail instead
        # of killing the program, and the per-test timer raises SandboxTimeout.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        signal.signal(signal.SIGALRM, on_alarm)
        self.containment = contain(self.options)
        # No hyphen in the path: BigCodeBench/1127's reference splits paths on "-".
        self.base_dir = make_temp_dir("restrl_sandbox_")
        if self.containment.private_tmp.reserve(self.base_dir):
            # A mount point: a program (of our own uid, in a user namespace) cannot move or remove it.
            bind_in_place(self.base_dir)
        os.chmod(self.base_dir, 0o711)
        self.work_dir = os.path.join(self.base_dir, "work")
        self.out_dir = os.path.join(self.base_dir, "out")
        os.environ.update(HOME=self.work_dir, TMPDIR=self.work_dir, PWD=self.work_dir)
        self.base_env = dict(os.environ)
        _forget_own_modules()
        failed = []
        for name in self.options.get("preload", []):
            try:
                __import__(name)
            except Exception as exc:  # reported to the caller, which warns once
                failed.append("%s (%s)" % (name, describe(exc)))
        if failed:
            self.containment.isolation["preload_failed"] = failed
        gc.collect()
        gc.freeze()  # forked children then do not copy the worker's objects when they collect

    @property
    def isolation(self):
        return self.containment.isolation

    def close(self):
        self._sweep(final=True)
        import shutil
        shutil.rmtree(self.base_dir, ignore_errors=True)

    # ------------------------------------------------------------------------------------------
    # one job

    def run(self, job):
        """Run one job (its wire dict) in a fresh child; returns the result dict."""
        code, early = self.compiler.compile(job)
        if early is not None:
            return early
        # One fixed path, emptied after every job, so that HOME, TMPDIR and PWD are set once in the
        # worker's environment and the child has nothing to change.
        fresh_dir(self.work_dir)
        if self.containment.uid is not None:
            os.chown(self.work_dir, self.containment.uid, self.containment.uid)
        fresh_dir(self.out_dir)  # the program cannot reach its output files by name (as root)
        try:
            return self._run_in_child(job, code)
        finally:
            remove_dir(self.work_dir)
            for name in ("stdin", "stdout", "stderr"):
                try:
                    os.unlink(os.path.join(self.out_dir, name))
                except OSError:  # gone, or a program (of our uid) replaced the directory
                    pass
            remove_dir(self.out_dir)

    def _run_in_child(self, job, code):
        paths = ChildPaths(self.work_dir, None, os.path.join(self.out_dir, "stdout"),
                           os.path.join(self.out_dir, "stderr"))
        if job.get("stdin") is not None:
            paths.stdin = os.path.join(self.out_dir, "stdin")
            with open(paths.stdin, "w") as handle:
                handle.write(job["stdin"])
        report_read, report_write = os.pipe()
        token = os.urandom(8).hex() if job.get("hardened") else None
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(report_read)
                data_fds, output_fd = become_child(self.containment, job, paths, report_write, self.base_env)
                run_harness(job, code, data_fds, output_fd, token)
            except BaseException:
                _report_sandbox_failure(token)
            finally:
                os._exit(0)
        os.close(report_write)
        raw, status, timed_out = self._wait(pid, report_read, start + float(job["timeout"]))
        result = parse_report(raw, token)
        result.update(time=time.monotonic() - start, timed_out=timed_out,
                      stdout=_head(paths.stdout), stderr=_head(paths.stderr))
        if os.WIFSIGNALED(status):
            result["signal"] = os.WTERMSIG(status)
        elif os.WIFEXITED(status):
            result["exit_code"] = os.WEXITSTATUS(status)
        return result

    def _wait(self, pid, report_fd, deadline):
        """Collect the report until the child exits or the deadline passes, then kill what is
        left; returns (report bytes, wait status, timed_out)."""
        chunks, size, timed_out = [], 0, False
        pidfd = _pidfd_open(pid)
        watch = [report_fd] + ([pidfd] if pidfd is not None else [])
        status = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            poll = remaining if pidfd is not None else min(remaining, 0.005)
            ready, _, _ = select.select(watch, [], [], poll)
            if report_fd in ready:
                data = os.read(report_fd, 1 << 16)
                if data and size < REPORT_CAP:
                    chunks.append(data)
                    size += len(data)
                elif not data:
                    watch.remove(report_fd)
            if pidfd is not None and pidfd in ready:
                break
            if pidfd is None or report_fd not in watch:
                done, wait_status = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = wait_status
                    break
        _kill_group(pid)
        if status is None:
            _, status = os.waitpid(pid, 0)
        if pidfd is not None:
            os.close(pidfd)
        self._sweep()
        chunks.append(_drain(report_fd, REPORT_CAP - size))
        os.close(report_fd)
        return b"".join(chunks), status, timed_out

    # ------------------------------------------------------------------------------------------
    # the sweep: no process of a program outlives it

    def _sweep(self, final=False):
        """Kill every process the last program left, whatever session it moved to, then (between
        programs) empty the private tmp dirs. Every descendant of a child is reparented to this
        worker (a subreaper), so the sweep is over when the worker has no children left; a fork
        storm may add processes during a round, hence the rounds."""
        kill_round = self._kill_round()
        deadline = time.monotonic() + SWEEP_SECONDS
        while kill_round is not None:
            kill_round()
            if not _reap() or time.monotonic() > deadline:
                break
            time.sleep(0.0005)
        if not final:
            self.containment.private_tmp.empty()

    def _kill_round(self):
        """One round of killing what programs left, for this containment; None when the worker
        has no child left (and nothing else could have been left)."""
        if self.containment.uid is not None:
            return self._kill_program_uid
        if self.containment.pid_namespace:
            return _kill_all_but_me
        return _kill_children if _reap() else None

    def _kill_program_uid(self):
        # kill(-1) as the program's uid reaches exactly that uid's processes (also those no longer
        # below this worker); the saved uid stays 0 so the worker takes root back at once.
        uid = self.containment.uid
        os.setresuid(uid, uid, 0)
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.setresuid(0, 0, 0)


def _kill_all_but_me():
    """As PID 1 of a PID namespace: kill(-1) reaches every other process of the namespace."""
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass


def _kill_children():
    """Without a uid or a PID namespace of its own: kill this worker's children (descendants that
    left their process group are reparented here, a subreaper), each with its process group."""
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % entry) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == me:
            _kill_group(int(entry))


def _kill_group(pid):
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _reap():
    """Reap exited children; True while some child is still alive."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def _report_sandbox_failure(token=None):
    """In the child, when the sandbox itself failed (not the program): say so where the worker reads."""
    import traceback
    try:
        os.write(2, traceback.format_exc().encode("utf-8", "replace"))
        report = {"status": "harness_error", "stage": "sandbox", "error": traceback.format_exc()[-1000:],
                  "token": token}
        os.write(REPORT_FD, b"R " + json.dumps(report).encode() + b"\n")
    except BaseException:  # nothing left to tell it with: the worker sees no report
        pass


def _forget_own_modules():
    """Programs must import nothing of ours by accident: take the worker's directory off the path
    (running as a script put it first) and its modules out of sys.modules (a program's `import
    harness` finds its own or none); the worker keeps its references to them."""
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0]) == here:
        del sys.path[0]
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name != "__main__" and path and os.path.dirname(os.path.abspath(path)) == here:
            del sys.modules[name]


# ----------------------------------------------------------------------------------------------
# reading what the child left


def _head(path):
    """The first OUTPUT_HEAD bytes of a file as text ("...[truncated]" after them when longer)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return ""
    try:
        data = os.read(fd, OUTPUT_HEAD + 1)
    finally:
        os.close(fd)
    text = data[:OUTPUT_HEAD].decode("utf-8", "replace")
    return text + ("...[truncated]" if len(data) > OUTPUT_HEAD else "")


def _drain(fd, cap):
    os.set_blocking(fd, False)
    chunks, size = [], 0
    while size < cap:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not data:
            break
        chunks.append(data)
        size += len(data)
    return b"".join(chunks)


def _pidfd_open(pid):
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


# ----------------------------------------------------------------------------------------------
# framing and the main loop


def read_frame(fd):
    """The next frame's JSON from `fd`, or None at end of file."""
    header = _read_exact(fd, 4)
    if header is None:
        return None
    (length,) = struct.unpack(">I", header)
    body = _read_exact(fd, length)
    return None if body is None else json.loads(body.decode("utf-8"))


def _read_exact(fd, size):
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def write_frame(fd, obj):
    body = json.dumps(obj).encode("utf-8")
    data = struct.pack(">I", len(body)) + body
    while data:
        written = os.write(fd, data)
        data = data[written:]


def main():
    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    in_fd, out_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    worker = Worker(options)
    worker.start()
    try:
        write_frame(out_fd, {"ready": worker.isolation, "pid": os.getpid()})
        while True:
            request = read_frame(in_fd)
            if request is None:
                break
            try:
                result = worker.run(request["job"])
            except Exception:
                import traceback
                result = {"status": "harness_error", "reported": True, "tests": [],
                          "error": "sandbox worker: " + traceback.format_exc()[-2000:]}
            write_frame(out_fd, {"id": request["id"], "result": result})
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
    finally:
        worker.close()


if __name__ == "__main__":
    main()
