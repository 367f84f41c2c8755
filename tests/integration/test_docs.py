"""The documentation runs as written: every Python block, every command, every link.

**Python blocks.** Every ```` ```python ```` block of ``docs/*.md`` is a program: the test
writes it to an empty directory, runs it with this interpreter as ``python snippet.py``
(``$ORCHESTRATE_STORE`` unset, as for a reader), and checks that it exits 0, prints every
line it announces with a ``# -> `` comment, in order, and leaves no file behind. Every
block announces at least one line, so that it shows what it does and a test can tell. A
block that is not meant to run uses another fence language (``bash``, ``console``,
``text``); a Python example a reader would copy must run.

**Test modules.** A block whose first line is a comment naming a test file
(``# test_my_store.py``) is a pytest module: it is written under that name and run with
``python -m pytest`` (``asyncio_mode = "auto"``, as the page asks of the reader); it must
pass. Its passing tests are what it shows, so it need announce nothing.

**Preludes.** A page may put ``<!-- prelude -->`` on the line before a Python block. That
block is shown like any other; it runs on its own (it need announce nothing), and its code
is prepended to every later Python block of the page, until the next prelude replaces it.
Readers see the prelude, so copying it and a block gives a program that runs. A prelude is
for what the examples of a page share (stand-in models, a small workflow), never for
hiding what makes an example work.

The blocks run in parallel subprocesses, started together when the first of them is
tested (only those selected, so ``-k`` stays quick).

**Commands.** Every ``orchestrate ...`` command in a code span or a shell block of the
docs and the README names a command that exists and only options that command has.

**Links.** Relative links point at files that exist and at headings those files have.

**API reference.** ``docs/api.md`` is what ``scripts/api_reference.py`` generates from the
code now, and ``docs/index.md`` links every page.
"""

from __future__ import annotations

import concurrent.futures
import functools
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import click
import pytest

from orchestrate.cli import cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
README = ROOT / "README.md"

PRELUDE = "<!-- prelude -->"
ANNOUNCE = "# -> "
FENCE = re.compile(r"^(`{3,})([\w+-]*)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    prelude: str  # the page's prelude in force, "" if none
    is_prelude: bool

    @property
    def id(self) -> str:
        return f"{self.page.name}:{self.line}"

    @property
    def program(self) -> str:
        return f"{self.prelude}\n{self.code}" if self.prelude else self.code

    @property
    def test_module(self) -> str | None:
        """The file name a pytest module block gives itself in its first line."""
        first = re.match(r"# (test_\w+\.py)\n", self.code)
        return first.group(1) if first else None

    @property
    def announced(self) -> list[str]:
        return [line.removeprefix(ANNOUNCE) for line in self.code.splitlines() if line.startswith(ANNOUNCE)]


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, with the prelude each Python block runs after."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    prelude = ""
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, language = opening.groups()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), None)
        assert end is not None, f"{page.name}:{i + 1}: a fence that is never closed"
        code = "\n".join(lines[i + 1 : end]) + "\n"
        marked = i > 0 and lines[i - 1].strip() == PRELUDE
        assert not marked or language == "python", f"{page.name}:{i + 1}: a prelude must be a Python block"
        found.append(Block(page, i + 1, language, code, "" if marked else prelude, marked))
        if marked:
            prelude = code
        i = end + 1
    return found


PYTHON_BLOCKS = [b for page in PAGES for b in blocks(page) if b.language == "python"]


def _run(block: Block, workdir: Path) -> subprocess.CompletedProcess[str]:
    name = block.test_module or "snippet.py"
    (workdir / name).write_text(block.program)
    env = {k: v for k, v in os.environ.items() if k != "ORCHESTRATE_STORE"}
    command = [sys.executable, name]
    if block.test_module:
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # pytest would leave its rewritten module behind
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", name]
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def ran(request: pytest.FixtureRequest) -> Iterator[dict[str, tuple[Path, concurrent.futures.Future]]]:
    """Every selected block, started at once in its own directory: ``{id: (dir, future)}``."""
    selected = {
        item.callspec.params["block"].id
        for item in request.session.items
        if item.originalname == "test_python_block_runs_and_prints_what_it_says" and hasattr(item, "callspec")
    }
    workers = max(2, (os.cpu_count() or 2) + 1)
    with (
        tempfile.TemporaryDirectory(prefix="docs-blocks-") as top,
        concurrent.futures.ThreadPoolExecutor(workers) as pool,
    ):
        started = {}
        # The blocks that load the embedded models take longest: they start first.
        order = sorted(enumerate(PYTHON_BLOCKS), key=lambda nb: "orchestrate.models.local" not in nb[1].code)
        for n, block in order:
            if block.id in selected:
                workdir = Path(top) / f"block{n}"
                workdir.mkdir()
                started[block.id] = (workdir, pool.submit(_run, block, workdir))
        yield started
        for _, future in started.values():
            future.cancel()


