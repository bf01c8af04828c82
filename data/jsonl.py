"""JSONL reading and writing: errors name the file, line and field; appends are one flushed line;
whole-file writes are atomic; a resuming writer drops a half-written last line. One writer per output:
a stage holds `output_lock(path)` for its whole run, and readers of files keyed by id (`read_unique`)
refuse an id that appears twice."""
from __future__ import annotations

import errno
import fcntl
import gzip
import json
import os
import socket
import tempfile
import threading
import time
from typing import Any, Iterable, Iterator


class DataError(ValueError):
    """Bad input data; the message is one line: `file:line: what is wrong`."""

    def __init__(self, path: str, line: int | None, message: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.line = path, line


def _open_text(path: str):
    if str(path).endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, "r", encoding="utf-8")


def read_jsonl(path: str) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-empty line; a malformed line is a DataError."""
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, number, f"malformed JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise DataError(path, number, f"expected a JSON object, got {type(record).__name__}")
            yield number, record


class UniqueIds:
    """Where each id was first seen; `add` refuses a second sighting with one line naming both places
    (`b.jsonl:7: id 'x' appears twice (lines 3 and 7)`, or `... also at a.jsonl:3` across files)."""

    def __init__(self, key: str = "id"):
        self.key = key
        self.seen: dict[str, tuple[str, int | None]] = {}

    def add(self, record: dict, path: str, line: int | None) -> str:
        require(record, (self.key,), path, line)
        value = str(record[self.key])
        if value in self.seen:
            first_path, first_line = self.seen[value]
            where = f"lines {first_line} and {line}" if first_path == path else f"also at {first_path}:{first_line}"
            raise DataError(path, line, f"{self.key} {value!r} appears twice ({where})")
        self.seen[value] = (path, line)
        return value


def read_unique(path: str, key: str = "id", ids: UniqueIds | None = None) -> Iterator[tuple[int, dict]]:
    """`read_jsonl` for files with one line per id (completions, MCTS traces, verified records, problems):
    a second line with the same `key` is a DataError naming both lines. Pass one `ids` to several
    files to refuse an id that two of them hold."""
    ids = ids or UniqueIds(key)
    for line, record in read_jsonl(path):
        ids.add(record, path, line)
        yield line, record


def read_json_records(path: str) -> Iterator[tuple[int | None, dict]]:
    """Records from a file that is either JSONL or one JSON array (as sanitized-mbpp.json)."""
    with _open_text(path) as handle:
        head = handle.read(1)
        while head and head.isspace():
            head = handle.read(1)
    if head != "[":
        yield from read_jsonl(path)
        return
    with _open_text(path) as handle:
        try:
            records = json.load(handle)
        except json.JSONDecodeError as exc:
            raise DataError(path, exc.lineno, f"malformed JSON ({exc.msg})") from None
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(path, None, f"item {index}: expected a JSON object")
        yield None, record


def require(record: dict, fields: Iterable[str], path: str, line: int | None) -> None:
    for name in fields:
        if name not in record:
            raise DataError(path, line, f"missing field '{name}'")


def write_jsonl(path: str, records: Iterable[dict]) -> None:
    """Write the whole file atomically (temp file in the same directory, then rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str, obj: Any) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2, ensure_ascii=False, default=str)
        handle.write("\n")
    os.replace(tmp, path)


