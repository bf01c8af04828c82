"""APPS: the three layouts read the same problems; every solution of the sample passes in each;
mutated programs get the partial rewards computed by hand; the original's comparison cascade and
call-based coercions; hostile standard-input programs are contained."""
from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path

import pytest
from conftest import shared_data

from data.apps import INLINE_LIMIT, TESTS_FILE, module_program, parse_test
from data.jsonl import DataError
from data.records import Problem
from data.registry import get_benchmark
from evaluation.judging import verify

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SAMPLE = "apps/coderl_train_sample"


@pytest.fixture(scope="module")
def apps():
    return get_benchmark("APPS")


def synthetic(test: dict, problem_id: str = "synthetic") -> Problem:
    return Problem(id=problem_id, domain="APPS", prompt="", test=parse_test(test), meta={"solutions": []})


def rewards(sandbox, benchmark, problem, programs, **kwargs) -> list:
    return verify(sandbox, benchmark, [(problem, programs)], **kwargs)[0]


# -- reading (no shared data needed) -------------------------------------------------------------


def test_fixture_layouts_read_the_same_problems(apps):
    original = apps.load(str(FIXTURES), "apps_tiny.jsonl")
    hugging_face = apps.load(str(FIXTURES), "apps_tiny_hf.jsonl")
    assert [p.id for p in original] == ["sum-two", "add", "cut-off"]
    assert [p.id for p in hugging_face] == ["0", "1", "2"]
    for a, b in zip(original, hugging_face):
        assert (a.domain, a.prompt, a.init_state, a.test, a.meta["solutions"]) == \
               (b.domain, b.prompt, b.init_state, b.test, b.meta["solutions"])
    sum_two, add, cut_off = original
    assert sum_two.test == {"inputs": ["1\n2\n", "-5\n5\n"], "outputs": ["3\n", "0\n"]}  # a Python literal
    assert sum_two.meta["difficulty"] == "introductory" and len(sum_two.meta["solutions"]) == 2
    assert add.test["fn_name"] == "add" and add.init_state == "def add(a, b):\n    "
    assert cut_off.test["inputs"] == [] and "does not parse" in cut_off.test["error"]
    assert apps.reference_program(sum_two) == sum_two.meta["solutions"][0]
    with pytest.raises(ValueError):
        apps.reference_program(cut_off)


def test_parse_test_reads_as_the_original(apps):
    assert parse_test("{'inputs': ['1'], 'outputs': ['2']}") == {"inputs": ["1"], "outputs": ["2"]}
    assert parse_test('{"inputs": [[true]], "outputs": [null], "fn_name": "f"}') == \
        {"inputs": [[True]], "outputs": [None], "fn_name": "f"}
    assert parse_test('{"inputs": ["1"], "outputs": ["2"], "fn_name": null}') == {"inputs": ["1"], "outputs": ["2"]}
    with warnings.catch_warnings():  # ast.literal_eval goes first, as in the original: "\/" keeps its backslash
        warnings.simplefilter("ignore")
        assert parse_test('{"inputs": ["a\\/b"], "outputs": ["x"]}')["inputs"] == ["a\\/b"]
    assert parse_test({"inputs": [[1]], "outputs": [2], "fn_name": "g"})["fn_name"] == "g"
    for bad in ("", "{'inputs': [", '{"inputs": ["1"], "outputs": []}', '{"inputs": [], "outputs": []}',
                "[1, 2]", None, '{"inputs": ["1"], "outputs": ["2"], "fn_name": 3}'):
        assert parse_test(bad)["inputs"] == [] and parse_test(bad)["error"], bad


def _write_folder(folder: Path, question: str, test: str | None, solutions: list | None, starter: str = "") -> None:
    folder.mkdir(parents=True)
    (folder / "question.txt").write_text(question)
    if test is not None:
        (folder / "input_output.json").write_text(test)
    if solutions is not None:
        (folder / "solutions.json").write_text(json.dumps(solutions))
    if starter:
        (folder / "starter_code.py").write_text(starter)
    (folder / "metadata.json").write_text(json.dumps({"difficulty": "interview", "url": ""}))


