"""The filesystem view of the worker and its programs, made in the worker's mount namespace.

Worker side: standard library only, any Python >= 3.8 (imported by plain name beside worker.py).
Everything read-only, except a private tmpfs on /tmp, /var/tmp and /dev/shm (emptied after every
program); the interpreter's own directories bound back, read-only, where a private tmpfs covers
them (a venv under /tmp stays usable); GPU device nodes and daemon sockets covered; the caller's
shared directory reachable only through a file descriptor the worker holds (writable), never by
name. contain.py decides when this applies (as root and in a user namespace alike). Also the file
operations the worker does on that view: fresh directories, removing whatever a program left.
"""
import ctypes
import glob
import os

from syscalls import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    errno_text,
    libc,
    mount,
    unmount_detached,
)

MOUNT_ATTR_RDONLY = 0x1
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
SYS_MOUNT_SETATTR = 442  # the same number on every architecture (new syscall table)
PRIVATE_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
# Accelerators programs must never reach (NVIDIA, AMD ROCm, render nodes), and the sockets of
# daemons that act for whoever connects: a read-only mount does not stop connect(), and in a user
# namespace a program keeps the user's groups (docker, ...). Sockets under /tmp are private anyway.
HIDDEN_DEVICES = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/kfd", "/dev/dri",
                  "/run/docker.sock", "/var/run/docker.sock", "/run/containerd", "/run/podman", "/run/dbus",
                  "/run/user", "/run/snapd.socket", "/run/snapd-snap.socket", "/run/systemd/private")


