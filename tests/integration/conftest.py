"""Integration fixtures: the library's own local server on 127.0.0.1 and a client for it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

import anyapi_async as aa
from anyapi_async.testing import LocalServer

from ..conftest import API_KEY


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    """A running local chat-completions server."""
    async with LocalServer() as s:
        yield s


@pytest.fixture
async def client(server: LocalServer, no_backoff: list[float]) -> AsyncIterator[aa.AsyncClient]:
    """A client for the local server, with instant retry waits."""
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
        yield c


@pytest.fixture
def server_url() -> Iterator[str]:
    """A local server on its own loop in a thread, for tests that run their own loops."""
    loop = asyncio.new_event_loop()
    srv = LocalServer()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(srv.start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(srv.aclose())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10), "local server did not start"
    yield srv.base_url
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