def test_directory_layout_and_which_file_is_read(apps, tmp_path):
    tree = tmp_path / "train"
    _write_folder(tree / "0007", "Add.", json.dumps({"inputs": ["1 2\n"], "outputs": ["3\n"]}), ["print(3)\n"])
    _write_folder(tree / "0003", "Call.", json.dumps({"fn_name": "f", "inputs": [[1]], "outputs": [1]}), None,
                  starter="def f(x):\n    ")
    _write_folder(tree / "0009", "No tests.", None, [])
    (tree / "LICENSE").write_text("not a problem")
    problems = apps.load(str(tree))
    assert [p.id for p in problems] == ["0003", "0007", "0009"]
    assert problems[0].init_state == "def f(x):\n    " and problems[0].test["fn_name"] == "f"
    assert problems[0].meta == {"solutions": [], "difficulty": "interview"}
    assert problems[1].meta["solutions"] == ["print(3)\n"] and "error" in problems[2].test
    # --file wins over problem folders; without folders the default files, in order
    (tree / "mine.jsonl").write_text((FIXTURES / "apps_tiny.jsonl").read_text())
    assert [p.id for p in apps.load(str(tree), "mine.jsonl")][0] == "sum-two"
    flat = tmp_path / "flat"
    flat.mkdir()
    with pytest.raises(DataError):
        apps.load(str(flat))
    (flat / "test_500.jsonl").write_text((FIXTURES / "apps_tiny_hf.jsonl").read_text())
    assert [p.id for p in apps.load(str(flat))] == ["0", "1", "2"]
    (flat / "data_with_test.jsonl").write_text((FIXTURES / "apps_tiny.jsonl").read_text())
    assert [p.id for p in apps.load(str(flat))] == ["sum-two", "add", "cut-off"]
    (flat / "bad.jsonl").write_text('{"title": "neither layout"}\n')
    with pytest.raises(DataError, match="bad.jsonl:1: missing field 'id'"):
        apps.load(str(flat), "bad.jsonl")


def test_top_level_return_becomes_system_exit():
    program = ("import sys\nx = int(input())\nif x:\n    print('No'); return\n"
               "for i in range(3):\n    if i == 2: return print('é', i)  # done\n"
               "def f():\n    return 1\nclass A:\n    def g(self): return 2\n")
    assert module_program(program) == program.replace("print('No'); return", "print('No'); raise SystemExit") \
        .replace("return print('é', i)", "raise SystemExit( print('é', i))")
    for untouched in ("def f():\n    return 1\n", "x = (\n", "print('return')\n"):
        assert module_program(untouched) == untouched


# -- judging (no shared data needed) -------------------------------------------------------------


def test_fixture_programs(sandbox, apps):
    problems = apps.load(str(FIXTURES), "apps_tiny.jsonl")
    programs = [p.meta["solutions"] + ["print(1 +)\n"] for p in problems[:2]] + [["print(1)\n"]]
    verdicts = verify(sandbox, apps, list(zip(problems, programs)))
    assert [[v.reward for v in group] for group in verdicts] == [[1.0, 1.0, 0.0], [1.0, 0.0], [0.0]]
    assert verdicts[0][2].status == verdicts[1][1].status == "syntax_error"  # compiled before anything
    assert verdicts[2][0].status == "harness_error" and verdicts[2][0].tests == []


