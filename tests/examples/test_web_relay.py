"""examples/web_relay.py end to end: SSE over HTTP, and a real headless Chromium reading it.

The browser test uses Debian's Chromium (``/usr/bin/chromium``) driven by Playwright, and
installs whichever is missing: ``pip install playwright`` (never ``playwright install``:
the system browser is used) and, as root, ``apt-get install -y chromium``. It is skipped,
saying why, only when they cannot be installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType

import aiohttp
import pytest
from aiohttp import web

from anyapi_async import AsyncClient
from anyapi_async.testing import ANY_MODEL, ErrorResponse, Generated, LocalServer

from ._run import EXAMPLES, example_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PROMPT = "Tell me about rivers"
#: Seconds between the server's tokens: enough to tell a live stream from a buffered one.
PACE = 0.01


def _run_quietly(*cmd: str) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(cmd, env=env, capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="session")
def chromium() -> Path:
    """/usr/bin/chromium with Playwright importable: installed when missing, else a skip."""
    if importlib.util.find_spec("playwright") is None:
        installed = _run_quietly(sys.executable, "-m", "pip", "install", "playwright>=1.45")
        importlib.invalidate_caches()
        if not installed or importlib.util.find_spec("playwright") is None:
            pytest.skip("the browser test needs Playwright, and `pip install playwright` failed")
    if not CHROMIUM.exists():
        apt = shutil.which("apt-get")
        if apt is None or os.geteuid() != 0:
            pytest.skip("the browser test needs /usr/bin/chromium: apt-get install chromium (root)")
        install = (apt, "install", "-y", "--no-install-recommends", "chromium")
        # A fresh machine may have no package lists yet: update once, then retry.
        if not _run_quietly(*install):
            _run_quietly(apt, "update")
            _run_quietly(*install)
        if not CHROMIUM.exists():
            pytest.skip("the browser test needs /usr/bin/chromium and apt-get could not install it")
    return CHROMIUM


async def start_relay(*args: str, **env: str) -> tuple[asyncio.subprocess.Process, str]:
    """Start the example on a free port; return the process and its URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / "web_relay.py"), "--port", "0", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=example_env(**env),
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("serving on http://127.0.0.1:"), line
    except BaseException:
        proc.kill()  # never leave a server behind a failed test
        await proc.wait()
        raise
    return proc, line.split()[-1]


async def stop(proc: asyncio.subprocess.Process) -> None:
    """Ctrl-C, as a user stops it: it must exit cleanly."""
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err


@pytest.fixture
async def relay(anyapi_server: LocalServer) -> AsyncIterator[str]:
    """The example relaying to ``anyapi_server`` (as it would to AnyAPI with a key)."""
    proc, url = await start_relay(ANYAPI_API_KEY="sk-test", ANYAPI_BASE_URL=anyapi_server.base_url)
    try:
        yield url
    finally:
        await stop(proc)


async def expected_text(prompt: str) -> str:
    """The local server's deterministic reply to ``prompt`` (same seed, any instance)."""
    async with (
        LocalServer(models=ANY_MODEL) as server,
        AsyncClient(api_key="sk-test", base_url=server.base_url) as client,
    ):
        c = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": prompt}], max_tokens=300
        )
    return c.choices[0].message.content or ""


async def read_sse(response: aiohttp.ClientResponse) -> list[tuple[str, object]]:
    events: list[tuple[str, object]] = []
    name, data = "message", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "":
            events.append((name, json.loads(data)))
            name, data = "message", ""
    return events


