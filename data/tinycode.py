"""TinyCode: small Python function-writing problems, generated here, for CPU-scale runs.

    python -m data.tinycode [--seed 0] [--n_train 2000] [--n_test 200] [--directory data/TinyCode] \
        [--split_fraction 0.45]

writes `train.jsonl` and `test.jsonl` (atomically, with `<file>.args.json` beside them); the same
seed gives byte-identical files. `generate(seed, n_train, n_test)` returns the records to code.
The test split is a prefix of any longer one (`--n_test 2400` begins with the 200 of `--n_test
200`), and the train split does not depend on `n_test`, so more test-distribution problems never
change what the tiny policy was trained on.

`--split_fraction F` also writes the test split again as two files that share no composition
(template: source, step kinds in order, reducer): `rl.jsonl` holds the problems of a seeded
fraction F of the templates, `eval.jsonl` the others. Experiments train on the first (problems
from the distribution the tiny policy was *not* fine-tuned on) and evaluate on the second.

The tasks
    Every task is a pipeline of building blocks, described one sentence per block:

        Write a Python function `largest_gt_mul(xs)`. Go through the numbers in the list xs.
        Keep those greater than 7. Multiply each by 3. Return the largest, or None if there are none.

    a source (a list xs, the numbers 1..n, the digits of n), one to three steps in train and one to
    four in test (filters such as "keep those divisible by {a}", maps such as "add {a} to each", in
    any order) and a reducer (sum, count, list, largest, smallest, first, last). The reference
    solution is one loop in which each step is a line (a filter opens an `if`, a map rebinds x),
    5 to 10 lines in all. The prompt's
    vocabulary is small and regular; the meaning lies in which blocks come in which order.

Why it is hard in the right way
    A 1.7M-parameter model learns fixed templates to 0.98 on held-out parameter values in four CPU
    minutes, as we measured on this project's CPU machine, so difficulty must come from the task
    design:
      - held-out compositions: a seeded set of 18 block pairs (for seed 0 e.g. source "digits"
        with reducer "first", map "abs" with filter "div") never occur together in the train split;
        every test task contains at least one, the pairs taking turns. Each block is common in
        train, so a test task can be solved by recombining what was seen, but only if the model
        has learnt the blocks separately;
      - held-out lengths: three test tasks in ten have four steps, which no train task has
        (programs one step deeper than any seen, as in SCAN's length split);
      - held-out parameter values: a seeded fifth of each parameter range appears in test only;
      - order and nesting matter (mapping then filtering is not filtering then mapping, each filter
        indents what follows), and programs run to several lines;
      - the asserts are chosen to tell the reference apart from its near misses: a dropped step,
        two steps swapped, a parameter off by one (`>` for `>=`), another reducer, `range(n)` for
        1..n, 0 instead of None when nothing is left (so the empty list and "none pass" cases are
        always tested, with negatives and ties where the near misses need them).
    A task is rejected when a step is redundant (dropping it changes no output) or its outputs
    hardly vary, so every block of every task matters.

The benchmark
    `TinyCode` reads `data/TinyCode/test.jsonl` (default) or `--file train.jsonl`. The reward is the
    fraction of asserts passed (`binary = False`), as for the paper's APPS and BigCodeBench: a
    program that forgets the empty case or misreads one threshold still earns part of the reward,
    which gives GRPO a gradient between "nothing works" and "all works"; pass@1 still counts only
    programs that pass every assert (status "passed").
"""
from __future__ import annotations

import argparse
import itertools
import os
import random
import sys
from dataclasses import dataclass, replace
from typing import NamedTuple

from data.benchmark import Benchmark
from data.jsonl import DataError, read_jsonl, require, write_json, write_jsonl
from data.records import Job, Problem

# -- building blocks ------------------------------------------------------------------------------


class Source(NamedTuple):
    argument: str  # the function's parameter
    sentence: str
    loop: tuple[str, ...]  # the loop header, then lines at loop-body depth


class Filter(NamedTuple):
    sentence: str  # "{a}" stands for the parameter
    condition: str


class Map(NamedTuple):
    sentence: str
    value: str  # the new value of x


class Reducer(NamedTuple):
    name_part: str  # the function name's first word
    sentence: str
    init: str | None  # the line before the loop (None: none)
    update: tuple[str, ...]  # lines for each kept x
    final: str  # the line after the loop