def test_output_comparison_cascade(sandbox, apps):
    problem = synthetic({"inputs": [""], "outputs": ["1\n6\n-1\n"]})
    cases = {  # printed text -> passes
        "1\n6\n-1": True,  # stripped text
        " 1 \n6\n-1  \n\n": True,  # lines stripped
        "1.0000001\n6\n-1": True,  # numpy.allclose
        "-1\n6\n1\n6": True,  # token sets per line: order and repeats ignored
        "1\n6\n-1.0004": True,  # floats rounded to 3 places
        "1\n6\n-1.004": False,
        "1 6 -1": False,
        "1\n6\n-2": False,
        "1\n6": False,
        "": False,
    }
    verdicts = rewards(sandbox, apps, problem, [f"print({text!r})\n" for text in cases])
    assert [v.reward for v in verdicts] == [float(ok) for ok in cases.values()]
    words = synthetic({"inputs": [""], "outputs": [["Yes", "No"]]})  # a list of lines is joined
    verdicts = rewards(sandbox, apps, words, ["print('Yes \\n\\nNo')\n", "print('Yes No')\n"])
    assert [v.reward for v in verdicts] == [1.0, 0.0]


def test_call_based_coercions(sandbox, apps):
    problem = synthetic({"fn_name": "f", "inputs": [[{"1": 1, "2": 2}], [3], [4], [5]],
                         "outputs": [{"1": 2, "2": 4}, [[1, 2, 3]], [[[1, 2], [3, 4]]], 6]})
    body = ("    if isinstance(x, dict):\n        return {k: v * 2 for k, v in x.items()}\n"
            "    if x == 3:\n        return (1, 2, 3)\n    if x == 4:\n        return [(1, 2), (3, 4)]\n"
            "    return x + 1\n")
    function = "def f(x):\n" + body
    method = "class Solution:\n    def f(self, x):\n" + textwrap.indent(body, "    ")
    main_block = function + "if __name__ == '__main__':\n    print(input())\n"  # not run: the module is tmp_sol
    uses_header = "def f(x):\n    return x + 1 if isinstance(x, int) else gcd(4, 6) and Counter()\n"
    verdicts = rewards(sandbox, apps, problem, [function, method, main_block, uses_header, "def g(x):\n    pass\n"])
    assert [v.reward for v in verdicts] == [1.0, 1.0, 1.0, 0.25, 0.0]
    assert verdicts[3].tests == ["failed", "failed", "failed", "passed"]  # gcd and Counter are in scope
    assert verdicts[4].tests == ["runtime_error"] * 4


def test_large_tests_travel_through_the_store(sandbox, apps, tmp_path):
    text = "x" * (INLINE_LIMIT + 1000)
    problem = synthetic({"inputs": [text, "ab"], "outputs": [str(len(text)), "2"]})
    program = "import sys\nprint(len(sys.stdin.read()))\n"
    assert apps.prepare(problem, str(tmp_path)) is None
    assert apps.job(problem, program, store=str(tmp_path)).data_files == [str(tmp_path / TESTS_FILE)]
    assert apps.job(problem, program).data_files == []
    assert [v.reward for v in rewards(sandbox, apps, problem, [program, "print(2)\n"])] == [1.0, 0.5]


