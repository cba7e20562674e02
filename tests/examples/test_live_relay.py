"""examples/live_relay.py end to end: partial objects and tool events over SSE, in Chromium.

Uses the same headless Chromium set-up as the web relay's test (``chromium`` fixture).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from anyapi_async import AsyncClient
from anyapi_async.testing import ErrorResponse, Generated, LocalServer

from ..dx._grow import grows
from ._run import EXAMPLES, example_env
from .test_web_relay import (  # noqa: F401
    CHROMIUM_ARGS,
    chromium,
    leave_mid_stream,
    load_example,
    read_sse,
    stop,
)

PACE = 0.005
TEXT = "Ada Lovelace, ada@engines.example: call me about the Bernoulli program."
AGENT_PROMPT = "What does get_weather say for London?"


async def start_example(*args: str, **env: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / "live_relay.py"), "--port", "0", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=example_env(**env),
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("serving on http://127.0.0.1:"), line
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc, line.split()[-1]


@pytest.fixture
async def relay(anyapi_server: LocalServer) -> AsyncIterator[str]:
    """The example relaying to ``anyapi_server``."""
    proc, url = await start_example(
        ANYAPI_API_KEY="sk-test", ANYAPI_BASE_URL=anyapi_server.base_url
    )
    try:
        yield url
    finally:
        await stop(proc)


async def test_extract_streams_growing_snapshots_then_the_object(
    relay: str, anyapi_server: LocalServer
) -> None:
    """/extract sends snapshot events that only grow, then the validated object."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(relay + "extract", params={"text": TEXT}) as response,
    ):
        assert response.headers["Content-Type"] == "text/event-stream"
        events = await read_sse(response)
    snapshots = [data for name, data in events if name == "snapshot"]
    name, final = events[-1]
    assert name == "done" and isinstance(final, dict)
    assert len(snapshots) > 3
    for old, new in pairwise(snapshots):
        assert grows(old, new), (old, new)
    assert snapshots[-1] == final
    assert set(final) == {"name", "company", "email", "topics", "urgency", "summary"}
    body = anyapi_server.requests_for("/chat/completions")[-1].json
    assert body["response_format"]["json_schema"]["name"] == "Contact"


async def test_agent_streams_tool_events(relay: str, anyapi_server: LocalServer) -> None:
    """/agent sends the tool call, its result, the answer's text and done, in that order."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(relay + "agent", params={"prompt": AGENT_PROMPT}) as response,
    ):
        events = await read_sse(response)
    names = [name for name, _ in events]
    first_text = names.index("text")
    assert names[:2] == ["tool", "tool"] and names[-1] == "done"
    assert set(names[first_text:-1]) == {"text"}
    start, result = events[0][1], events[1][1]
    assert isinstance(start, dict) and isinstance(result, dict)
    assert start["phase"] == "start" and start["name"] == "get_weather"
    assert result["phase"] == "result" and '"sky":"clear"' in result["output"]
    assert events[-1][1] == {"rounds": 2}
    tool_message = anyapi_server.requests_for("/chat/completions")[-1].json["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["content"] == result["output"]


async def test_errors_become_apierror_events(relay: str, anyapi_server: LocalServer) -> None:
    """An API error and a reply that is not JSON end in an apierror event."""
    anyapi_server.queue(ErrorResponse(400, "The prompt is not allowed."))
    anyapi_server.queue(Generated(text="No JSON today."))
    async with aiohttp.ClientSession() as http:
        for expected in ("Error code: 400 - The prompt is not allowed.", "is not valid JSON"):
            async with http.get(relay + "extract", params={"text": "x"}) as response:
                events = await read_sse(response)
            assert [name for name, _ in events] == ["apierror"]
            message = events[0][1]
            assert isinstance(message, dict) and expected in message["message"]


async def test_live_objects_and_tool_events_in_a_real_browser(
    chromium: Path,  # noqa: F811
    relay: str,
    anyapi_server: LocalServer,
) -> None:
    """Headless Chromium renders snapshots as they arrive and the agent's tool events."""
    from playwright.async_api import async_playwright  # type: ignore[import-not-found,unused-ignore]

    anyapi_server.set_default(Generated(pace=PACE))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page()
            await page.goto(relay)
            await page.fill("#input", TEXT)
            await page.click("#extract")
            await page.wait_for_function(
                "document.getElementById('status').textContent.startsWith('done')",
                timeout=30_000,
            )
            received: list[Any] = await page.evaluate("window.snapshots")
            final: Any = await page.evaluate("window.final")
            shown = await page.inner_text("#object")

            await page.fill("#input", AGENT_PROMPT)
            await page.click("#agent")
            await page.wait_for_function(
                "document.getElementById('status').textContent.startsWith('done')",
                timeout=30_000,
            )
            log: list[Any] = await page.evaluate("window.log")
            answer = await page.inner_text("#answer")
            tools = await page.inner_text("#events")
        finally:
            await browser.close()
    times = [t for t, _ in received]
    snapshots = [s for _, s in received]
    assert len(snapshots) > 3
    for old, new in pairwise(snapshots):
        assert grows(old, new), (old, new)
    assert snapshots[-1] == final and msgspec.json.decode(shown) == final
    # Live, not buffered: the snapshots spread over the time the server took to send them.
    assert times == sorted(times) and times[-1] > times[0]
    kinds = [kind for kind, _ in log]
    assert kinds[:2] == ["tool", "tool"] and kinds[-1] == "done"
    text = "".join(data for kind, data in log if kind == "text")
    assert text and answer.strip() == text.strip()
    assert "get_weather(" in tools and "get_weather result:" in tools


@pytest.mark.parametrize(
    ("path", "params"), [("/extract", {"text": TEXT}), ("/agent", {"prompt": AGENT_PROMPT})]
)
async def test_live_relay_is_quiet_when_the_browser_leaves(
    path: str,
    params: dict[str, str],
    anyapi_server: LocalServer,
    anyapi_client: AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Both streams end their handler normally when the browser closes mid-stream."""
    anyapi_server.set_default(Generated(pace=PACE))
    app = load_example("live_relay", monkeypatch).create_app(anyapi_client, "m")
    with caplog.at_level(logging.ERROR):
        await leave_mid_stream(app, path, params)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