class Step(NamedTuple):
    kind: str  # a key of FILTERS or MAPS
    param: int | None  # its parameter, None when it takes none (or is not drawn yet)


class StepCount(NamedTuple):
    count: int  # steps per task
    train_weight: int  # its weight when drawing a train task (0: never)
    test_weight: int


SOURCES = {
    "list": Source("xs", "Go through the numbers in the list xs.", ("for x in xs:",)),
    "range": Source("n", "Go through the numbers from 1 to n.", ("for x in range(1, n + 1):",)),
    "digits": Source("n", "Go through the digits of n (n is not negative).", ("for c in str(n):", "x = int(c)")),
}
# Near misses only: never a task's source, used to pick asserts that catch them.
MISS_SOURCES = {"range0": Source("n", "", ("for x in range(n):",)),
                "range1": Source("n", "", ("for x in range(1, n):",))}
NAME_PART = {"list": "", "range": "upto", "digits": "digit"}

FILTERS = {
    "gt": Filter("Keep those greater than {a}.", "x > {a}"),
    "lt": Filter("Keep those less than {a}.", "x < {a}"),
    "even": Filter("Keep the even ones.", "x % 2 == 0"),
    "odd": Filter("Keep the odd ones.", "x % 2 == 1"),
    "div": Filter("Keep those divisible by {a}.", "x % {a} == 0"),
    "ne": Filter("Skip those equal to {a}.", "x != {a}"),
    "pos": Filter("Keep the positive ones.", "x > 0"),
    "neg": Filter("Keep the negative ones.", "x < 0"),
}
MAPS = {
    "mul": Map("Multiply each by {a}.", "x * {a}"),
    "add": Map("Add {a} to each.", "x + {a}"),
    "sub": Map("Subtract {a} from each.", "x - {a}"),
    "sq": Map("Square each.", "x * x"),
    "abs": Map("Replace each by its absolute value.", "abs(x)"),
    "mod": Map("Replace each by its remainder modulo {a}.", "x % {a}"),
    "negate": Map("Negate each.", "-x"),
}
REDUCERS = {
    "sum": Reducer("sum", "Return their sum.", "total = 0", ("total += x",), "return total"),
    "count": Reducer("count", "Return how many there are.", "count = 0", ("count += 1",), "return count"),
    "list": Reducer("collect", "Return them as a list.", "result = []", ("result.append(x)",), "return result"),
    "max": Reducer("largest", "Return the largest, or None if there are none.", "best = None",
                   ("if best is None or x > best:", "    best = x"), "return best"),
    "min": Reducer("smallest", "Return the smallest, or None if there are none.", "best = None",
                   ("if best is None or x < best:", "    best = x"), "return best"),
    "first": Reducer("first", "Return the first, or None if there are none.", None, ("return x",), "return None"),
    "last": Reducer("last", "Return the last, or None if there are none.", "last = None", ("last = x",),
                    "return last"),
}
# Near misses of the None cases: the classic bugs a model makes when it forgets them.
MISS_REDUCERS = {
    "max0": Reducer("", "", "best = 0", ("if x > best:", "    best = x"), "return best"),
    "min0": Reducer("", "", "best = 0", ("if x < best:", "    best = x"), "return best"),
    "first0": Reducer("", "", None, ("return x",), "return 0"),
    "last0": Reducer("", "", "last = 0", ("last = x",), "return last"),
}
# parameter ranges; a seeded fifth of each is held out of the train split
PARAM_RANGES = {"gt": (-5, 25), "lt": (-5, 25), "ne": (-5, 25), "div": (2, 9), "mod": (2, 9), "mul": (2, 9),
                "add": (1, 20), "sub": (1, 20)}
HELD_OUT_VALUE_FRACTION = 0.2
# held-out block pairs per kind of pair: what the test split recombines
HELD_OUT_PAIRS = {("source", "reducer"): 3, ("source", "step"): 4, ("step", "reducer"): 6, ("step", "step"): 5}
# steps per task and how often each count is drawn; train never has four steps
STEP_COUNTS = (StepCount(1, 3, 1), StepCount(2, 5, 3), StepCount(3, 4, 3), StepCount(4, 0, 9))
MAX_LINES = 10
MIN_ASSERTS, MAX_ASSERTS = 6, 9
TRIES = 8  # parameter draws per structure, and test structures per held-out pair and turn


