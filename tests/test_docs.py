"""The documentation holds together: every relative link in README.md and docs/*.md names a file that
exists and, with `#anchor`, a heading of that file (GitHub's slug rule); README.md stays under 200 lines."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks (links and headings there are not rendered)."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text lower-cased, every character but letters, digits,
    spaces, hyphens and underscores dropped, spaces turned into hyphens.

    >>> slug("The tiny policy (`python -m models.tiny`)")
    'the-tiny-policy-python--m-modelstiny'
    """
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = "".join(char for char in text if char.isalnum() or char in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file; a repeated slug gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def broken_links(path: Path) -> list[str]:
    """The relative links of a Markdown file that name no file, or no heading of it; one line each."""
    problems = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if not target or EXTERNAL.match(target):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                problems.append(f"{path.name}:{number}: {target}: no file {linked}")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                problems.append(f"{path.name}:{number}: {target}: no heading #{anchor} in {linked.name}")
    return problems


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(document):
    assert broken_links(document) == []


def test_readme_is_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines; move detail into docs/"


def test_docs_exist_and_readme_links_each():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    pages = sorted((REPO / "docs").glob("*.md"))
    assert pages
    assert [page.name for page in pages if f"docs/{page.name}" not in readme] == []


def test_checker_finds_a_planted_broken_link(tmp_path):
    (tmp_path / "docs").mkdir()
    page = "# Page\n\n## The sandbox (`evaluation/sandbox/`)\n\n## Twice\n\n## Twice\n"
    (tmp_path / "docs" / "page.md").write_text(page)
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n## Local part\n\n"
        "[fine](docs/page.md) [anchor](docs/page.md#the-sandbox-evaluationsandbox) [second](docs/page.md#twice-1)\n"
        "[here](#local-part) [web](https://example.com/missing.md) `[code](docs/nowhere.md)`\n"
        "[missing file](docs/nowhere.md) and [missing anchor](docs/page.md#no-such-heading)\n"
        "[missing local](#elsewhere)\n"
        "```\n[in a fence](docs/fenced.md)\n```\n"
    )
    problems = broken_links(readme)
    assert len(problems) == 3, problems
    assert problems[0].startswith("README.md:7: docs/nowhere.md: no file")
    assert problems[1].startswith("README.md:7: docs/page.md#no-such-heading: no heading")
    assert problems[2].startswith("README.md:8: #elsewhere: no heading")


@pytest.mark.parametrize("heading, expected", [
    ("1.3 Train the policy", "13-train-the-policy"),
    ("Before the first GPU run: `make gpu-check`", "before-the-first-gpu-run-make-gpu-check"),
    ("Training (ReST-GRPO) and baselines", "training-rest-grpo-and-baselines"),
    ("`make demo`", "make-demo"),
    ("See [the docs](docs/x.md) now", "see-the-docs-now"),
    ("snake_case stays", "snake_case-stays"),
])
def test_slug_follows_github(heading, expected):
    assert slug(heading) == expected