class PrivateTmp:
    """The private tmp dirs and, in each, the top entries that are not a program's (mount points
    of ours: the interpreter's directories bound back, the worker's own directory)."""

    def __init__(self, reserved=None):
        self.reserved = reserved or {}
        self._clean = {}  # directory -> (mtime, size) when last emptied

    def reserve(self, path):
        """Keep `path` (a top entry of a private dir) when emptying; False when it lies in none."""
        for directory, keep in self.reserved.items():
            if os.path.dirname(path) == directory:
                keep.add(os.path.basename(path))
                return True
        return False

    def empty(self):
        """Remove what the last program left (all but the reserved entries). One stat when nothing
        is left: a tmpfs directory's size grows with each entry, and a program cannot remove a
        reserved entry (each is a mount point), so an unchanged size and mtime means no new entry."""
        for directory, keep in self.reserved.items():
            try:
                info = os.stat(directory)
                if self._clean.get(directory) == (info.st_mtime_ns, info.st_size):
                    continue
                names = os.listdir(directory)
            except OSError:
                continue
            for name in names:
                if name not in keep:
                    remove_path(os.path.join(directory, name))
            try:
                info = os.stat(directory)
                self._clean[directory] = (info.st_mtime_ns, info.st_size)
            except OSError:
                pass


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def contain_filesystem(keep_visible, shared_dir, tmpfs_mb, hidden=HIDDEN_DEVICES):
    """In a fresh mount namespace: private tmpfs on PRIVATE_TMP_DIRS, `keep_visible` directories
    under them bound back, `hidden` paths covered. Returns (report dict, PrivateTmp, the shared
    directory's staging (fd, stage path) for `finish_read_only`)."""
    report = {}
    if not mount("none", "/", None, MS_REC | MS_PRIVATE):
        report["mounts"] = "mount namespace not private: %s" % errno_text()
        return report, PrivateTmp(), (None, None)
    private = [d for d in PRIVATE_TMP_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    held = {path: os.open(path, os.O_RDONLY | os.O_DIRECTORY) for path in keep_visible
            if any(under(path, d) for d in private) and os.path.isdir(path)}
    shared_fd = os.open(shared_dir, os.O_RDONLY | os.O_DIRECTORY) if shared_dir else None
    size = "size=%dm,mode=1777" % tmpfs_mb
    mounted = [d for d in private if mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, size)]
    report["private_tmp"] = mounted
    reserved = {d: set() for d in mounted}
    for path, fd in sorted(held.items()):
        os.makedirs(path, exist_ok=True)
        if mount("/proc/self/fd/%d" % fd, path, None, MS_BIND | MS_REC):
            report.setdefault("rebound", []).append(path)
            for directory in mounted:
                if under(path, directory):
                    reserved[directory].add(os.path.relpath(path, directory).split("/")[0])
        os.close(fd)
    for directory, tops in reserved.items():  # the directories made on the way: read-only too
        for top in tops:
            path = os.path.join(directory, top)
            mount(path, path, None, MS_BIND | MS_REC)
    stage = None
    if shared_fd is not None and "/tmp" in mounted:
        stage = os.path.join("/tmp", ".restrl_shared_stage")
        os.mkdir(stage, 0o700)
        if not mount("/proc/self/fd/%d" % shared_fd, stage, None, MS_BIND):
            os.rmdir(stage)
            stage = None
    if shared_fd is not None and not any(under(shared_dir, d) for d in mounted):
        mount("tmpfs", shared_dir, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0")  # no name leads in
    report["hidden_devices"] = hide_paths(hidden)
    return report, PrivateTmp(reserved), (shared_fd, stage)


def finish_read_only(report, private_tmp, shared):
    """The second half of `contain_filesystem`, after anything else the caller mounts (`expose`):
    make the whole tree read-only, then the private tmp dirs writable again; give back the shared
    directory's fd (a writable, detached view: no name leads to it)."""
    shared_fd, stage = shared
    report["read_only"] = set_read_only("/", True, recursive=True)
    for directory in private_tmp.reserved:
        set_read_only(directory, False, recursive=False)
    if stage is not None:
        set_read_only(stage, False, recursive=False)
        staged_fd = os.open(stage, os.O_RDONLY | os.O_DIRECTORY)
        unmount_detached(stage)
        os.rmdir(stage)
        os.close(shared_fd)
        shared_fd = staged_fd
    return shared_fd


def expose(paths):
    """As root, in the worker's private mount namespace: replace each directory that hides the
    interpreter from other users (typically /root, mode 0700) by an empty tmpfs holding only the
    interpreter's directories, bind-mounted back in place. The rest of that directory (keys,
    tokens, caches) is then invisible to programs. Returns the directories so covered."""
    needed = {}
    for path in paths:
        ancestor = _blocking_ancestor(path)
        if ancestor:
            top = os.path.join(ancestor, os.path.relpath(path, ancestor).split("/")[0])
            needed.setdefault(ancestor, set()).add(top)
    stage_root = make_temp_dir("restrl_expose_")
    staged = []
    for tops in needed.values():
        for top in sorted(tops):
            stage = os.path.join(stage_root, str(len(staged)))
            os.mkdir(stage)
            if mount(top, stage, None, MS_BIND | MS_REC):
                staged.append((top, stage))
    covered = [ancestor for ancestor in needed if mount("tmpfs", ancestor, "tmpfs", 0, "size=1m,mode=0755")]
    for top, stage in staged:
        os.makedirs(top, exist_ok=True)
        mount(stage, top, None, MS_BIND | MS_REC)
        unmount_detached(stage)
        os.rmdir(stage)
    os.rmdir(stage_root)
    return covered


def _blocking_ancestor(path):
    """The first directory on the way to `path` that other users cannot enter, or None."""
    current = "/"
    for part in path.strip("/").split("/"):
        current = os.path.join(current, part)
        if os.path.isdir(current) and os.stat(current).st_mode & 0o005 != 0o005:
            return current
    return None


def bind_in_place(path):
    """Make `path` a mount point of itself (it can then be neither renamed nor removed)."""
    return libc is not None and mount(path, path, None, MS_BIND)


def hide_paths(patterns):
    """Cover each existing path matching `patterns`: a device or file by /dev/null, a directory by
    an empty read-only tmpfs. Returns the paths covered."""
    covered = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            if os.path.isdir(path) and not os.path.islink(path):
                done = mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0555")
            else:
                done = mount("/dev/null", path, None, MS_BIND)
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
    return mount("none", point, None, MS_REMOUNT | MS_BIND | kept | (MS_RDONLY if read_only else 0))


def _mount_points(top):
    points = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if under(point, top):
                points.append(point)
    return points


def under(path, directory):
    """True when `path` is `directory` or lies below it (by name)."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def open_shared(shared_fd, shared_dir, path, flags, mode=0o600):
    """Open `path`: through the held descriptor when it lies in the shared directory."""
    if shared_fd is not None and shared_dir and under(path, shared_dir) and path != shared_dir:
        return os.open(os.path.relpath(path, shared_dir), flags, mode, dir_fd=shared_fd)
    return os.open(path, flags, mode)


def make_temp_dir(prefix):
    """A new directory (mode 0700) under $TMPDIR or /tmp."""
    base = os.environ.get("TMPDIR") if os.path.isdir(os.environ.get("TMPDIR", "")) else "/tmp"
    while True:
        path = os.path.join(base, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


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


def fresh_dir(path):
    """An empty directory at `path`, whatever a program left there (a file, a link, a directory)."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        remove_path(path, onerror=_force_remove)
        os.mkdir(path, 0o700)


def remove_dir(path):
    """Remove the directory `path` and whatever a program left in it (or put in its place)."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        remove_path(path, onerror=_force_remove)


def _force_remove(function, path, _exc_info):
    """shutil.rmtree's hook: a program may have taken the permissions away; give them back once."""
    try:
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(path, 0o700)
        function(path)
    except OSError:  # left for the next fresh_dir, or the worker's final rmtree
        pass
