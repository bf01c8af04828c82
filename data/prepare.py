"""Write each benchmark's default data files from its public source.

    python -m data.prepare --domain APPS            # data/APPS/data_with_test.jsonl, test_500.jsonl
    python -m data.prepare --domain BigCodeBench    # data/BigCodeBench/data.json
    python -m data.prepare --domain DS1000          # data/DS1000/data.jsonl
    python -m data.prepare --domain GSM8K           # data/GSM8K/train.jsonl, test.jsonl
    python -m data.prepare --domain all             # also HumanEval(+), MBPP(+)

Needs network access (GitHub, the Hugging Face Hub), or `--source` with the raw files already on
disk (a file, or for APPS and GSM8K the folder holding `train.jsonl` and `test.jsonl`, for GSM8K
gzipped or not). Files are written under `--directory` (default `data/<Domain>/`, relative to the
working directory), atomically, with `<file>.args.json` beside them.

APPS comes from the raw JSONL files of the Hugging Face dataset `codeparrot/apps` (its loading
script is refused by recent `datasets`). `data_with_test.jsonl` holds the train problems that have
tests; `test_500.jsonl` the 500 test problems listed in `data/apps_test_500_ids.txt`, drawn once from
the 5,000 test ids 0..4999 with `random.Random(20250826).sample` and sorted (the authors' own
selection is not public). Records are in the original project's layout: `id, prompt, code, test`
with `test` the JSON string of `{inputs, outputs, fn_name?}`, plus `solutions` and `difficulty`.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import sys
import tempfile
import urllib.request

from data.jsonl import DataError, read_json_records, write_json, write_jsonl

APPS_URL = "https://huggingface.co/datasets/codeparrot/apps/resolve/main/{split}.jsonl"
APPS_TEST_SEED = 20250826
GSM8K_URL = "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/{split}.jsonl"
APPS_TEST_IDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps_test_500_ids.txt")
# Files copied as they are published: domain -> [(url, file name under data/<Domain>/)].
AS_PUBLISHED = {
    "HumanEval": [("https://github.com/openai/human-eval/raw/master/data/HumanEval.jsonl.gz",
                   "HumanEval.jsonl.gz")],
    "HumanEvalPlus": [("https://github.com/evalplus/humanevalplus_release/releases/download/v0.1.10/"
                       "HumanEvalPlus.jsonl.gz", "HumanEvalPlus.jsonl.gz")],
    "MBPP": [("https://raw.githubusercontent.com/google-research/google-research/master/mbpp/mbpp.jsonl",
              "mbpp.jsonl"),
             ("https://raw.githubusercontent.com/google-research/google-research/master/mbpp/sanitized-mbpp.json",
              "sanitized-mbpp.json")],
    "MBPPPlus": [("https://github.com/evalplus/mbppplus_release/releases/download/v0.2.0/MbppPlus.jsonl.gz",
                  "MbppPlus.jsonl.gz")],
}
DOMAINS = ("APPS", "BigCodeBench", "DS1000", "GSM8K", *AS_PUBLISHED)


# -- conversions (pure; tested on fixtures) -------------------------------------------------------


def apps_record(raw: dict) -> dict:
    """A Hugging Face APPS row (problem_id, question, solutions, input_output, starter_code,
    difficulty) in the original project's layout."""
    solutions = raw.get("solutions") or "[]"
    return {"id": str(raw["problem_id"]), "prompt": raw["question"], "code": raw.get("starter_code") or "",
            "test": raw.get("input_output") or "",
            "solutions": json.loads(solutions) if isinstance(solutions, str) and solutions else solutions,
            "difficulty": raw.get("difficulty", "")}


def has_tests(record: dict) -> bool:
    try:
        test = json.loads(record["test"])
    except (TypeError, ValueError):
        return False
    return bool(test.get("inputs")) and len(test.get("inputs", [])) == len(test.get("outputs", []))


def apps_test_ids() -> list[str]:
    with open(APPS_TEST_IDS, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip() and not line.startswith("#")]


def draw_apps_test_ids(seed: int = APPS_TEST_SEED, population: int = 5000, size: int = 500) -> list[str]:
    """How `apps_test_500_ids.txt` was drawn (kept so the list can be checked)."""
    return [str(i) for i in sorted(random.Random(seed).sample(range(population), size))]


def bigcodebench_record(raw: dict) -> dict:
    """A Hugging Face BigCodeBench row, kept whole (the reader uses task_id, instruct_prompt,
    code_prompt, test; the rest stays for reference solutions and library lists)."""
    for name in ("task_id", "instruct_prompt", "code_prompt", "test"):
        if name not in raw:
            raise KeyError(name)
    return dict(raw)


def ds1000_record(raw: dict) -> dict:
    """An official DS-1000 row with the original project's `code` field (the starter text) added
    when it is missing."""
    from data import ds1000

    record = dict(raw)
    if not record.get("code"):
        record["code"] = ds1000.starter_text(record["prompt"])
    return record


# -- sources ---------------------------------------------------------------------------------------