async def test_relay_local_serves_page_and_sse() -> None:
    """--local: the page loads, /chat streams message events then done, bad input is a 400."""
    proc, url = await start_relay("--local")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as page:
                assert page.status == 200
                html = await page.text()
                assert "new EventSource(" in html and 'id="prompt"' in html
            async with http.get(url + "chat", params={"prompt": PROMPT}) as response:
                assert response.headers["Content-Type"] == "text/event-stream"
                events = await read_sse(response)
            async with http.get(url + "chat") as bad:
                assert bad.status == 400
    finally:
        await stop(proc)
    messages = [data for name, data in events if name == "message"]
    assert len(messages) > 5
    assert "".join(map(str, messages)) == await expected_text(PROMPT)
    name, done = events[-1]
    assert name == "done" and isinstance(done, dict)
    assert done["finish_reason"] == "stop" and done["completion_tokens"] >= len(messages)


async def test_relay_reports_api_errors(relay: str, anyapi_server: LocalServer) -> None:
    """An API error becomes an apierror event instead of a broken stream."""
    anyapi_server.queue(ErrorResponse(400, "The prompt is not allowed."))
    async with (
        aiohttp.ClientSession() as http,
        http.get(relay + "chat", params={"prompt": "x"}) as response,
    ):
        events = await read_sse(response)
    assert events == [("apierror", {"message": "Error code: 400 - The prompt is not allowed."})]


async def test_relay_in_a_real_browser(
    chromium: Path, relay: str, anyapi_server: LocalServer
) -> None:
    """Headless Chromium receives the tokens one event at a time, in order, as they come."""
    # Installed by the chromium fixture when missing, so mypy may not find it.
    from playwright.async_api import async_playwright  # type: ignore[import-not-found,unused-ignore]

    expected = await expected_text(PROMPT)
    anyapi_server.set_default(Generated(pace=PACE))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page()
            await page.goto(relay)
            await page.fill("#prompt", PROMPT)
            await page.click("#send")
            await page.wait_for_function(
                "document.getElementById('status').textContent.startsWith('done')",
                timeout=30_000,
            )
            received = await page.evaluate("window.received")
            reply = await page.inner_text("#reply")
            status = await page.inner_text("#status")
        finally:
            await browser.close()
    texts = [text for _, text in received]
    times = [t for t, _ in received]
    assert len(texts) > 10
    assert "".join(texts) == expected
    assert reply.strip() == expected.strip()
    assert status == f"done: {len(texts)} tokens, stop"
    # Live, not buffered: the events spread over the time the server took to send them.
    assert times == sorted(times)
    assert times[-1] - times[0] > (len(texts) - 1) * PACE * 0.5
    body = anyapi_server.requests_for("/chat/completions")[-1].json
    assert body["messages"] == [{"role": "user", "content": PROMPT}]
    assert body["stream"] is True


def load_example(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """examples/NAME.py as a module (the examples import their sibling ``_common``)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered, as `python examples/NAME.py` has it: msgspec resolves the annotations of
    # its Structs through sys.modules.
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


async def leave_mid_stream(app: web.Application, path: str, params: dict[str, str]) -> None:
    """Serve ``app``, read one SSE line of ``path`` and close the connection, as a browser
    leaving does; the handler must then end normally (aiohttp logs a traceback otherwise)."""
    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    @web.middleware
    async def watch(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except BaseException as exc:
            outcome.set_result(exc)
            raise
        outcome.set_result(None)
        return response

    app.middlewares.append(watch)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as http:
            response = await http.get(f"http://127.0.0.1:{port}{path}", params=params)
            assert (await response.content.readline()).startswith((b"data: ", b"event: "))
            response.close()  # the browser leaves mid-stream
        assert await asyncio.wait_for(outcome, 30) is None
    finally:
        await runner.cleanup()


async def test_relay_is_quiet_when_the_browser_leaves(
    anyapi_server: LocalServer,
    anyapi_client: AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A browser closing mid-stream ends the handler normally: no traceback in the log."""
    anyapi_server.set_default(Generated(pace=PACE))
    app = load_example("web_relay", monkeypatch).create_app(anyapi_client, "m")
    with caplog.at_level(logging.ERROR):
        await leave_mid_stream(app, "/chat", {"prompt": PROMPT})
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