@dataclass(frozen=True)
class Composition:
    source: str
    steps: tuple[Step, ...]
    reducer: str

    @property
    def template(self) -> str:
        return f"{self.source}|{'>'.join(kind for kind, _ in self.steps)}|{self.reducer}"

    @property
    def blocks(self) -> list[str]:
        return [f"source:{self.source}"] + [f"step:{kind}" for kind, _ in self.steps] + [f"reducer:{self.reducer}"]

    @property
    def name(self) -> str:
        parts = [REDUCERS[self.reducer].name_part, NAME_PART[self.source]] + [kind for kind, _ in self.steps]
        return "_".join(part for part in parts if part)

    @property
    def argument(self) -> str:
        return {**SOURCES, **MISS_SOURCES}[self.source].argument


def block_pairs(blocks: list[str]) -> list[tuple[str, str]]:
    """The unordered pairs of distinct blocks that occur together in one task."""
    return sorted({tuple(sorted(pair)) for pair in itertools.combinations(blocks, 2) if pair[0] != pair[1]})


# -- text and code --------------------------------------------------------------------------------


def _fill(text: str, param: int | None) -> str:
    return text.replace("{a}", str(param)) if param is not None else text


def prompt(comp: Composition) -> str:
    sentences = [f"Write a Python function `{comp.name}({comp.argument})`.", SOURCES[comp.source].sentence]
    for kind, param in comp.steps:
        sentences.append(_fill((FILTERS.get(kind) or MAPS[kind]).sentence, param))
    sentences.append(REDUCERS[comp.reducer].sentence)
    return " ".join(sentences)


def signature(comp: Composition, name: str | None = None) -> str:
    return f"def {name or comp.name}({comp.argument}):"


def program(comp: Composition, name: str | None = None) -> str:
    """The reference solution: one loop, one line per step, filters nesting what follows.
    `name` replaces the function's own (a near miss called by its reference's asserts)."""
    reducer = {**REDUCERS, **MISS_REDUCERS}[comp.reducer]
    header, *body = {**SOURCES, **MISS_SOURCES}[comp.source].loop
    lines = [signature(comp, name)] + ([f"    {reducer.init}"] if reducer.init else []) + [f"    {header}"]
    lines += [f"        {line}" for line in body]
    indent = "        "
    for kind, param in comp.steps:
        if kind in FILTERS:
            lines.append(f"{indent}if {_fill(FILTERS[kind].condition, param)}:")
            indent += "    "
        else:
            lines.append(f"{indent}x = {_fill(MAPS[kind].value, param)}")
    lines += [indent + line for line in reducer.update]
    lines.append(f"    {reducer.final}")
    return "\n".join(lines) + "\n"


def _function(comp: Composition):
    # Our own generated code, trusted: run in-process to compute expected outputs quickly.
    namespace: dict = {}
    exec(program(comp, "f"), namespace)
    return namespace["f"]


# -- near misses and test inputs ------------------------------------------------------------------


def near_misses(comp: Composition) -> list[Composition]:
    """Programs a model plausibly writes instead: the asserts must tell each from the reference."""
    steps, misses = comp.steps, []
    for index in range(len(steps)):
        misses.append(replace(comp, steps=steps[:index] + steps[index + 1:]))
        kind, param = steps[index]
        if param is not None:
            for delta in (-1, 1):
                misses.append(replace(comp, steps=steps[:index] + (Step(kind, param + delta),) + steps[index + 1:]))
        swapped = {"gt": "lt", "lt": "gt", "even": "odd", "odd": "even", "pos": "neg", "neg": "pos"}.get(kind)
        if swapped:
            misses.append(replace(comp, steps=steps[:index] + (Step(swapped, param),) + steps[index + 1:]))
    for index in range(len(steps) - 1):
        # two filters commute, so swapping them is no miss
        if steps[index].kind not in FILTERS or steps[index + 1].kind not in FILTERS:
            order = steps[:index] + (steps[index + 1], steps[index]) + steps[index + 2:]
            misses.append(replace(comp, steps=order))
    misses += [replace(comp, reducer=reducer) for reducer in REDUCERS if reducer != comp.reducer]
    if f"{comp.reducer}0" in MISS_REDUCERS:
        misses.append(replace(comp, reducer=f"{comp.reducer}0"))
    if comp.source == "range":
        misses += [replace(comp, source=source) for source in MISS_SOURCES]
    return misses


