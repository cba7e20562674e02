"""Every ```python block of README.md and docs/*.md runs, against the library's local server.

How a block is run (the conventions for writing the docs):

- **Scripts.** A page's blocks run in order in one namespace, like a doctest: a later
  snippet may use what an earlier one on the same page defined. Top-level ``await``,
  ``async with`` and ``async for`` work (as in ``python -m asyncio``); a page's snippets
  share one event loop, and a block calling ``asyncio.run()`` runs outside it. Each page
  starts with what docs/getting-started.md says the snippets assume: ``client``, an
  ``AsyncClient()``, and ``msgs``, a list of messages (and ``asyncio`` imported).
- **pytest modules.** A block defining ``test_`` functions is a test file: all of them run
  in one pytest subprocess, in a directory with an empty pytest configuration (so pytest-asyncio's
  default strict mode: an example must mark its async tests itself, as a reader's project
  without ``asyncio_mode = "auto"`` would need).
- **Fragments.** ``<!-- fragment: REASON -->`` on the line before the opening fence (blank
  lines between are allowed) marks a block that cannot run here, REASON saying why (a real
  cloud endpoint, a Ray cluster, a server that runs until interrupted). A fragment is still
  compiled, so it must be valid Python. Mark only what truly cannot run.

Environment: ``ANYAPI_BASE_URL`` and ``OPENAI_BASE_URL`` point at one `LocalServer` serving
every model id, with fake keys, so the examples' ``AsyncClient()`` (and ``AsyncOpenAI()``)
talk to it; nothing leaves 127.0.0.1. A failure names the page and the block's line, and
tracebacks show the page's own line numbers.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from anyapi_async import AsyncClient
from anyapi_async.testing import ANY_MODEL, LocalServer

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>\s*)```python\s*$")
FRAGMENT = re.compile(r"^\s*<!--\s*fragment:(?P<reason>.*?)-->\s*$")
#: What every page's snippets may assume (docs/getting-started.md says so).
MSGS = [{"role": "user", "content": "Hello!"}]
FAKE_KEY = "sk-docs-test"


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository
    line: int  # the opening fence's line (1-based)
    code: str
    fragment: str | None  # the marker's reason

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def is_test_module(self) -> bool:
        return re.search(r"^(async )?def test_", self.code, re.MULTILINE) is not None

    def compile(self) -> Any:
        # Blank lines first, so tracebacks give the page's line numbers.
        source = "\n" * self.line + self.code
        # dont_inherit: the docs' code must not get this module's `from __future__ import
        # annotations` (pydantic could not resolve a snippet's models' string annotations).
        return compile(
            source, self.page, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
        )


def blocks_of(path: Path) -> list[Block]:
    """The ```python blocks of a page, dedented (a block may sit in a tab or admonition)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = path.relative_to(ROOT).as_posix()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, start = match["indent"], i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            assert not lines[i].strip() or lines[i].startswith(indent), (
                f"{page}:{i + 1}: a line of the block is less indented than its fence"
            )
            body.append(lines[i][len(indent) :])
            i += 1
        assert i < len(lines), f"{page}:{start + 1}: the block is never closed"
        j = start - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        marker = FRAGMENT.match(lines[j]) if j >= 0 else None
        reason = marker["reason"].strip() if marker else None
        assert reason != "", f"{page}:{j + 1}: a fragment marker must say why"
        found.append(Block(page, start + 1, "\n".join(body) + "\n", reason))
        i += 1
    return found


BLOCKS = {path.relative_to(ROOT).as_posix(): blocks_of(path) for path in PAGES}


def test_the_pages_have_blocks() -> None:
    """The extraction finds blocks (a broken pattern would make every other test vacuous)."""
    assert len(BLOCKS["README.md"]) >= 1
    assert sum(len(blocks) for blocks in BLOCKS.values()) >= 40
    assert any(b.fragment for blocks in BLOCKS.values() for b in blocks)


def test_python_blocks_say_python() -> None:
    """A block fenced as ``py``, ``python3`` or ``pycon`` would escape these tests."""
    other = re.compile(r"^\s*```\s*(py|python3|pycon|python\s+\S.*)\s*$")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in PAGES
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if other.match(line)
    ]
    assert found == [], "fence these blocks as ```python"


@pytest.mark.parametrize("block", [b for bs in BLOCKS.values() for b in bs if b.fragment])
def test_fragments_are_valid_python(block: Block) -> None:
    """A fragment cannot run here, but it must still be valid Python."""
    try:
        block.compile()
    except SyntaxError as exc:
        pytest.fail(f"{block.where}: fragment ({block.fragment}) is not valid Python: {exc}")