SUM = {"inputs": ["1\n2\n", "5\n5\n"], "outputs": ["3\n", "10\n"]}
ANSWER = "print(int(input()) + int(input()))\n"
WELL_BEHAVED = {
    "input": ANSWER,
    "open_0": "print(sum(map(int, open(0).read().split())))\n",
    "buffer": "import sys\nprint(sum(map(int, sys.stdin.buffer.read().split())))\n",
    "fds": "import os\nos.write(1, str(sum(map(int, os.read(0, 100).split()))).encode() + b'\\n')\n",
    "readline": "import sys\ninput = sys.stdin.readline\n" + ANSWER,
    "main_block": "def main():\n    " + ANSWER + "\nif __name__ == '__main__':\n    main()\n",
    "sys_exit": "import sys\n" + ANSWER + "sys.exit(1)\nprint('junk')\n",
    "exit": ANSWER + "exit()\nprint('junk')\n",
    "quit_in_function": "def main():\n    " + ANSWER + "    quit()\nmain()\nprint('junk')\n",
    "top_level_return": "a, b = int(input()), int(input())\nprint(a + b)\nif a:\n    return\nprint('junk')\n",
    "atexit": "import atexit, io, sys\nout = io.StringIO()\n"
              "atexit.register(lambda: sys.__stdout__.write(out.getvalue()))\n"
              "print(int(input()) + int(input()), file=out)\n",
    "thread": "import threading\ndef main():\n    " + ANSWER + "threading.Thread(target=main).start()\n",
    "closes_fds": "import os\nprint(int(input()) + int(input()), flush=True)\nos.close(0)\nos.close(1)\n",
}
HOSTILE = {  # name -> (program, per-test statuses, reward)
    "infinite_loop": ("while True:\n    pass\n", ["timeout", "timeout"], 0.0),
    "reads_too_much": ("a, b, c = int(input()), int(input()), int(input())\nprint(a + b)\n",
                       ["runtime_error", "runtime_error"], 0.0),
    "stray_thread": ("import threading, time\nthreading.Thread(target=time.sleep, args=(1000,)).start()\n" + ANSWER,
                     ["timeout", "runtime_error"], 0.0),
    "fork": ("import os\nos.fork()\n" + ANSWER, ["runtime_error", "runtime_error"], 0.0),
    "memory_bomb": ("x = bytearray(8 * 1024 ** 3)\n" + ANSWER, ["memory", "memory"], 0.0),
    "os_exit": ("import os\n" + ANSWER.replace(")\n", ", flush=True)\n") + "os._exit(0)\n", [], 0.0),
    "wrong_then_right": ("a, b = int(input()), int(input())\nprint(a + b if a == 5 else 0)\n",
                         ["failed", "passed"], 0.5),
}


def test_standard_input_programs_run_as_scripts(sandbox, apps):
    verdicts = rewards(sandbox, apps, synthetic(SUM), list(WELL_BEHAVED.values()))
    assert {name: (v.reward, v.tests) for name, v in zip(WELL_BEHAVED, verdicts) if v.reward != 1.0} == {}


def test_hostile_standard_input_programs_are_contained(sandbox, apps):
    problem = synthetic(SUM)
    # passes the first test, then swallows every timeout of the second: the whole-run limit ends it
    swallow = ("a, b = int(input()), int(input())\nprint(a + b, flush=True)\nwhile a == 5:\n    try:\n"
               "        while True:\n            pass\n    except BaseException:\n        pass\n")
    stuck = sandbox.submit(apps.job(problem, swallow, timeout=6.0))
    flood = sandbox.submit(apps.job(problem, "while True:\n    print('x' * 100000)\n"))
    verdicts = rewards(sandbox, apps, problem, [program for program, _, _ in HOSTILE.values()])
    got = {name: (v.tests, v.reward) for name, v in zip(HOSTILE, verdicts)}
    assert got == {name: (statuses, reward) for name, (_, statuses, reward) in HOSTILE.items()}
    assert verdicts[0].time < 12  # two 4 s limits, not the whole-run limit
    assert verdicts[list(HOSTILE).index("os_exit")].status == "failed"
    stuck = apps.verdict(problem, stuck.result())
    assert (stuck.status, stuck.tests, stuck.reward) == ("timeout", ["passed"], 0.5)
    flood = apps.verdict(problem, flood.result())
    assert flood.reward == 0.0 and set(flood.tests) <= {"runtime_error", "timeout"}


# -- the APPS sample in ../shared/data ------------------------------------------------------------


