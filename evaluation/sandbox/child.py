"""What a program's freshly forked child does before the harness runs: its session, descriptors,
files, limits, environment and privileges, in that order.

Worker side: standard library only, any Python >= 3.8 (imported by plain name beside worker.py).
"""
import os
import resource

from contain import drop_privileges
from harness import REPORT_FD
from mounts import open_shared


class ChildPaths:
    """Where the child's directory and its stdin, stdout and stderr files are (stdin None: /dev/null)."""

    def __init__(self, work_dir, stdin, stdout, stderr):
        self.work_dir, self.stdin, self.stdout, self.stderr = work_dir, stdin, stdout, stderr


def become_child(containment, job, paths, report_fd, base_env):
    """In the forked child: a session of its own, the standard descriptors and the report pipe on
    REPORT_FD (every other descriptor closed), the job's files opened, then limits, environment
    and privileges. Returns (data file descriptors, output file descriptor or None)."""
    os.setsid()
    os.chdir(paths.work_dir)
    stdin = os.open(paths.stdin or os.devnull, os.O_RDONLY)
    stdout = os.open(paths.stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    stderr = os.open(paths.stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2), (report_fd, REPORT_FD)):
        os.dup2(fd, target)
    shared_fd = containment.shared_fd if containment.shared_fd is not None else _max_fd()
    os.closerange(REPORT_FD + 1, shared_fd)
    os.closerange(shared_fd + 1, _max_fd())
    data_fds, output_fd = _open_job_files(containment, job)
    if containment.shared_fd is not None:
        os.close(containment.shared_fd)
    _set_limits(job["limits"], per_user=containment.uid is not None or containment.user_namespace)
    wanted = dict(base_env, **(job.get("env") or {}))
    if wanted != base_env:
        os.environ.clear()
        os.environ.update(wanted)
    drop_privileges(containment)
    return data_fds, output_fd


def _open_job_files(containment, job):
    """Files the harness reads or writes, opened before the program runs: in the shared directory,
    through the worker's descriptor (no name leads there from inside)."""
    def open_file(path, flags):
        return open_shared(containment.shared_fd, containment.shared_dir, path, flags)
    data_fds = [open_file(path, os.O_RDONLY) for path in job.get("data_files") or []]
    output_fd = None
    if job.get("output_file"):
        output_fd = open_file(job["output_file"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    return data_fds, output_fd


def _set_limits(limits, per_user):
    """The job's rlimits; processes only when `per_user` (a uid of our own, or counted per user
    namespace). Where a hard limit cannot be set as asked, the soft one still is, when lower."""
    settings = [
        (resource.RLIMIT_AS, limits["memory_bytes"]),
        (resource.RLIMIT_CPU, int(limits["cpu_seconds"])),
        (resource.RLIMIT_FSIZE, limits["file_bytes"]),
        (resource.RLIMIT_NOFILE, limits["open_files"]),
        (resource.RLIMIT_CORE, 0),
    ]
    if per_user:
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


def _max_fd():
    try:
        return min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1 << 16)
    except (ValueError, OSError):
        return 4096
