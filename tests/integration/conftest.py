"""Integration fixtures (server and client come from tests/conftest.py): a server in a thread."""

from __future__ import annotations

import asyncio
import subprocess
import sys
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


def run_clean(script: str, server_url: str, *, timeout: float) -> str:
    """Run ``script`` in a fresh interpreter with ResourceWarnings as errors; its stdout.

    Fails on a non-zero exit or on anything on stderr that means a leak or a stray error.
    """
    proc = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-c", script, server_url],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    for bad in ("ResourceWarning", "Unclosed", "Exception ignored", "Traceback"):
        assert bad not in proc.stderr, proc.stderr
    return proc.stdout