def _sample_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The sample as a directory tree (as it is), and written as the original project's JSONL and
    in the Hugging Face columns."""
    root = shared_data(SAMPLE)
    original, hugging_face = [], []
    for folder in sorted(p for p in root.iterdir() if (p / "question.txt").exists()):
        starter = (folder / "starter_code.py").read_text() if (folder / "starter_code.py").exists() else ""
        test = (folder / "input_output.json").read_text()
        solutions = json.loads((folder / "solutions.json").read_text())
        metadata = json.loads((folder / "metadata.json").read_text())
        question = (folder / "question.txt").read_text()
        original.append({"id": folder.name, "prompt": question, "code": starter, "test": test,
                         "solutions": solutions, "difficulty": metadata["difficulty"]})
        hugging_face.append({"problem_id": int(folder.name), "question": question, "solutions": json.dumps(solutions),
                             "input_output": test, "difficulty": metadata["difficulty"], "url": metadata["url"],
                             "starter_code": starter})
    for name, records in (("original.jsonl", original), ("hf.jsonl", hugging_face)):
        (tmp_path / name).write_text("".join(json.dumps(record) + "\n" for record in records))
    return root, tmp_path / "original.jsonl", tmp_path / "hf.jsonl"


def test_sample_every_solution_passes_in_every_layout(sandbox, apps, tmp_path):
    tree, original, hugging_face = _sample_files(tmp_path)
    layouts = [apps.load(str(tree)), apps.load(str(tmp_path), original.name),
               apps.load(str(tmp_path), hugging_face.name)]
    assert [p.id for p in layouts[0]] == ["0001", "0111", "2287", "2404", "4184"]
    assert [p.id for p in layouts[2]] == ["1", "111", "2287", "2404", "4184"]
    for problems in layouts:
        assert sum(len(p.meta["solutions"]) for p in problems) == 101
        assert [(p.prompt, p.init_state, p.test, p.meta) for p in problems] == \
               [(p.prompt, p.init_state, p.test, p.meta) for p in layouts[0]]
    assert [bool(p.test.get("fn_name")) for p in layouts[0]] == [False, False, False, True, True]
    items = [(p, p.meta["solutions"]) for problems in layouts for p in problems]
    verdicts = verify(sandbox, apps, items)
    failures = [(p.id, i, v.status, v.tests) for (p, _), group in zip(items, verdicts)
                for i, v in enumerate(group) if v.reward != 1.0 or v.status != "passed"]
    assert failures == []
    assert sum(len(group) for group in verdicts) == 303


def test_sample_mutations_get_hand_computed_rewards(sandbox, apps):
    problems = {p.id: p for p in apps.load(str(shared_data(SAMPLE)))}
    prime = problems["4184"].meta["solutions"][0]
    wrap = "\n_is_prime = is_prime\n\ndef is_prime(n):\n    {}\n    return _is_prime(n)\n"
    tree = problems["2287"].test
    answers = {tree["inputs"][0]: "Yes\n7\n6\n5\n", tree["inputs"][1]: "No\n"}  # test 1: reordered, deduplicated
    expected_0001 = problems["0001"].test["outputs"][0]
    cases = {  # problem -> [(program, per-test statuses or None, reward)]
        # inputs 1, 2, 5, 143, -1, 29, 53, 529: primes 2, 5, 29, 53
        "4184": [("def is_prime(n):\n    return n % 2 == 1\n", None, 3 / 8),
                 ("def is_prime(n):\n    return False\n", None, 4 / 8),
                 (prime + wrap.format("if n == 143:\n        raise ValueError(n)"),
                  ["passed"] * 3 + ["runtime_error"] + ["passed"] * 4, 7 / 8),
                 (prime + wrap.format("while n == 529:\n        pass"), ["passed"] * 7 + ["timeout"], 7 / 8)],
        "2287": [("print('No')\n", ["failed", "passed", "failed"], 1 / 3),
                 (f"import sys\nprint({answers!r}.get(sys.stdin.read(), 'Yes'), end='')\n",
                  ["passed", "passed", "failed"], 2 / 3)],
        "0001": [(f"print({' '.join(expected_0001.split())!r})\n", ["failed"], 0.0),
                 (f"print({expected_0001.replace(chr(10), '  ' + chr(10) + chr(10))!r})\n", ["passed"], 1.0)],
        "2404": [("class Solution:\n    def findKthPositive(self, arr, k):\n        return k\n", ["failed"], 0.0)],
    }
    items = [(problems[pid], [program for program, _, _ in programs]) for pid, programs in cases.items()]
    verdicts = verify(sandbox, apps, items)
    for (pid, programs), group in zip(cases.items(), verdicts):
        for (_, statuses, reward), verdict in zip(programs, group):
            assert verdict.reward == pytest.approx(reward), (pid, verdict)
            assert statuses is None or verdict.tests == statuses, (pid, verdict)