def fetch(url: str, directory: str) -> str:
    """Download `url` into `directory`; one clear line when the network is not there."""
    path = os.path.join(directory, url.rsplit("/", 1)[-1])
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:
        raise DataError(url, None, f"cannot download ({exc}); pass --source with the file instead")
    return path


def read_rows(path: str) -> list[dict]:
    """Rows of a JSONL(.gz), JSON-array or parquet file."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as parquet

        return parquet.read_table(path).to_pylist()
    return [record for _, record in read_json_records(path)]


def hub_rows(dataset: str, split: str) -> list[dict]:
    try:
        import datasets

        return list(datasets.load_dataset(dataset, split=split))
    except Exception as exc:  # the Hub is unreachable, or the dataset moved
        raise DataError(dataset, None, f"cannot load from the Hub ({exc}); pass --source with the file instead")


# -- per domain ------------------------------------------------------------------------------------


def prepare_apps(source: str | None, directory: str, scratch: str) -> list[str]:
    def split_rows(split: str) -> list[dict]:
        path = os.path.join(source, f"{split}.jsonl") if source else fetch(APPS_URL.format(split=split), scratch)
        return [apps_record(row) for row in read_rows(path)]

    train = [record for record in split_rows("train") if has_tests(record)]
    wanted = set(apps_test_ids())
    test = [record for record in split_rows("test") if record["id"] in wanted]
    written = [os.path.join(directory, "data_with_test.jsonl"), os.path.join(directory, "test_500.jsonl")]
    write_jsonl(written[0], train)
    write_jsonl(written[1], sorted(test, key=lambda record: int(record["id"])))
    return written


def prepare_bigcodebench(source: str | None, directory: str, scratch: str) -> list[str]:
    rows = read_rows(source) if source else hub_rows("bigcode/bigcodebench", "v0.1.4")
    path = os.path.join(directory, "data.json")  # JSONL despite its name, as the original reads it
    write_jsonl(path, [bigcodebench_record(row) for row in rows])
    return [path]


def prepare_ds1000(source: str | None, directory: str, scratch: str) -> list[str]:
    rows = read_rows(source) if source else hub_rows("xlang-ai/DS-1000", "test")
    path = os.path.join(directory, "data.jsonl")
    write_jsonl(path, [ds1000_record(row) for row in rows])
    return [path]


def prepare_gsm8k(source: str | None, directory: str, scratch: str) -> list[str]:
    """The official train and test files, uncompressed, each checked by the GSM8K reader."""
    from data.gsm8k import GSM8K

    written = []
    for split in ("train", "test"):
        candidates = [os.path.join(source, f"{split}.jsonl{ending}") for ending in ("", ".gz")] if source else []
        origin = next((path for path in candidates if os.path.exists(path)), None)
        if source and origin is None:
            raise DataError(source, None, f"no {split}.jsonl or {split}.jsonl.gz here")
        target = os.path.join(directory, f"{split}.jsonl")
        os.makedirs(directory, exist_ok=True)
        _copy(origin or fetch(GSM8K_URL.format(split=split), scratch), target)
        GSM8K().parse(target)
        written.append(target)
    return written


def prepare_as_published(domain: str, source: str | None, directory: str, scratch: str) -> list[str]:
    written = []
    for url, name in AS_PUBLISHED[domain]:
        origin = source if source and len(AS_PUBLISHED[domain]) == 1 else fetch(url, scratch)
        target = os.path.join(directory, name)
        os.makedirs(directory, exist_ok=True)
        _copy(origin, target)
        written.append(target)
    return written


def _copy(origin: str, target: str) -> None:
    """Copy, compressing or decompressing when only one of the two names ends in .gz."""
    read = gzip.open if origin.endswith(".gz") else open
    write = gzip.open if target.endswith(".gz") else open
    with read(origin, "rb") as source, write(target + ".part", "wb") as out:
        shutil.copyfileobj(source, out)
    os.replace(target + ".part", target)


PREPARERS = {"APPS": prepare_apps, "BigCodeBench": prepare_bigcodebench, "DS1000": prepare_ds1000,
             "GSM8K": prepare_gsm8k}


def prepare(domain: str, source: str | None, directory: str | None) -> list[str]:
    directory = directory or os.path.join("data", domain)
    with tempfile.TemporaryDirectory(prefix="restrl-prepare-") as scratch:
        if domain in PREPARERS:
            written = PREPARERS[domain](source, directory, scratch)
        else:
            written = prepare_as_published(domain, source, directory, scratch)
    for path in written:
        write_json(path + ".args.json", {"domain": domain, "source": source, "directory": directory})
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domain", required=True, choices=(*DOMAINS, "all"), help="benchmark to prepare, or all")
    parser.add_argument("--source", default=None, help="raw file (or APPS folder) on disk instead of downloading")
    parser.add_argument("--directory", default=None, help="output folder (default data/<Domain>)")
    args = parser.parse_args(argv)
    domains = DOMAINS if args.domain == "all" else (args.domain,)
    if args.source and len(domains) > 1:
        parser.error("--source names one domain's files; use it with one --domain")
    try:
        for domain in domains:
            for path in prepare(domain, args.source, args.directory if len(domains) == 1 else None):
                print(path)
    except (DataError, KeyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
