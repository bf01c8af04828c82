"""The sandbox, one behaviour per test: statuses, limits, and hostile programs. The hostile
programs run with the guard prelude off (guard="none") so that the outer layer is what is tested.
After the whole batch nothing of ours may remain."""
from __future__ import annotations

import os
import socket
import tempfile
import threading
from pathlib import Path

import pytest

from data.records import GIB, Job, Limits
from evaluation.sandbox import Sandbox

ROOT = os.geteuid() == 0
GOOD = Job("def add(a, b):\n    return a + b\n", tests=["assert add(1, 2) == 3", "assert add(-1, 1) == 0"])
MARKER = "987.654321"  # argument of the processes a hostile program leaves behind
PROBE = f"restrl_probe_{os.getpid()}"  # a file hostile programs try to create outside their directory


def hostile(program: str, timeout: float = 3.0, **kwargs) -> Job:
    return Job(program, tests=["assert True"], timeout=timeout, guard=kwargs.pop("guard", "none"), **kwargs)


def _processes_with(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(pid))
    return found


def _processes_of_uids(uids: set[int]) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid in uids:
                found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Run every hostile program and some good ones in one sandbox; yield results by name."""
    outside = tmp_path_factory.mktemp("outside")
    victim = outside / "victim.txt"
    victim.write_text("keep me")
    os.environ["RESTRL_TEST_SECRET"] = "hunter2-secret-value"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted = []
    listener.settimeout(8)
    threading.Thread(target=lambda: accepted.append(_accept(listener)), daemon=True).start()
    port = listener.getsockname()[1]
    sandbox = Sandbox(workers=2)
    isolation = sandbox.worker_isolation()
    contained = all(_contained(report) for report in isolation)
    jobs = {
        "good_1": GOOD,
        "infinite_loop": hostile("while True:\n    pass\n", timeout=1.5),
        "sleep_forever": hostile("import time\ntime.sleep(10**6)\n", timeout=1.5),
        "memory_bomb": hostile("x = bytearray(8 * 1024**3)\n"),
        "memory_creep": hostile("chunks = []\nwhile True:\n    chunks.append(b' ' * 10**7)\n",
                                limits=Limits(memory_bytes=512 * 1024**2)),
        "raise_limits": hostile(
            "import resource\n"
            "try:\n    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n"
            "except (ValueError, OSError):\n    pass\n"
            "x = bytearray(6 * 1024**3)\n"),
        "kill_parent": hostile("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"),
        "kill_group": hostile("import os, signal\nos.killpg(0, signal.SIGKILL)\n"),
        "write_outside": hostile(f"open({str(outside / 'new.txt')!r}, 'w').write('x')\n"),
        "write_checkout": hostile(f"open({str(Path(__file__).parent / PROBE)!r}, 'w').write('x')\n"),
        "write_home": hostile(f"open({os.path.join(os.path.expanduser('~'), PROBE)!r}, 'w').write('x')\n"),
        "write_tmp": hostile(f"open('/tmp/{PROBE}', 'w').write('x')\nopen('/dev/shm/{PROBE}', 'w').write('x')\n"),
        "delete_outside": hostile(f"import os\nos.remove({str(victim)!r})\n"),
        "flood_stdout": hostile("while True:\n    print('x' * 10000)\n", timeout=20),
        "read_secret": hostile(
            "import os\nprint(dict(os.environ))\n"
            "for pid in (os.getppid(), %d):\n"
            "    try:\n        print(open('/proc/%%d/environ' %% pid).read())\n"
            "    except OSError as exc:\n        print('denied', exc)\n" % os.getpid()),
        "network": hostile(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n",
                           guard="none" if contained else "strict"),
        "exit_zero_early": Job("import os\nos._exit(0)\n", tests=["assert False"]),
        "sys_exit_early": Job("import sys\nsys.exit(0)\n", tests=["assert False"]),
        "print_success": Job("print('passed')\nprint('{\"status\": \"passed\"}')\ndef add(a, b):\n    return 0\n",
                             tests=GOOD.tests),
        "ignore_signals": hostile("import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
                                  "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass\n", timeout=1.5),
        "escape_session": hostile(f"import subprocess\nsubprocess.Popen(['sleep', '{MARKER}'], "
                                  "start_new_session=True)\n"),
        "double_fork": hostile(
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            f"        os.execvp('sleep', ['sleep', '{MARKER}'])\n    os._exit(0)\ntime.sleep(0.2)\n"),
        "good_2": GOOD,
    }
    if contained:  # with neither a uid nor a user namespace of its own a fork storm has no limit
        jobs["fork_storm"] = hostile("import os\nwhile True:\n    try:\n        os.fork()\n"
                                     "    except OSError:\n        pass\n", timeout=2)
    jobs["good_3"] = GOOD
    fds_before = len(os.listdir("/proc/self/fd"))
    temp_before = _our_temp_dirs()
    workers_before = sandbox.worker_pids()
    uids = {report.get("uid") for report in isolation}
    results = dict(zip(jobs, sandbox.run(jobs.values())))
    escaped_before_close = _processes_with(MARKER)
    workers_after = sandbox.worker_pids()
    sandbox.close()
    listener.close()
    yield {"results": results, "victim": victim, "outside": outside, "accepted": accepted,
           "fds_before": fds_before, "workers": (workers_before, workers_after), "uids": uids,
           "escaped_before_close": escaped_before_close, "shared_dir": sandbox.shared_dir,
           "temp_before": temp_before, "contained": contained, "isolation": isolation}
    del os.environ["RESTRL_TEST_SECRET"]


def _contained(isolation: dict) -> bool:
    """Root, or a user namespace of its own: the full containment (see evaluation/sandbox/contain.py)."""
    return bool(isolation.get("root")) or isolation.get("user_namespace") is True


def _our_temp_dirs() -> set[str]:
    """restrl temporary directories, except the shared directories of live sandboxes (other
    processes on this machine may run one now: their lock is held)."""
    import fcntl

    names = set()
    for name in os.listdir(tempfile.gettempdir()):
        path = os.path.join(tempfile.gettempdir(), name)
        if not name.startswith("restrl") or os.lstat(path).st_uid != os.geteuid():
            continue
        try:
            lock = os.open(os.path.join(path, ".lock"), os.O_RDWR)
        except FileNotFoundError:
            if not name.startswith("restrl_sandbox_shared_"):  # else: one being made now
                names.add(name)
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            names.add(name)
        except OSError:
            pass
        finally:
            os.close(lock)
    return names


def _accept(listener):
    try:
        return listener.accept()
    except OSError:
        return None


def status(batch, name):
    return batch["results"][name].status


def test_good_programs_pass_around_hostile_ones(batch):
    assert [status(batch, name) for name in ("good_1", "good_2", "good_3")] == ["passed"] * 3


@pytest.mark.parametrize("name", ["infinite_loop", "sleep_forever", "ignore_signals"])
def test_runaway_programs_time_out(batch, name):
    result = batch["results"][name]
    assert result.status == "timeout"
    assert result.time < 5


@pytest.mark.parametrize("name", ["memory_bomb", "memory_creep", "raise_limits"])
def test_memory_is_limited(batch, name):
    assert status(batch, name) == "memory"


def test_killing_the_parent_fails_and_the_pool_goes_on(batch):
    before, after = batch["workers"]
    if batch["contained"]:  # a uid of its own, or PID 1 of its namespace: the worker cannot be killed
        assert before == after
    else:
        assert status(batch, "kill_parent") != "passed"
    assert status(batch, "good_3") == "passed"


def test_killing_its_own_group_fails(batch):
    assert status(batch, "kill_group") == "runtime_error"


def test_files_outside_the_temp_dir_are_untouched(batch):
    assert status(batch, "write_outside") == "runtime_error"
    assert status(batch, "delete_outside") == "runtime_error"
    assert batch["victim"].read_text() == "keep me"
    assert not (batch["outside"] / "new.txt").exists()


def test_the_checkout_home_and_tmp_are_not_written(batch):
    """Contained, a program writes nowhere but its temporary directory (and a private /tmp, gone
    with it): not the project, not the user's home, not the caller's /tmp or /dev/shm."""
    if not batch["contained"]:
        pytest.skip("no containment here (see the warning line and README, 'The sandbox')")
    assert status(batch, "write_checkout") == status(batch, "write_home") == "runtime_error"
    assert status(batch, "write_tmp") == "passed"  # private: allowed, and invisible outside
    for path in (Path(__file__).parent / PROBE, Path(os.path.expanduser("~")) / PROBE, Path("/tmp") / PROBE,
                 Path("/dev/shm") / PROBE):
        assert not path.exists(), path


def test_stdout_flood_is_capped(batch):
    result = batch["results"]["flood_stdout"]
    assert result.status == "runtime_error"  # the write past the file-size limit fails
    assert len(result.stdout) < 5000


def test_environment_holds_no_secrets(batch):
    result = batch["results"]["read_secret"]
    assert "hunter2-secret-value" not in result.stdout
    assert "RESTRL_TEST_SECRET" not in result.stdout
    assert "denied" in result.stdout or not batch["contained"]


def test_network_is_cut(batch):
    assert status(batch, "network") == "runtime_error"
    assert not any(batch["accepted"])


@pytest.mark.parametrize("name", ["exit_zero_early", "sys_exit_early", "print_success"])
def test_only_the_harness_can_report_success(batch, name):
    assert status(batch, name) != "passed"
    assert batch["results"][name].status in {"failed", "runtime_error"}


def test_fork_storm_is_contained(batch):
    if not batch["contained"]:
        pytest.skip("without a uid or a user namespace of its own a fork storm has no process limit; not run")
    assert status(batch, "fork_storm") == "timeout"


def test_nothing_is_left_behind(batch):
    before, _ = batch["workers"]
    assert all(not Path(f"/proc/{pid}").exists() for pid in before)
    if batch["contained"]:  # swept after each job, not just at the end
        assert batch["escaped_before_close"] == []
    if ROOT:
        assert _processes_of_uids({uid for uid in batch["uids"] if isinstance(uid, int)}) == []
    assert _processes_with(MARKER) == []
    assert len(os.listdir("/proc/self/fd")) <= batch["fds_before"]
    assert not os.path.exists(batch["shared_dir"])
    assert _our_temp_dirs() <= batch["temp_before"]


def test_statuses_and_per_test_outcomes(sandbox):
    jobs = [
        Job("def f(x):\n    return x\n", tests=["assert f(1) == 1", "assert f(1) == 2", "f(None + 1)"]),
        Job("def f(:\n"),
        Job("x = 1", tests=["assert x == 1"], test_timeouts=0.5),
        Job("def spin():\n    while True:\n        pass\n", tests=["spin()", "assert True"], test_timeouts=0.3),
        Job("x = 1", tests=["assert y == 2"], harness=["y = 2"]),
        Job("raise ValueError('at import')", tests=["assert True"]),
    ]
    first, syntax, timed, spin, harness, crash = sandbox.run(jobs)
    assert first.status == "failed" and [t.status for t in first.tests] == ["passed", "failed", "runtime_error"]
    assert syntax.status == "syntax_error"
    assert timed.status == "passed"
    assert spin.status == "timeout" and [t.status for t in spin.tests] == ["timeout", "passed"]
    assert harness.status == "passed"
    assert crash.status == "runtime_error" and "at import" in crash.error


def test_no_state_is_shared_between_programs(sandbox):
    writer = Job("import math\nmath.pi = 3\nimport builtins\nbuiltins.LEAK = 1\nopen('f.txt', 'w').write('x')",
                 tests=["assert True"], guard="none")
    reader = Job("import math, os\nok = math.pi > 3.14 and not hasattr(__builtins__, 'LEAK')",
                 tests=["assert ok", "assert not os.path.exists('f.txt')"], guard="none", run_as_main=True)
    results = sandbox.run([writer, reader, writer, reader])
    assert [r.status for r in results] == ["passed"] * 4


def test_stdin_is_closed_or_fed(sandbox):
    closed, fed = sandbox.run([Job("x = input()", tests=["assert True"]),
                               Job("x = input()", tests=["assert x == 'hello'"], stdin="hello\n")])
    assert closed.status == "runtime_error" and "EOFError" in closed.error
    assert fed.status == "passed"


def test_main_block_runs_only_when_asked(sandbox):
    program = "ran = False\nif __name__ == '__main__':\n    ran = True\n"
    default, as_main = sandbox.run([Job(program, tests=["assert not ran"]),
                                    Job(program, tests=["assert ran"], run_as_main=True)])
    assert default.status == as_main.status == "passed"


def test_exec_python_runs_programs_with_another_interpreter(tmp_path):
    """A different interpreter (here: the system python3 outside the venv) runs the programs."""
    import shutil
    import sys

    other = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if other is None or os.path.realpath(other) == os.path.realpath(sys.executable):
        pytest.skip("no second interpreter on this machine")
    with Sandbox(workers=1, exec_python=other) as pool:
        result, = pool.run([Job("import sys\nexe = sys.executable", tests=[f"assert exe == {other!r}, exe"])])
    assert result.status == "passed", result.error


def test_limits_default_to_four_gib():
    assert Limits().memory_bytes == 4 * GIB


def test_without_privileges_the_basics_hold():
    """The laptop path (no root): no uid of its own, no namespaces; limits, timeouts, process
    groups and the end-of-run cleanup still hold."""
    with Sandbox(workers=1, no_privileges=True) as pool:
        isolation = pool.worker_isolation()[0]
        results = pool.run([GOOD, hostile("while True:\n    pass\n", timeout=1),
                            hostile("x = bytearray(8 * 1024**3)\n"),
                            hostile(f"import subprocess\nsubprocess.Popen(['sleep', '{MARKER}1'], "
                                    "start_new_session=True)\n"),
                            Job("import os\nos._exit(0)\n", tests=["assert False"])])
    assert "uid" not in isolation and "network" not in isolation
    assert [r.status for r in results] == ["passed", "timeout", "memory", "passed", "failed"]
    assert _processes_with(MARKER + "1") == []


def test_harness_can_run_the_program_itself(sandbox):
    """run_program=False: compiled (syntax errors still count) but run by the harness, here once
    per input with its own namespace."""
    harness = ("def run_with(value):\n"
               "    namespace = {'__name__': '__main__', 'VALUE': value}\n"
               "    exec(__sandbox_program__, namespace)\n"
               "    return namespace['result']\n")
    program = "result = VALUE * 2\nif __name__ == '__main__':\n    result += 1\n"
    ok, bad = sandbox.run([
        Job(program, harness=[harness], tests=["assert run_with(1) == 3", "assert run_with(5) == 11"],
            run_program=False),
        Job("result = (", harness=[harness], tests=["assert run_with(1) == 3"], run_program=False)])
    assert ok.status == "passed" and bad.status == "syntax_error"


def test_loopback_works_inside_the_namespace(sandbox):
    """A program may serve and connect on its own localhost (BigCodeBench tasks do)."""
    if "network" not in sandbox.worker_isolation()[0]:
        pytest.skip("no network namespace here (neither root nor user namespaces)")
    program = ("import socket, threading\nserver = socket.socket()\nserver.bind(('127.0.0.1', 0))\n"
               "server.listen(1)\nport = server.getsockname()[1]\n"
               "threading.Thread(target=lambda: server.accept()[0].sendall(b'hi'), daemon=True).start()\n"
               "client = socket.create_connection(('127.0.0.1', port), timeout=2)\nreply = client.recv(2)\n")
    result, = sandbox.run([Job(program, tests=["assert reply == b'hi'"], guard="none")])
    assert result.status == "passed", result.error
    assert "loopback" in sandbox.worker_isolation()[0]["network"]


def test_programs_see_no_gpu(tmp_path):
    """No benchmark's programs reach a GPU: CUDA_VISIBLE_DEVICES is empty for every job, and the
    device nodes are covered in the mount namespace (here a stand-in file plays /dev/nvidia0)."""
    import importlib.util

    # the stand-in: a stdlib file no program needs, outside every private tmp dir wherever the checkout is
    stand_in = Path(importlib.util.find_spec("this").origin).resolve()
    if str(stand_in).startswith(("/tmp/", "/var/tmp/", "/dev/shm/")):
        pytest.skip("the stdlib lives under a private tmp dir: no visible stand-in for a device node")
    with Sandbox(workers=1, hidden_paths=[str(stand_in)]) as pool:
        isolation = pool.worker_isolation()[0]
        env, device = pool.run([
            Job("import os\nvalue = os.environ.get('CUDA_VISIBLE_DEVICES')", tests=["assert value == '', value"]),
            Job(f"data = open({str(stand_in)!r}, 'rb').read()", tests=["assert data == b'', len(data)"],
                guard="none")])
    assert env.status == "passed", env.error
    if not _contained(isolation):
        pytest.skip("no mount namespace here: device nodes cannot be covered")
    assert isolation["hidden_devices"] == [str(stand_in)]
    assert device.status == "passed", device.error


def test_the_interpreters_environment_is_usable():
    """Programs import from the interpreter's own site-packages, wherever it lives: under /tmp the
    private /tmp would hide it unless bound back (run by the unprivileged slow test from a venv
    under /tmp)."""
    result, = Sandbox(workers=1).run([Job("import pluggy, sys\nprefix = sys.prefix",
                                          tests=["assert pluggy.__file__"], guard="none")])
    assert result.status == "passed", result.error


def test_a_venv_under_tmp_is_usable(tmp_path_factory):
    """--exec_python in a venv under /tmp: its site-packages stay visible to programs."""
    import subprocess
    import sys

    base = Path(tempfile.mkdtemp(prefix="restrl_venv_test_", dir="/tmp"))
    try:
        base.chmod(0o755)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(base / "venv")], check=True)
        site = next((base / "venv" / "lib").glob("python3*/site-packages"))
        (site / "restrl_venv_probe.py").write_text("VALUE = 42\n")
        (base / "checkout").mkdir()
        (base / "checkout" / ".venv").symlink_to(base / "venv")  # a clone whose .venv is a link
        for python in (base / "venv" / "bin" / "python", base / "checkout" / ".venv" / "bin" / "python"):
            with Sandbox(workers=1, exec_python=str(python)) as pool:
                result, = pool.run([Job("import restrl_venv_probe", tests=["assert restrl_venv_probe.VALUE == 42"])])
                isolation = pool.worker_isolation()[0]
            assert result.status == "passed", (python, result.error, isolation)
    finally:
        import shutil
        shutil.rmtree(base, ignore_errors=True)


def test_private_tmp_is_emptied_between_programs():
    writer = Job("open('/tmp/carry', 'w').write('x')\nopen('/dev/shm/carry', 'w').write('x')",
                 tests=["assert True"], guard="none")
    reader = Job("import os\nleft = [p for p in ('/tmp/carry', '/dev/shm/carry') if os.path.exists(p)]",
                 tests=["assert left == [], left"], guard="none")
    # A program that wrecks its worker's directories (its own uid owns them in a user namespace).
    wrecker = Job("import os, shutil\nbase = os.path.dirname(os.getcwd())\n"
                  "for action in (lambda: shutil.rmtree(base + '/out'), lambda: open(base + '/out', 'w'),\n"
                  "               lambda: os.rename(base, base + 'x'), lambda: os.symlink('/', base + '/work2')):\n"
                  "    try:\n        action()\n    except OSError:\n        pass\n",
                  tests=["assert True"], guard="none")
    with Sandbox(workers=1) as pool:
        if not _contained(pool.worker_isolation()[0]):
            pytest.skip("no private /tmp here")
        results = pool.run([writer, reader, writer, reader, wrecker, GOOD, reader])
    assert [r.status for r in results] == ["passed"] * 7, [r.error for r in results]


def test_a_killed_callers_shared_dir_is_removed_by_the_next_sandbox(tmp_path):
    """SIGKILL leaves the shared directory behind (nothing runs in the dead process); its lock
    dies with it, so the next sandbox removes it."""
    import signal
    import subprocess
    import sys

    from evaluation.sandbox.host import make_shared_dir

    code = ("import sys, time\nfrom evaluation.sandbox import Sandbox\n"
            "s = Sandbox(workers=1)\nprint(s.shared_dir, flush=True)\ntime.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    left = child.stdout.readline().strip()
    alive_dir, lock = make_shared_dir()
    assert os.path.isdir(left) and os.path.isdir(alive_dir)  # a live sandbox's dir is kept
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert os.path.isdir(left)
    with Sandbox(workers=1) as pool:
        assert not os.path.exists(left)
        assert os.path.isdir(pool.shared_dir) and os.path.isdir(alive_dir)
    os.close(lock)
    import shutil
    shutil.rmtree(alive_dir)


def test_workers_default_to_the_cpus_this_process_may_use(tmp_path):
    """Affinity and cgroup quotas (v2 cpu.max on the cgroup or a parent, v1 cfs quota), not the
    machine's count."""
    from evaluation.sandbox import available_cpus

    affinity = len(os.sched_getaffinity(0))
    proc, v2 = tmp_path / "proc", tmp_path / "cg2"
    proc.mkdir()
    (proc / "cgroup").write_text("0::/job/step\n")
    (v2 / "job" / "step").mkdir(parents=True)
    (v2 / "job" / "step" / "cpu.max").write_text("max 100000\n")
    assert available_cpus(str(proc), str(v2)) == affinity
    (v2 / "job" / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs on the parent: 2 workers
    assert available_cpus(str(proc), str(v2)) == min(affinity, 2)
    (v2 / "job" / "step" / "cpu.max").write_text("50000 100000\n")
    assert available_cpus(str(proc), str(v2)) == 1
    v1 = tmp_path / "cg1"
    (v1 / "cpu,cpuacct" / "slurm").mkdir(parents=True)
    (proc / "cgroup").write_text("4:cpu,cpuacct:/slurm\n3:memory:/slurm\n")
    (v1 / "cpu,cpuacct" / "slurm" / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu,cpuacct" / "slurm" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(str(proc), str(v1)) == 1
    (v1 / "cpu,cpuacct" / "slurm" / "cpu.cfs_quota_us").write_text("-1\n")
    assert available_cpus(str(proc), str(v1)) == affinity
    mask = os.sched_getaffinity(0)
    if len(mask) > 1:  # the default, with this process pinned to one CPU of several
        os.sched_setaffinity(0, {min(mask)})
        try:
            with Sandbox() as pool:
                assert pool.workers == 1
        finally:
            os.sched_setaffinity(0, mask)


def test_what_protection_is_missing():
    from evaluation.sandbox import missing_protection

    assert missing_protection({"root": True, "read_only": True}) is None
    assert missing_protection({"root": False, "user_namespace": True, "read_only": True}) is None
    assert "read-only" in missing_protection({"root": False, "user_namespace": True})  # mounts failed
    line = missing_protection({"root": False, "user_namespace": "unavailable: unshare(CLONE_NEWUSER) failed"})
    assert "user namespaces unavailable (unshare(CLONE_NEWUSER) failed)" in line and "README" in line


def test_missing_protection_is_one_warning_line(caplog):
    from evaluation.sandbox import pool

    pool._warned.clear()  # once per process: an earlier test may have printed it
    with caplog.at_level("WARNING", logger="evaluation.sandbox.pool"):
        with Sandbox(workers=2, no_privileges=True) as pool:
            pool.run([GOOD, GOOD])
    lines = [record.getMessage() for record in caplog.records if "user namespaces unavailable" in record.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and "write wherever" in lines[0]


@pytest.mark.slow
def test_hostile_suite_as_an_unprivileged_user():
    """The whole suite above as uid 65534 (setpriv), from a checkout copy and a venv under /tmp:
    user namespaces give the same containment as root."""
    from tests import unprivileged

    reason = unprivileged.why_not_possible()
    if reason:
        pytest.skip(reason)
    process = unprivileged.run(["-q", "tests/test_sandbox.py", "-m", "not slow", "-rs"])
    tail = process.stdout[-4000:] + process.stderr[-2000:]
    assert process.returncode == 0, tail
    assert "no containment here" not in process.stdout and "no mount namespace" not in process.stdout, tail
    assert " passed" in process.stdout.splitlines()[-1], tail