class ServerThread:
    """One `LocalServer` serving any model id, on its own loop in a thread.

    The pages' snippets run on other loops (their own, or ``asyncio.run``'s), so the server
    must not live on any of them.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = LocalServer(models=ANY_MODEL)

    def __enter__(self) -> LocalServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(30)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.aclose(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture(scope="module")
def docs_server() -> Iterator[LocalServer]:
    with ServerThread() as server:
        yield server


@pytest.fixture
def docs_env(docs_server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment the snippets see: the local server, fake keys, no developer settings."""
    for name in list(os.environ):
        if name.startswith(("ANYAPI_", "OPENAI_")):
            monkeypatch.delenv(name)
    env = {
        "ANYAPI_BASE_URL": docs_server.base_url,
        "ANYAPI_API_KEY": FAKE_KEY,
        "OPENAI_BASE_URL": docs_server.base_url,
        "OPENAI_API_KEY": FAKE_KEY,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def tools_page_calls_tools(namespace: dict[str, Any]) -> None:
    # The prompt names the tools, so the local server calls them and the output shows it.
    assert [call.name for call in namespace["result"].tool_calls] == ["get_weather", "add"]


#: Checks run after a page's first block containing the text: that it showed what it says.
CHECKS: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {
    "docs/tools.md": ("result = await client.chat.completions.run_tools(", tools_page_calls_tools),
}


def run_page(blocks: list[Block], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a page's script blocks in order in one namespace and one loop; close the clients."""
    clients: list[AsyncClient] = []
    checked: list[str] = []
    init = AsyncClient.__init__

    def recording_init(self: AsyncClient, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        clients.append(self)

    # The snippets' clients are closed at the end of the page (a snippet shows one call,
    # not the shutdown of the client it uses).
    monkeypatch.setattr(AsyncClient, "__init__", recording_init)
    loop = asyncio.new_event_loop()
    namespace: dict[str, Any] = {"__name__": "__docs__", "asyncio": asyncio}
    try:
        namespace["client"] = AsyncClient()
        namespace["msgs"] = [dict(m) for m in MSGS]
        for block in blocks:
            try:
                code = block.compile()
                result = eval(code, namespace)  # the docs' own code
                if code.co_flags & inspect.CO_COROUTINE:
                    loop.run_until_complete(result)
            except Exception:
                pytest.fail(f"{block.where}: the block fails:\n{traceback.format_exc()}")
            marker, check = CHECKS.get(block.page, ("", None))
            if check is not None and marker in block.code and not checked:
                check(namespace)
                checked.append(block.where)
    finally:
        for client in clients:
            loop.run_until_complete(client.aclose())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    if blocks and blocks[0].page in CHECKS:
        assert checked, f"{blocks[0].page}: no block holds the checked code any more"


SCRIPT_PAGES = {
    page: [b for b in blocks if not b.fragment and not b.is_test_module]
    for page, blocks in BLOCKS.items()
}


@pytest.mark.parametrize("page", [page for page, blocks in SCRIPT_PAGES.items() if blocks])
def test_page_examples_run(
    page: str, docs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each page's snippets run, in order, against the local server (files land in a tmp dir)."""
    monkeypatch.chdir(tmp_path)
    run_page(SCRIPT_PAGES[page], monkeypatch)


TEST_BLOCKS = [b for bs in BLOCKS.values() for b in bs if not b.fragment and b.is_test_module]


def test_pytest_examples_pass(docs_env: dict[str, str], tmp_path: Path) -> None:
    """The docs' example test files pass under pytest with pytest's default configuration."""
    assert TEST_BLOCKS, "the docs show example tests (docs/testing.md)"
    names = {}
    for block in TEST_BLOCKS:
        name = "test_" + re.sub(r"\W", "_", block.where) + ".py"
        # Blank lines first, so pytest's report gives the page's line numbers.
        (tmp_path / name).write_text("\n" * block.line + block.code, encoding="utf-8")
        names[name] = block.where
    # An empty configuration: no asyncio_mode from this repository's pyproject.toml.
    ini = "[pytest]\nfilterwarnings = error\nasyncio_default_fixture_loop_scope = function\n"
    (tmp_path / "pytest.ini").write_text(ini, encoding="utf-8")
    # Only the plugins the examples use (loading every installed one costs seconds).
    plugins = ["-p", "pytest_asyncio.plugin", "-p", "anyapi_async.testing.pytest_plugin"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugins, str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, **docs_env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = proc.stdout + proc.stderr
    for name, where in names.items():
        report = report.replace(name, f"{name} ({where})")
    assert proc.returncode == 0, report
    assert "skipped" not in report and " passed" in report, report
