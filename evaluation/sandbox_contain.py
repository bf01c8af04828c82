"""The sandbox worker's containment: namespaces and the filesystem view its programs get.

Imported by `sandbox_worker.py` at start-up (standard library only, any Python >= 3.8). Two ways
in, one view out:
  - as root: new network and mount namespaces (the worker then drops each program to a uid of its
    own);
  - as any other user, where the kernel allows user namespaces: a user namespace that maps only
    the user's own uid, with network, mount and PID namespaces inside it. The worker becomes PID 1
    of its PID namespace: programs cannot name (so cannot signal or trace) any process outside it,
    `kill(-1)` from the worker ends every process a program left, and when the worker dies the
    kernel ends them all. Each program drops every capability and sets no_new_privs before it runs.
Either way, `contain_filesystem` gives the worker and its programs the same view: everything
read-only, except a private tmpfs on /tmp, /var/tmp and /dev/shm (emptied after every program by the
worker); the interpreter's own directories bound back, read-only, where a private tmpfs covers them
(a venv under /tmp stays usable); GPU device nodes covered; the caller's shared directory reachable
only through a file descriptor the worker holds (writable), never by name.

Checks: `unshare -Urnm true` as the user says whether user namespaces are allowed
(/proc/sys/user/max_user_namespaces > 0; on Ubuntu >= 23.10 also the AppArmor setting
kernel.apparmor_restrict_unprivileged_userns = 0).
"""
import ctypes
import glob
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MNT_DETACH = 0x2
MOUNT_ATTR_RDONLY = 0x1
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
SYS_MOUNT_SETATTR = 442  # the same number on every architecture (new syscall table)
PR_SET_NO_NEW_PRIVS = 38
PRIVATE_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
# Accelerators programs must never reach (NVIDIA, AMD ROCm, render nodes), and the sockets of
# daemons that act for whoever connects: a read-only mount does not stop connect(), and in a user
# namespace a program keeps the user's groups (docker, ...). Sockets under /tmp are private anyway.
HIDDEN_DEVICES = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/kfd", "/dev/dri",
                  "/run/docker.sock", "/var/run/docker.sock", "/run/containerd", "/run/podman", "/run/dbus",
                  "/run/user", "/run/snapd.socket", "/run/snapd-snap.socket", "/run/systemd/private")

try:
    libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    libc = None


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _errno():
    return os.strerror(ctypes.get_errno())


def _mount(source, target, fstype, flags, data=None):
    encode = lambda text: text.encode() if isinstance(text, str) else text  # noqa: E731
    return libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)) == 0


# ----------------------------------------------------------------------------------------------
# namespaces


def enter_user_namespace():
    """Unshare user, mount and network namespaces, mapping only this uid and gid to themselves.
    Returns None on success, else why not (one phrase)."""
    if libc is None:
        return "no libc"
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET) != 0:
        return "unshare(CLONE_NEWUSER) failed: %s" % _errno()
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
    if libc.unshare(CLONE_NEWPID) != 0:
        return None
    pid = os.fork()
    if pid:
        os.closerange(0, 1 << 16)  # the child alone holds the pipes to the caller
        _, status = os.waitpid(pid, 0)
        os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
    if not _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC):
        return "own PID namespace (host /proc still mounted)"  # no outside pid can be named anyway
    return "own PID namespace and /proc"


def drop_capabilities():
    """In a program's child inside a user namespace: no capability left (so no remount, no
    unmount, no raw sockets), and no exec can grant any back."""
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: all empty
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset: " + _errno())


# ----------------------------------------------------------------------------------------------
# the filesystem view