def input_pool(comp: Composition, rng: random.Random) -> list:
    """Candidate inputs, edge cases first: the empty list or n = 0, values around each parameter,
    negatives, repeated values (ties), then random ones."""
    if comp.source == "range":
        return list(range(0, 13)) + [15, 18, 21, 25]
    if comp.source == "digits":
        fixed = [0, 7, 10, 305, 2468, 13579, 9090, 4444]
        return fixed + [rng.randint(1, 10 ** rng.randint(1, 6)) for _ in range(16)]
    pool: list = [[], [0], [-4, -1, 0, 3, 8], [5, 5, 2, 5], [-7, -7, -2], [12, 3, 12, -6, 0]]
    params = [param for _, param in comp.steps if param is not None]
    for param in params:
        around = [param - 1, param, param + 1, -param, 2 * param]
        pool.append(rng.sample(around, 4))
        pool.append(sorted(around + [rng.randint(-10, 30)], reverse=True))
    while len(pool) < 30:
        values = [rng.randint(-10, 30) for _ in range(rng.randint(1, 7))]
        if rng.random() < 0.3:  # a tie
            values.append(rng.choice(values))
        pool.append(values)
    return pool


def _outputs(function, inputs: list) -> list:
    results = []
    for value in inputs:
        try:
            results.append(repr(function(list(value) if isinstance(value, list) else value)))
        except Exception as exc:  # should a near miss crash, that is an outcome of its own
            results.append(f"error {type(exc).__name__}")
    return results


def choose_tests(comp: Composition, rng: random.Random) -> list[str] | None:
    """Asserts that catch every near miss, or None when the task is degenerate (a redundant step,
    a near miss no input tells apart, outputs that hardly vary)."""
    pool = input_pool(comp, rng)
    expected = _outputs(_function(comp), pool)
    if len(set(expected)) < 4 or any(out.startswith("error") for out in expected):
        return None
    caught_by = []  # for each near miss: the pool indices whose output differs
    for miss in near_misses(comp):
        differs = {i for i, out in enumerate(_outputs(_function(miss), pool)) if out != expected[i]}
        if not differs:
            return None
        caught_by.append(differs)
    # the edge cases (empty list or n = 0; a list with negatives), then a greedy cover of the misses
    chosen = [0, 2] if comp.source == "list" else [0]
    uncaught = [differs for differs in caught_by if not differs.intersection(chosen)]
    while uncaught:
        best = max(range(len(pool)), key=lambda i: (sum(i in differs for differs in uncaught), -i))
        chosen.append(best)
        uncaught = [differs for differs in uncaught if best not in differs]
    rest = [i for i in range(len(pool)) if i not in chosen]
    rng.shuffle(rest)
    chosen += rest[:max(0, MIN_ASSERTS - len(chosen))]
    if len(chosen) > MAX_ASSERTS:
        return None
    return [f"assert {comp.name}({pool[i]!r}) == {expected[i]}" for i in sorted(chosen)]


# -- sampling the splits --------------------------------------------------------------------------


def held_out(seed: int) -> tuple[dict[str, list[int]], list[tuple[str, str]]]:
    """The parameter values and block pairs that the train split of `seed` never uses."""
    values, pairs = _held_out(random.Random(seed))
    return values, sorted(pairs)


def _held_out(rng: random.Random) -> tuple[dict[str, list[int]], set[tuple[str, str]]]:
    return held_out_values(rng), set(held_out_pairs(rng))


def held_out_values(rng: random.Random) -> dict[str, list[int]]:
    held = {}
    for kind, (low, high) in PARAM_RANGES.items():
        values = list(range(low, high + 1))
        held[kind] = sorted(rng.sample(values, max(1, round(HELD_OUT_VALUE_FRACTION * len(values)))))
    return held


def held_out_pairs(rng: random.Random) -> list[tuple[str, str]]:
    blocks = {"source": [f"source:{s}" for s in SOURCES], "reducer": [f"reducer:{r}" for r in REDUCERS],
              "step": [f"step:{k}" for k in [*FILTERS, *MAPS]]}
    held: list[tuple[str, str]] = []
    for (left, right), count in HELD_OUT_PAIRS.items():
        candidates = sorted({tuple(sorted(pair)) for pair in itertools.product(blocks[left], blocks[right])
                             if pair[0] != pair[1]})
        held += rng.sample(candidates, count)
    return sorted(held)


