"""Integration fixtures (server and client come from tests/conftest.py): a server in a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from anyapi_async.testing import ANY_MODEL, LocalServer


@pytest.fixture
def server_url() -> Iterator[str]:
    """A local server on its own loop in a thread, for tests that run their own loops."""
    loop = asyncio.new_event_loop()
    srv = LocalServer(models=ANY_MODEL)
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