def contain_filesystem(keep_visible, shared_dir, tmpfs_mb, hidden=HIDDEN_DEVICES):
    """In a fresh mount namespace: private tmpfs on PRIVATE_TMP_DIRS, `keep_visible` directories
    under them bound back, `hidden` paths covered, everything else read-only. Returns (report
    dict, fd of `shared_dir` or None, the top entries of the private dirs that are not a program's)."""
    report = {}
    if not _mount("none", "/", None, MS_REC | MS_PRIVATE):
        report["mounts"] = "mount namespace not private: %s" % _errno()
        return report, None, {}
    private = [d for d in PRIVATE_TMP_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    held = {path: os.open(path, os.O_RDONLY | os.O_DIRECTORY) for path in keep_visible
            if any(_under(path, d) for d in private) and os.path.isdir(path)}
    shared_fd = os.open(shared_dir, os.O_RDONLY | os.O_DIRECTORY) if shared_dir else None
    size = "size=%dm,mode=1777" % tmpfs_mb
    mounted = [d for d in private if _mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, size)]
    report["private_tmp"] = mounted
    reserved = {d: set() for d in mounted}
    for path, fd in sorted(held.items()):
        os.makedirs(path, exist_ok=True)
        if _mount("/proc/self/fd/%d" % fd, path, None, MS_BIND | MS_REC):
            report.setdefault("rebound", []).append(path)
            for directory in mounted:
                if _under(path, directory):
                    reserved[directory].add(os.path.relpath(path, directory).split("/")[0])
        os.close(fd)
    for directory, tops in reserved.items():  # the directories made on the way: read-only too
        for top in tops:
            path = os.path.join(directory, top)
            _mount(path, path, None, MS_BIND | MS_REC)
    stage = None
    if shared_fd is not None and "/tmp" in mounted:
        stage = os.path.join("/tmp", ".restrl_shared_stage")
        os.mkdir(stage, 0o700)
        if not _mount("/proc/self/fd/%d" % shared_fd, stage, None, MS_BIND):
            os.rmdir(stage)
            stage = None
    if shared_fd is not None and not any(_under(shared_dir, d) for d in mounted):
        _mount("tmpfs", shared_dir, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0")  # no name leads in
    report["hidden_devices"] = hide_paths(hidden)
    return report, (shared_fd, stage), reserved


def finish_read_only(report, shared, reserved):
    """The second half of `contain_filesystem`, after anything else the caller mounts (the root
    path's `_expose`): make the whole tree read-only, then the private tmp dirs writable again; give
    back the shared directory's fd (a writable, detached view: no name leads to it)."""
    shared_fd, stage = shared if shared else (None, None)
    report["read_only"] = set_read_only("/", True, recursive=True)
    for directory in reserved:
        set_read_only(directory, False, recursive=False)
    if stage is not None:
        set_read_only(stage, False, recursive=False)
        staged_fd = os.open(stage, os.O_RDONLY | os.O_DIRECTORY)
        libc.umount2(stage.encode(), MNT_DETACH)
        os.rmdir(stage)
        os.close(shared_fd)
        shared_fd = staged_fd
    return shared_fd


def bind_in_place(path):
    """Make `path` a mount point of itself (it can then be neither renamed nor removed)."""
    return libc is not None and _mount(path, path, None, MS_BIND)


def hide_paths(patterns):
    """Cover each existing path matching `patterns`: a device or file by /dev/null, a directory by
    an empty read-only tmpfs. Returns the paths covered."""
    covered = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            if os.path.isdir(path) and not os.path.islink(path):
                done = _mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0555")
            else:
                done = _mount("/dev/null", path, None, MS_BIND)
            if done:
                covered.append(path)
    return covered


def set_read_only(path, read_only, recursive):
    """Set or clear the read-only flag of the mount at `path` (and below it when `recursive`);
    True when it took. mount_setattr (Linux >= 5.12) changes only that flag; older kernels get a
    bind remount per mount point that keeps each mount's other flags (a user namespace may not
    clear nosuid, nodev, ...)."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY if read_only else 0, 0 if read_only else MOUNT_ATTR_RDONLY, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    if libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), flags, ctypes.byref(attr),
                    ctypes.c_size_t(ctypes.sizeof(attr))) == 0:
        return True
    points = _mount_points(path) if recursive else [path]
    return all([_remount(point, read_only) for point in points])


def _remount(point, read_only):
    try:
        kept = os.statvfs(point).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC | 0x400 | 0x800)  # noatime, nodiratime
    except OSError:
        return False
    if os.statvfs(point).f_flag & 0x1000:  # ST_RELATIME
        kept |= 1 << 21
    return _mount("none", point, None, MS_REMOUNT | MS_BIND | kept | (MS_RDONLY if read_only else 0))


def _mount_points(top):
    points = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if _under(point, top):
                points.append(point)
    return points


def _under(path, directory):
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def open_shared(shared_fd, shared_dir, path, flags, mode=0o600):
    """Open `path`: through the held descriptor when it lies in the shared directory."""
    if shared_fd is not None and shared_dir and _under(path, shared_dir) and path != shared_dir:
        return os.open(os.path.relpath(path, shared_dir), flags, mode, dir_fd=shared_fd)
    return os.open(path, flags, mode)


_clean_mtimes = {}


def remove_path(path, onerror=None):
    """Remove a file, link or directory tree; what is gone already or cannot be removed is left (onerror,
    when given, is shutil.rmtree's hook for a tree that resists)."""
    if os.path.isdir(path) and not os.path.islink(path):
        import shutil  # only once a program left a directory: the worker keeps its imports few

        shutil.rmtree(path, ignore_errors=onerror is None, onerror=onerror)
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


def empty_private_dirs(reserved):
    """Remove what the last program left in the private tmp dirs (all but `reserved` entries).
    One stat when nothing is left: a tmpfs directory's size grows with each entry, and a program
    cannot remove a reserved entry (each is a mount point), so an unchanged size and mtime means
    no new entry."""
    for directory, keep in reserved.items():
        try:
            info = os.stat(directory)
            if _clean_mtimes.get(directory) == (info.st_mtime_ns, info.st_size):
                continue
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            if name in keep:
                continue
            remove_path(os.path.join(directory, name))
        try:
            info = os.stat(directory)
            _clean_mtimes[directory] = (info.st_mtime_ns, info.st_size)
        except OSError:
            pass
