"""JSONL reading and writing: errors name the file, line and field; appends are one flushed line;
whole-file writes are atomic; a resuming writer drops a half-written last line."""
from __future__ import annotations

import gzip
import json
import os
import tempfile
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
    """Append one record per line, flushed and fsync'd, so a kill loses at most the record in flight."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        drop_partial_line(path)
        self.handle = open(path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_done(path: str, args: dict, result_args: Iterable[str], key: str = "id") -> dict[str, dict]:
    """The records an earlier run already wrote to `path` (resume by id, after dropping a half-written
    last line). Refuses, naming the arguments, when that run's `<path>.args.json` differs from `args`
    in any of `result_args` (the arguments that change results)."""
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
    return {str(record[key]): record for _, record in read_jsonl(path)}


def _comparable(value: Any) -> Any:
    """Arguments as they read back from JSON (tuples are lists there)."""
    return json.loads(json.dumps(value))
