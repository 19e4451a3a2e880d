"""The documentation's shape: a short README that links every docs/ page, relative links that lead to
files that exist, and README install and test commands that are the ones CI runs (.ci/run).
Reads files only: no build, no network."""
import glob
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
LINKED_PAGES = [README, ROOT / "CONTRIBUTING.md", ROOT / "benchmarks" / "README.md", *DOCS]

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SHELL = {"bash", "sh", "shell", "console"}


def _prose(text):
    """The text without fenced blocks and code spans, whose brackets are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _relative_links(path):
    for target in LINK.findall(_prose(path.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # https:, mailto:, or an anchor in the same page
        yield target.split("#", 1)[0]


def _shell_blocks(path):
    return [body for lang, body in FENCE.findall(path.read_text()) if lang.strip() in SHELL]


def _command(line):
    """A shell line without its comment, with pip's -q/-v flags dropped and spaces collapsed."""
    line = re.sub(r"(^|\s)#.*$", "", line).strip()
    line = re.sub(r"\b(pip install)((?:\s+-[qv]+)+)(?=\s)", r"\1", line)
    return " ".join(line.split())


def _ci_commands():
    return [c for c in map(_command, (ROOT / ".ci" / "run").read_text().splitlines()) if c]


def _ci_runs(command, ci):
    """CI runs `command` as written, or with more options after it (the long runs shortened by
    documented options), possibly behind a wrapper such as `quiet LOG` or in a pipe."""
    pattern = re.compile(r"(^|[\s;&|(])" + re.escape(command) + r"($|\s+-|\s*[|;&)])")
    return any(pattern.search(line) for line in ci)


def test_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines <= 220, f"README.md has {lines} lines; the rest belongs in docs/"


@pytest.mark.parametrize("page", LINKED_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files(page):
    missing = [t for t in _relative_links(page) if t and not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to paths that do not exist: {missing}"


def test_every_docs_page_is_linked_from_the_readme():
    assert DOCS, "docs/ has no pages"
    linked = {(ROOT / t).resolve() for t in _relative_links(README)}
    unlinked = [p.name for p in DOCS if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def test_readme_install_and_test_commands_are_the_ones_ci_runs():
    ci = _ci_commands()
    checked = []
    for block in _shell_blocks(README):
        commands = [c for c in map(_command, block.splitlines()) if c]
        if not any(("pip install" in c and " -e " in f"{c} ") or c.startswith("pytest") for c in commands):
            continue
        for command in commands:
            checked.append(command)
            assert _ci_runs(command, ci), f"the README runs `{command}`, .ci/run does not"
    assert any(c.startswith("pip install") for c in checked) and "pytest" in checked, checked


def test_command_matching():
    ci = [_command(line) for line in (
        'quiet "$WORK/install.log" pip install -v -e ".[train]"',
        "pip install -q torch==2.13.0",
        "fastgan train --steps 5 --out x",
        "pytest -q  # comment",
    )]
    assert _ci_runs('pip install -e ".[train]"', ci)
    assert _ci_runs("pip install torch==2.13.0", ci)
    assert _ci_runs("fastgan train", ci)
    assert _ci_runs("pytest", ci)
    assert not _ci_runs('pip install -e ".[test]"', ci)
    assert not _ci_runs("pip install torch", ci)
    assert not _ci_runs("fastgan sample", ci)


def test_every_path_contributing_names_exists():
    """CONTRIBUTING's map and recipe name files (csrc/args/<op>.h: any op's); each must exist."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    path = r"\b((?:csrc|tests|fastgan|benchmarks|docs)/[\w<>/*.-]*[\w>]\.(?:py|h|cpp|cuh|cu|inc|md|sh))\b"
    paths = set(re.findall(path, text))
    missing = sorted(p for p in paths if not glob.glob(str(ROOT / p.replace("<op>", "*"))))
    assert len(paths) > 20 and not missing, f"CONTRIBUTING.md names files that do not exist: {missing}"
