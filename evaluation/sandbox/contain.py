"""The worker's containment, as root and as any other user: entered once at start-up, dropped to
by every program's child.

Worker side: standard library only, any Python >= 3.8 (imported by plain name beside worker.py).
Two ways in, one view out (mounts.py):
  - as root: new network and mount namespaces, and each program runs as a random uid of its own;
  - as any other user, where the kernel allows user namespaces: a user namespace that maps only
    the user's own uid, with network, mount and PID namespaces inside it. The worker becomes PID 1
    of its PID namespace: programs cannot name (so cannot signal or trace) any process outside it,
    `kill(-1)` from the worker ends every process a program left, and when the worker dies the
    kernel ends them all. Each program drops every capability and sets no_new_privs before it runs.
Either way the network is the namespace's own loopback only.

Checks: `unshare -Urnm true` as the user says whether user namespaces are allowed
(/proc/sys/user/max_user_namespaces > 0; on Ubuntu >= 23.10 also the AppArmor setting
kernel.apparmor_restrict_unprivileged_userns = 0).
"""
import ctypes
import os
import signal
import struct
import sys

import mounts
from syscalls import (
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    errno_text,
    libc,
    mount,
    prctl,
    unshare,
)

HERE = os.path.dirname(os.path.abspath(__file__))  # the worker's own directory: not for programs


class Containment:
    """What the worker entered, and what each program's child drops to (`drop_privileges`)."""

    def __init__(self, root, shared_dir):
        self.root = root
        self.isolation = {"root": root}  # the report the worker sends its caller
        self.uid = None  # as root: the uid every program runs as
        self.user_namespace = False  # programs run in our user namespace: they drop capabilities
        self.pid_namespace = False  # the worker is PID 1 of its own PID namespace
        self.shared_dir = shared_dir
        self.shared_fd = None  # the shared directory, reached only through this descriptor
        self.private_tmp = mounts.PrivateTmp()


def contain(options):
    """Enter the containment `options` allow (no_privileges: none); returns the Containment. Dies
    with the caller from here on, and becomes the subreaper of every process a program leaves."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before PDEATHSIG was armed
        os._exit(1)
    no_privileges = options.get("no_privileges", False)
    containment = Containment(os.geteuid() == 0 and not no_privileges, options.get("shared_dir"))
    containment.isolation["subreaper"] = prctl(PR_SET_CHILD_SUBREAPER, 1)
    if containment.root:
        _contain_as_root(containment, options)
    elif not no_privileges and libc is not None:
        _contain_in_user_namespace(containment, options)
    return containment


def _contain_as_root(containment, options):
    if libc is not None:
        if unshare(CLONE_NEWNET):
            containment.isolation["network"] = _network_report()
        if unshare(CLONE_NEWNS):
            _contain_filesystem(containment, options, expose=True)
    # A uid of its own, random so that concurrent workers (and other sandboxes on the machine)
    # never share one: a program cannot signal, or outlive the sweep of, another's.
    uid = (1 << 24) + int.from_bytes(os.urandom(4), "big") % ((1 << 30) - (1 << 24))
    unreadable = _unreadable_by(uid, interpreter_paths())
    if unreadable:
        containment.isolation["uid"] = "not used: %s is not readable by other users" % unreadable
    else:
        containment.uid = containment.isolation["uid"] = uid


def _contain_in_user_namespace(containment, options):
    why_not = enter_user_namespace()
    if why_not:
        containment.isolation["user_namespace"] = "unavailable: " + why_not
        return
    containment.user_namespace = containment.isolation["user_namespace"] = True
    containment.isolation["network"] = _network_report()
    _contain_filesystem(containment, options, expose=False)
    pid_namespace = become_pid_namespace_init()  # from here on, this process is PID 1
    containment.pid_namespace = pid_namespace is not None
    containment.isolation["pid_namespace"] = pid_namespace or "unavailable"


def _contain_filesystem(containment, options, expose):
    """The read-only view (mounts.py); as root also `expose` the interpreter to programs' uids."""
    report, containment.private_tmp, shared = mounts.contain_filesystem(
        interpreter_paths(), containment.shared_dir, options.get("tmpfs_mb", 1024),
        options.get("hidden_paths", mounts.HIDDEN_DEVICES))
    containment.isolation.update(report)
    if expose and "/tmp" in report.get("private_tmp", ()):
        containment.isolation["hidden"] = mounts.expose(interpreter_paths())
    containment.shared_fd = mounts.finish_read_only(containment.isolation, containment.private_tmp, shared)


def drop_privileges(containment):
    """In a program's child, last before its limits hold: as root become the program's uid; in a
    user namespace drop every capability; either way die with the worker."""
    if containment.uid is not None:
        os.setgroups([])
        os.setresgid(containment.uid, containment.uid, containment.uid)
        os.setresuid(containment.uid, containment.uid, containment.uid)
    if containment.user_namespace:
        drop_capabilities()
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after the uid change, which clears it


# ----------------------------------------------------------------------------------------------
# namespaces


def enter_user_namespace():
    """Unshare user, mount and network namespaces, mapping only this uid and gid to themselves.
    Returns None on success, else why not (one phrase)."""
    uid, gid = os.getuid(), os.getgid()
    if not unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET):
        return "unshare(CLONE_NEWUSER) failed: %s" % errno_text()
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", "%d %d 1" % (uid, uid)),
                           ("gid_map", "%d %d 1" % (gid, gid))):
            with open("/proc/self/" + name, "w") as handle:
                handle.write(text)
    except OSError as exc:
        return "user namespace id maps: %s" % exc
    return None


def become_pid_namespace_init():
    """Unshare a PID namespace and fork: the child returns as its PID 1 (with a /proc of its own
    where the kernel allows); the parent only waits for it and exits with its status, never
    returning. Returns a description, or None when no PID namespace could be made."""
    if not unshare(CLONE_NEWPID):
        return None
    pid = os.fork()
    if pid:
        os.closerange(0, 1 << 16)  # the child alone holds the pipes to the caller
        _, status = os.waitpid(pid, 0)
        os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
    if not mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC):
        return "own PID namespace (host /proc still mounted)"  # no outside pid can be named anyway
    return "own PID namespace and /proc"


def drop_capabilities():
    """In a program's child inside a user namespace: no capability left (so no remount, no
    unmount, no raw sockets), and no exec can grant any back."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: all empty
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset: " + errno_text())


def _network_report():
    up = _loopback_up()
    return "new namespace, loopback only" if up else "new namespace (no interfaces up)"


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


# ----------------------------------------------------------------------------------------------
# what programs must be able to read


def interpreter_paths():
    """Directories a program needs to read: the interpreter, its standard library, site-packages,
    each by its real path and by the path it is known by (a venv reached through a symlink)."""
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable)]
    paths += [p for p in sys.path if p and os.path.abspath(p) != HERE]
    return sorted({form(p) for p in paths if os.path.isdir(p) for form in (os.path.abspath, os.path.realpath)})


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
