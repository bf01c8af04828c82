"""The import graph of our packages: no cycle at any depth, and the layering the packages promise.

The graph is read from the source with `ast` (nothing is imported): every `import` and `from`
statement anywhere in a file counts, lazy imports inside functions included, relative imports
resolved, and `from package import name` counts as importing the submodule `name` when there is
one. An import cycle means a piece lives in the wrong place: a registry imports its plugins, and
the plugins import a small base module that imports neither.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The project's packages: the top-level folders with an __init__.py (pyproject.toml installs them).
PACKAGES = sorted(path.parent.name for path in ROOT.glob("*/__init__.py"))


def module_files(root: Path, packages: list[str]) -> dict[str, Path]:
    """Module name -> source file for every module of `packages` under `root` (folders without an
    `__init__.py`, such as checkpoint folders, are no packages and are skipped)."""
    modules = {}
    for package in packages:
        for folder, subfolders, files in os.walk(root / package):
            subfolders[:] = sorted(name for name in subfolders if (Path(folder, name) / "__init__.py").exists())
            dotted = Path(folder).relative_to(root).parts
            for name in files:
                if name.endswith(".py"):
                    parts = dotted if name == "__init__.py" else (*dotted, name[:-3])
                    modules[".".join(parts)] = Path(folder, name)
    return modules


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest prefix of the dotted `name` that is one of our modules (None: not ours)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def imports_of(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Our modules that `source` (the text of `module`) imports, anywhere in the file.

    >>> sorted(imports_of("def f():\\n    from . import b\\n", "p.a", False, {"p", "p.a", "p.b"}))
    ['p.b']
    """
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(_resolve(alias.name, known) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in known else _resolve(base, known))
    found.discard(None)
    found.discard(module)
    return found


def import_graph(root: Path = ROOT, packages: list[str] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the modules of ours it imports."""
    files = module_files(root, packages)
    known = set(files)
    return {module: imports_of(path.read_text(encoding="utf-8"), module, path.name == "__init__.py", known)
            for module, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that ends where it starts, or None when the graph has none.

    >>> find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}})
    ['a', 'b', 'c', 'a']
    >>> find_cycle({"a": {"b"}, "b": set()}) is None
    True
    """
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path, on_path = [start], {start}
        stack = [iter(sorted(graph.get(start, ())))]
        while stack:
            following = next(stack[-1], None)
            if following is None:  # every import of path[-1] explored: no cycle through it
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                continue
            if following in on_path:
                return path[path.index(following):] + [following]
            if following not in done:
                path.append(following)
                on_path.add(following)
                stack.append(iter(sorted(graph.get(following, ()))))
    return None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module that importing `start` may import, directly or through others.

    >>> sorted(reachable({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a"}}, "a"))
    ['b', 'c']
    """
    seen, todo = set(), [start]
    while todo:
        for following in graph.get(todo.pop(), ()):
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return seen


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_packages_are_the_installed_ones():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert PACKAGES and all(f'"{package}*"' in pyproject for package in PACKAGES), PACKAGES


def test_graph_reads_every_kind_of_import(tmp_path):
    for package in ("p", "p/sub"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "p/a.py").write_text("import p.b\nfrom p.sub import c\n")
    (tmp_path / "p/b.py").write_text("def later():\n    from .sub.c import thing\n")
    (tmp_path / "p/sub/c.py").write_text("from .. import d\nfrom ..b import name\nimport os\n")
    (tmp_path / "p/d.py").write_text("from p import sub\n")
    (tmp_path / "p/notes").mkdir()  # no __init__.py: not a package
    (tmp_path / "p/notes/x.py").write_text("import p.a\n")
    graph = import_graph(tmp_path, ["p"])
    assert graph == {"p": set(), "p.sub": set(), "p.a": {"p.b", "p.sub.c"}, "p.b": {"p.sub.c"},
                     "p.sub.c": {"p.d", "p.b"}, "p.d": {"p.sub"}}


def test_cycle_finder_catches_a_planted_cycle(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p/__init__.py").write_text("")
    (tmp_path / "p/base.py").write_text("import json\n")
    (tmp_path / "p/registry.py").write_text("from p import plugin, base\n")
    (tmp_path / "p/plugin.py").write_text("from p.base import Base\n\ndef lookup():\n    from .registry import table\n")
    assert find_cycle(import_graph(tmp_path, ["p"])) == ["p.plugin", "p.registry", "p.plugin"]
    (tmp_path / "p/plugin.py").write_text("from p.base import Base\n")
    assert find_cycle(import_graph(tmp_path, ["p"])) is None
    assert find_cycle({"a": {"b"}, "b": {"c", "d"}, "c": set(), "d": {"e"}, "e": {"b"}}) == ["b", "d", "e", "b"]
    assert find_cycle({"x": {"y"}, "y": set(), "a": {"x", "a2"}, "a2": {"x"}}) is None


def test_graph_covers_our_packages(graph):
    assert {"data.registry", "data.benchmark", "data.tinycode", "prompts"} <= set(graph)
    assert "data.benchmark" in graph["data.tinycode"] and "data.tinycode" in graph["data.registry"]


def test_no_import_cycle(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_data_and_prompts_sit_below_the_stages(graph):
    """Nothing under data/ or prompts/ reaches experiment/, models/ or rms/, and the benchmark
    modules under data/ never reach the sandbox (evaluation/): they build jobs, never run them."""
    upper = ("experiment", "models", "rms")
    for module in sorted(graph):
        if module.split(".")[0] not in ("data", "prompts"):
            continue
        reached = reachable(graph, module)
        above = sorted(name for name in reached if name.split(".")[0] in upper)
        assert not above, f"{module} imports {above} (directly or through others)"
        if module.startswith("data."):
            sandbox = sorted(name for name in reached if name.split(".")[0] == "evaluation")
            assert not sandbox, f"{module} imports {sandbox} (directly or through others)"
