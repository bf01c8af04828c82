"""Join the shards of a sampling, tree-search or evaluation run into the one file the next stage reads.

Reads   <name>.shard-<i>-of-<N>.jsonl for every i (and their .args.json).
Writes  <name>.jsonl, one line per problem id in data-file order, and <name>.jsonl.args.json
        (the shards' arguments, as one unsharded run's). Refuses when a shard is missing, when the shards ran
        with different arguments, when two shards hold the same id (naming both files and lines), or when
        a run still holds a shard or the merged file (its lock).

    python -m experiment.merge_shards generate/Common/TinyCode/tiny-coder/temp_0.7_tokens_256_completions.jsonl \
        --num_shards 2
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import ExitStack

from data.jsonl import DataError, UniqueIds, drop_partial_line, output_lock, read_unique, write_json, write_jsonl
from data.registry import get_benchmark
from experiment import paths


def read_shard_args(path: str) -> dict:
    args_path = path + ".args.json"
    if not os.path.exists(args_path):
        raise DataError(args_path, None, "missing: not a shard written by a stage")
    with open(args_path, encoding="utf-8") as handle:
        return json.load(handle)


def merge(path: str, num_shards: int) -> tuple[int, str]:
    shards = [paths.shard_path(path, shard_id, num_shards) for shard_id in range(num_shards)]
    missing = [shard for shard in shards if not os.path.exists(shard)]
    if missing:
        raise DataError(missing[0], None, f"shard missing ({len(missing)} of {num_shards} absent)")
    arguments = [read_shard_args(shard) for shard in shards]
    common = {key: value for key, value in arguments[0].items() if key != "shard_id"}
    for shard, args in zip(shards, arguments):
        differing = sorted(key for key in set(common) | set(args) - {"shard_id"}
                           if args.get(key) != common.get(key))
        if differing:
            raise DataError(shard + ".args.json", None, f"ran with other {', '.join(differing)} than shard 0")
    with ExitStack() as locks:  # no shard still being written, no other run on the merged file
        for locked in (path, *shards):
            locks.enter_context(output_lock(locked))
        records = read_shards(shards)
        write_merged(path, records, common, num_shards)
    return len(records), path


def read_shards(shards: list[str]) -> list[dict]:
    """Every shard's records; an id in two shards (or twice in one) is a DataError naming both files and lines."""
    ids, records = UniqueIds(), []
    for shard in shards:
        drop_partial_line(shard)
        records += [record for _, record in read_unique(shard, ids=ids)]
    return records


def write_merged(path: str, records: list[dict], common: dict, num_shards: int) -> None:
    problems = get_benchmark(common["domain"]).load(common.get("directory"), common.get("file"))
    position = {problem.id: index for index, problem in enumerate(problems)}
    ordered = sorted(records, key=lambda record: position.get(str(record["id"]), len(position)))
    write_jsonl(path, ordered)
    # the merged file is what one unsharded run writes: it resumes as one
    write_json(path + ".args.json", {**common, "num_shards": 1, "shard_id": 0, "merged_from_shards": num_shards})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help="the unsharded output path (without .shard-i-of-N)")
    parser.add_argument("--num_shards", type=int, required=True, help="how many shards the run had")
    args = parser.parse_args(argv)
    try:
        count, path = merge(args.output, args.num_shards)
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{count} problems -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