def drop_partial_line(path: str) -> int:
    """Remove an incomplete last line (left by a killed writer); returns the bytes removed."""
    if not os.path.exists(path):
        return 0
    with open(path, "rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size == 0:
            return 0
        handle.seek(max(0, size - 1))
        if handle.read(1) == b"\n":
            return 0
        # walk back to the last newline
        position = size - 1
        while position > 0:
            step = min(65536, position)
            handle.seek(position - step)
            chunk = handle.read(step)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                keep = position - step + cut + 1
                break
            position -= step
        else:
            keep = 0
        handle.truncate(keep)
        return size - keep


class JsonlAppender:
    """Append one record per line, flushed and fsync'd, so a kill loses at most the record in flight.
    Holds `output_lock(path)` while open (re-entrant: a stage that already holds it keeps it), so two
    appenders in two processes never share a file."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.lock = output_lock(path).acquire()
        try:
            drop_partial_line(path)
            self.handle = open(path, "a", encoding="utf-8")
        except BaseException:
            self.lock.release()
            raise

    def write(self, record: dict) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        if not self.handle.closed:
            self.handle.close()
            self.lock.release()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- one writer per output ----------------------------------------------------------------------------

class OutputBusy(DataError):
    """Another live run holds the output's lock."""


_HELD: dict[str, list] = {}  # lock file -> [descriptor, depth] this process holds
_HELD_GUARD = threading.Lock()
_FORK_HOOK: list[bool] = []


class OutputLock:
    """An exclusive lock on one output for a whole run: `flock` on the sibling file `<output>.lock`,
    which records the holder's pid, host and start time. A second process that asks for it fails at
    once with `OutputBusy` naming that pid; the same process may take it again (the stage, then its
    appender). The kernel drops the lock when the holder dies, however it dies, so a killed run never
    blocks the next one; its lock file stays behind and is harmless (never delete it: a process that
    opened the old file would then lock a different file than the next one).

    Not covered: flock only excludes processes that take it. On NFS it works where the client maps
    flock to NFS locks (Linux since 2.6.12, with a lock manager or NFSv4); a mount with `nolock`
    (or `local_lock=flock`) locks per machine only, so runs on two machines are not excluded.
    A filesystem that refuses locks (Lustre without `-o flock`) is an error, not a silent pass.
    Children forked (not exec'd) while it is held drop their copy, so they do not keep it alive.
    """

    def __init__(self, path: str):
        self.path = path
        self.lock_file = os.path.realpath(path + ".lock")
        self.acquired = False

    def acquire(self) -> "OutputLock":
        with _HELD_GUARD:
            held = _HELD.get(self.lock_file)
            if held is not None:
                held[1] += 1
            else:
                _HELD[self.lock_file] = [self._lock(), 1]
        self.acquired = True
        return self

    def _lock(self) -> int:
        os.makedirs(os.path.dirname(self.lock_file), exist_ok=True)
        descriptor = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)  # not truncated: the holder's record
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(descriptor)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputBusy(self.path, None, f"in use by another run ({lock_holder(self.lock_file)}); "
                                 "wait for it to finish or stop it") from None
            raise DataError(self.path, None, f"cannot lock {self.lock_file}: {exc.strerror} (a filesystem "
                            "without lock support; write the output elsewhere)") from None
        os.ftruncate(descriptor, 0)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.pwrite(descriptor, (json.dumps(record) + "\n").encode(), 0)
        if not _FORK_HOOK:
            os.register_at_fork(after_in_child=_drop_in_child)
            _FORK_HOOK.append(True)
        return descriptor

    def release(self) -> None:
        if not self.acquired:
            return
        self.acquired = False
        with _HELD_GUARD:
            held = _HELD.get(self.lock_file)
            if held is None:  # a forked child's copy, already dropped
                return
            held[1] -= 1
            if held[1] == 0:
                del _HELD[self.lock_file]
                os.close(held[0])  # the last descriptor of this open file: the kernel drops the lock

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def output_lock(path: str) -> OutputLock:
    """The lock of output `path` (`with output_lock(path): ...`): held from before a stage reads what an
    earlier run wrote until its last line is written. Raises OutputBusy (a DataError) when another
    process holds it.

    >>> import tempfile; path = tempfile.mkdtemp() + "/out.jsonl"
    >>> with output_lock(path), output_lock(path):  # the same process may take it again
    ...     lock_holder(path + ".lock").startswith(f"pid {os.getpid()} ")
    True
    """
    return OutputLock(path)


def lock_holder(lock_file: str) -> str:
    """`pid 123 on host since ...` from a lock file (the holder writes it just after locking)."""
    for _ in range(20):
        try:
            with open(lock_file, encoding="utf-8") as handle:
                record = json.loads(handle.read() or "null")
        except (OSError, ValueError):
            record = None
        if isinstance(record, dict):
            return f"pid {record.get('pid')} on {record.get('host')} since {record.get('started')}"
        time.sleep(0.05)
    return f"pid unknown: {lock_file} names no holder"


def _drop_in_child() -> None:
    """In a forked child: close its copies of the lock descriptors (the parent keeps the lock; unlocking
    here would release the parent's too)."""
    for descriptor, _ in _HELD.values():
        try:
            os.close(descriptor)
        except OSError:
            pass
    _HELD.clear()


def read_done(path: str, args: dict, result_args: Iterable[str], key: str = "id") -> dict[str, dict]:
    """The records an earlier run already wrote to `path` (resume by id, after dropping a half-written
    last line). Refuses, naming the arguments, when that run's `<path>.args.json` differs from `args`
    in any of `result_args` (the arguments that change results), and, naming both lines, a `key` that
    appears twice (two runs appended to one file). Call it holding `output_lock(path)`."""
    if not os.path.exists(path):
        return {}
    args_path = path + ".args.json"
    if os.path.exists(args_path):
        with open(args_path, encoding="utf-8") as handle:
            earlier = json.load(handle)
        changed = [name for name in result_args if _comparable(earlier.get(name)) != _comparable(args.get(name))]
        if changed:
            raise DataError(path, None, f"exists with other {', '.join(changed)}; remove it or change the output")
    drop_partial_line(path)
    return {str(record[key]): record for _, record in read_unique(path, key)}


def _comparable(value: Any) -> Any:
    """Arguments as they read back from JSON (tuples are lists there)."""
    return json.loads(json.dumps(value))
