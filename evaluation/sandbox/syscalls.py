"""The worker's one handle on the C library, and the Linux calls it makes through it.

Worker side: standard library only, any Python >= 3.8 (imported by plain name beside worker.py).
"""
import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MNT_DETACH = 0x2
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

try:
    libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - no libc symbols (not Linux)
    libc = None


def errno_text():
    """The last failed call's error, in words."""
    return os.strerror(ctypes.get_errno())


def prctl(option, value):
    """True when prctl(option, value) took."""
    return libc is not None and libc.prctl(option, value, 0, 0, 0) == 0


def mount(source, target, fstype, flags, data=None):
    """mount(2) with str or bytes arguments; True when it took."""
    def encode(text):
        return text.encode() if isinstance(text, str) else text
    return libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)) == 0


def unmount_detached(path):
    """umount2(path, MNT_DETACH); True when it took."""
    return libc.umount2(path.encode(), MNT_DETACH) == 0


def unshare(flags):
    """unshare(2); True when it took."""
    return libc is not None and libc.unshare(flags) == 0