def test_the_docs_have_python_blocks_and_preludes_are_used():
    assert len(PYTHON_BLOCKS) > 20
    for page in PAGES:
        page_blocks = blocks(page)
        for block in page_blocks:
            # A fence without a language, or Python spelled otherwise, would escape the test.
            assert block.language and block.language not in {"py", "python3", "pycon", "ipython"}, (
                f"{block.id}: name the block's language (python runs; bash, console, text do not)"
            )
        for n, block in enumerate(page_blocks):
            if block.is_prelude:
                later = [b for b in page_blocks[n + 1 :] if b.language == "python"]
                assert later and later[0].prelude == block.code, f"{block.id}: a prelude no block uses"


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.id for b in PYTHON_BLOCKS])
def test_python_block_runs_and_prints_what_it_says(block: Block, ran):
    workdir, future = ran[block.id]
    done = future.result()
    assert done.returncode == 0, f"{block.id} failed:\n{done.stdout[-3000:]}\n{done.stderr}"
    if not (block.is_prelude or block.test_module):
        assert block.announced, f"{block.id}: say what the block prints, with '{ANNOUNCE}' lines"
    printed = done.stdout.splitlines()
    assert [line for line in printed if line in block.announced] == block.announced, (
        f"{block.id} printed:\n{done.stdout}"
    )
    assert [p.name for p in workdir.iterdir()] == [block.test_module or "snippet.py"], f"{block.id} left files behind"


# commands ----------------------------------------------------------------------------------------

SHELL_LANGUAGES = {"bash", "console", "sh", "shell", "text"}


def _commands(page: Path) -> Iterator[tuple[str, str]]:
    """``(where, command line)`` for every ``orchestrate ...`` command named on ``page``."""
    text = page.read_text()
    for block in blocks(page):
        if block.language not in SHELL_LANGUAGES:
            continue
        for offset, line in enumerate(block.code.splitlines(), start=1):
            command = line.strip().removeprefix("$ ")
            command = re.sub(r"^\w+=\$\((.*)\)$", r"\1", command)  # RUN=$(orchestrate ...)
            if command.startswith("orchestrate "):
                yield f"{page.name}:{block.line + offset}", command
    prose = re.sub(r"^(`{3,}).*?^\1\s*$", "", text, flags=re.S | re.M)
    for span in re.findall(r"`(orchestrate [^`]+)`", prose):
        yield page.name, span


def _check_command(command: str) -> None:
    line = command.split(" #")[0].replace("…", "x").replace("|", " ")
    try:
        words = shlex.split(line)[1:]
    except ValueError:  # a quote left open by an elision: words are enough
        words = line.split()[1:]
    group: click.Command = cli
    path = ["orchestrate"]
    while words and isinstance(group, click.Group) and not words[0].startswith("-"):
        sub = group.get_command(click.Context(group), words[0])
        if sub is None:
            break  # an argument (RUN, ID...)
        group = sub
        path.append(words.pop(0))
    assert len(path) > 1, f"{command!r}: no such command"
    if isinstance(group, click.Group):
        return  # `orchestrate dlq list | show RUN | replay RUN` names several at once
    options = {opt for param in group.params for opt in (*param.opts, *param.secondary_opts)}
    options.add("--help")
    for word in words:
        option = word.split("=", 1)[0].strip("[]")
        if option.startswith("--"):
            assert option in options, f"{command!r}: `{' '.join(path)}` has no option {option}"


COMMANDS = [c for page in [*PAGES, README] for c in _commands(page)]


def test_every_command_in_the_docs_exists_with_the_options_it_names():
    assert len(COMMANDS) > 30
    for where, command in COMMANDS:
        try:
            _check_command(command)
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from None


# links -------------------------------------------------------------------------------------------


@functools.cache
def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of ``page``."""
    anchors: set[str] = set()
    counts: dict[str, int] = {}
    fenced = False
    for line in page.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
        if fenced or not line.startswith("#"):
            continue
        base = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        count = counts.get(base, 0)
        counts[base] = count + 1
        anchors.add(base if count == 0 else f"{base}-{count}")
    return anchors


@pytest.mark.parametrize("page", [*PAGES, README], ids=lambda p: p.name)
def test_relative_links_point_at_files_and_headings_that_exist(page: Path):
    text = re.sub(r"^(`{3,}).*?^\1\s*$", "", page.read_text(), flags=re.S | re.M)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: link to {target!r}, which does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{page.name}: link to {target!r}, a heading that does not exist"


def test_the_index_links_every_page():
    index = (DOCS / "index.md").read_text()
    linked = set(re.findall(r"\]\(([\w-]+\.md)\)", index))
    assert linked == {p.name for p in PAGES} - {"index.md"}


# the API reference -------------------------------------------------------------------------------


def _api_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_api_reference", ROOT / "scripts" / "api_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


def test_the_api_reference_is_up_to_date():
    for sdk in ("openai", "anthropic", "ollama", "numpy"):
        pytest.importorskip(sdk)  # the reference documents the providers: it imports them
    text, _ = _api_reference().render()
    assert (DOCS / "api.md").read_text() == text, "docs/api.md is out of date: run `python scripts/api_reference.py`"


def test_the_api_reference_documents_signatures_with_their_return_types():
    text = (DOCS / "api.md").read_text()
    assert "### orchestrate.Client" in text
    assert re.search(r"async def start\(\n(    .*\n)+\) -> str\n", text)
    assert re.search(r"async def run\(\n(    .*\n)+\) -> RunRecord\n", text)
    assert "**Raises:**" in text and "**Args:**" in text
    assert " at 0x" not in text  # no memory addresses: the page is the same on every machine