def random_structure(rng: random.Random, split: str = "train") -> Composition:
    """A composition with its parameters still unset (None)."""
    source = rng.choice(list(SOURCES))
    weights = [steps.train_weight if split == "train" else steps.test_weight for steps in STEP_COUNTS]
    count = rng.choices([steps.count for steps in STEP_COUNTS], weights)[0]
    kinds = [rng.choice([*FILTERS, *MAPS]) for _ in range(count)]
    return Composition(source, tuple(Step(kind, None) for kind in kinds), rng.choice(list(REDUCERS)))


def with_parameters(structure: Composition, rng: random.Random, excluded: dict[str, list[int]]) -> Composition:
    steps = []
    for kind, _ in structure.steps:
        param = None
        if kind in PARAM_RANGES:
            low, high = PARAM_RANGES[kind]
            param = rng.choice([v for v in range(low, high + 1) if v not in excluded.get(kind, ())])
        steps.append(Step(kind, param))
    return replace(structure, steps=tuple(steps))


def _task(structure: Composition, rng: random.Random, excluded: dict[str, list[int]]):
    """(composition, asserts) for a structure, or None when no parameter draw makes a good task:
    parameters are drawn again rather than the structure, so that structures whose good
    parameters are rarer (thresholds on 1..n) keep their share."""
    for _ in range(TRIES):
        comp = with_parameters(structure, rng, excluded)
        tests = choose_tests(comp, rng)
        if tests is not None:
            return comp, tests
        if all(kind not in PARAM_RANGES for kind, _ in structure.steps):
            break  # nothing to draw again (the input pool changes, but rarely the verdict)
    return None


def containing(pair: tuple[str, str], rng: random.Random) -> Composition:
    """A random structure with both blocks of `pair` in it (steps at random places)."""
    structure = random_structure(rng, "test")
    source, kinds, reducer = structure.source, [kind for kind, _ in structure.steps], structure.reducer
    forced = []
    for block in pair:
        role, value = block.split(":")
        if role == "source":
            source = value
        elif role == "reducer":
            reducer = value
        else:
            forced.append(value)
    while len(kinds) < len(forced):
        kinds.append(rng.choice([*FILTERS, *MAPS]))
    for place, kind in zip(rng.sample(range(len(kinds)), len(forced)), forced):
        kinds[place] = kind
    return Composition(source, tuple(Step(kind, None) for kind in kinds), reducer)


def _sample(rng, count, split, draws, excluded, held_pairs, seen) -> list[dict]:
    """`count` tasks from the structures `draws` yields (it is told how many tasks there are so
    far); a train task holds no held-out pair, a test task at least one."""
    records: list[dict] = []
    for structure in draws(records):
        if len(records) == count:
            break
        pairs = [pair for pair in block_pairs(structure.blocks) if pair in held_pairs]
        kinds = [kind for kind, _ in structure.steps]
        if bool(pairs) != (split == "test") or any(a == b for a, b in zip(kinds, kinds[1:])):
            continue  # the same kind twice in a row reads as one step done twice
        if len(program(structure).splitlines()) > MAX_LINES:
            continue
        task = _task(structure, rng, excluded)
        if task is None or prompt(task[0]) in seen:
            continue
        seen.add(prompt(task[0]))
        records.append(_record(task[0], task[1], f"TinyCode/{split}/{len(records)}", pairs))
    return records


def _train_draws(rng):
    def draws(records):
        while True:
            yield random_structure(rng)
    return draws


def _test_draws(rng, held_pairs):
    """Each held-out pair in turn, a few structures for each, so that the pairs share the test
    split about evenly (a pair that few good tasks hold, such as `range` with `neg`, gets few)."""
    order = sorted(held_pairs)

    def draws(records):
        for turn in itertools.count():
            pair = order[turn % len(order)]
            goal = len(records) + 1
            for _ in range(TRIES):
                if len(records) >= goal:
                    break
                yield containing(pair, rng)
    return draws


def _record(comp: Composition, tests: list[str], task_id: str, pairs: list) -> dict:
    return {"task_id": task_id, "prompt": prompt(comp), "entry_point": comp.name, "signature": signature(comp),
            "solution": program(comp), "tests": tests, "template": comp.template,
            "program": {"source": comp.source, "steps": [list(step) for step in comp.steps],
                        "reducer": comp.reducer},
            "held_out_pairs": [list(pair) for pair in pairs]}


def generate(seed: int = 0, n_train: int = 2000, n_test: int = 200) -> tuple[list[dict], list[dict]]:
    """(train records, test records): test tasks each hold a block pair absent from train, and
    may use parameter values train never does."""
    rng = random.Random(seed)
    values, pairs = _held_out(rng)
    seen: set[str] = set()
    train = _sample(rng, n_train, "train", _train_draws(rng), values, pairs, seen)
    test = _sample(rng, n_test, "test", _test_draws(rng, pairs), {}, pairs, seen)
    return train, test


def split_by_template(records: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(records of a seeded `fraction` of the templates, records of the others), each in its input
    order: no template, hence no composition of blocks, is on both sides.

    >>> rows = [{"template": t} for t in "aabbc"]
    >>> first, second = split_by_template(rows, 0.5, 0)
    >>> sorted({r["template"] for r in first} & {r["template"] for r in second})
    []
    """
    templates = sorted({record["template"] for record in records})
    random.Random(f"split-{seed}").shuffle(templates)
    chosen = set(templates[:round(fraction * len(templates))])
    return ([record for record in records if record["template"] in chosen],
            [record for record in records if record["template"] not in chosen])


def write(directory: str, seed: int = 0, n_train: int = 2000, n_test: int = 200,
          split_fraction: float | None = None) -> tuple[str, str]:
    train, test = generate(seed, n_train, n_test)
    args = {"seed": seed, "n_train": n_train, "n_test": n_test, "generator": "data.tinycode"}
    outputs = [("train.jsonl", train), ("test.jsonl", test)]
    if split_fraction is not None:
        args["split_fraction"] = split_fraction
        outputs += zip(("rl.jsonl", "eval.jsonl"), split_by_template(test, split_fraction, seed))
    paths = []
    for name, records in outputs:
        path = os.path.join(directory, name)
        write_jsonl(path, records)
        write_json(path + ".args.json", args)
        paths.append(path)
    return paths[0], paths[1]


# -- the benchmark --------------------------------------------------------------------------------


class TinyCode(Benchmark):
    name = "TinyCode"
    files = ("test.jsonl", "train.jsonl")
    default_timeout = 5.0  # a reference runs its asserts in milliseconds
    binary = False  # fraction of asserts passed: see the module docstring
    fields = ("task_id", "prompt", "entry_point", "signature", "solution", "tests")

    def load(self, directory: str | None = None, file: str | None = None) -> list[Problem]:
        path = self.resolve(directory, file)
        if not os.path.exists(path):
            raise DataError(path, None, "no TinyCode data file here: write it with `python -m data.tinycode`")
        return super().load(directory, file)

    def parse(self, path: str) -> list[Problem]:
        problems = []
        for line, record in read_jsonl(path):
            require(record, self.fields, path, line)
            problems.append(Problem(
                id=record["task_id"], domain=self.name, prompt=record["prompt"],
                init_state=record["signature"] + "\n",
                test={"tests": record["tests"], "entry_point": record["entry_point"]},
                meta={"solution": record["solution"], "template": record.get("template", "")}))
        return problems

    def reference_program(self, problem: Problem) -> str:
        return problem.meta["solution"]

    def load_error(self, problem: Problem) -> str | None:
        return None if problem.test.get("tests") else "no tests"

    def user_message(self, problem: Problem) -> str:
        return problem.prompt

    def response_prefix(self, problem: Problem, state: str) -> str:
        return "```python\n" + state

    def job(self, problem, program, prepared=None, store="", timeout=None) -> Job:
        return Job(program, tests=list(problem.test["tests"]), timeout=timeout or self.default_timeout,
                   guard="strict")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n_train", type=int, default=2000)
    parser.add_argument("--n_test", type=int, default=200)
    parser.add_argument("--directory", default=os.path.join("data", "TinyCode"))
    parser.add_argument("--split_fraction", type=float, default=None,
                        help="also write rl.jsonl (this fraction of the test split's templates) and eval.jsonl")
    args = parser.parse_args(argv)
    if args.split_fraction is not None and not 0 < args.split_fraction < 1:
        parser.error(f"--split_fraction {args.split_fraction}: must lie strictly between 0 and 1")
    train, test = write(args.directory, args.seed, args.n_train, args.n_test, args.split_fraction)
    print(f"wrote {train} ({args.n_train} tasks) and {test} ({args.n_test} tasks)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
