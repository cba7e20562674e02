"""``python -m anyapi_async.testing``: prints its base URL first, serves, stops cleanly."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

import aiohttp
import pytest

from anyapi_async.testing import ANY_MODEL, LocalServer

from .conftest import chat

STARTUP_TIMEOUT = 20.0


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
async def test_cli_serves_until_signalled(stop: signal.Signals) -> None:
    """The first stdout line is the base URL; it answers like LocalServer; a signal exits 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "anyapi_async.testing",
        "--port",
        "0",
        "--seed",
        "3",
        "--any-model",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), STARTUP_TIMEOUT)
        base_url = line.decode().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer k"}) as http:
            remote = _At(base_url)
            status, reply = await chat(http, remote)
            async with LocalServer(seed=3, models=ANY_MODEL) as local:
                _, same = await chat(http, local)
        assert status == 200
        assert reply["choices"][0]["message"] == same["choices"][0]["message"]
    finally:
        if proc.returncode is None:
            proc.send_signal(stop)
        _, err = await asyncio.wait_for(proc.communicate(), STARTUP_TIMEOUT)
    assert proc.returncode == 0, err.decode()


async def test_cli_port_in_use_fails_with_one_line() -> None:
    """A port that cannot be bound ends with status 1 and a one-line message."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "anyapi_async.testing",
            "--port",
            str(port),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), STARTUP_TIMEOUT)
    assert proc.returncode == 1 and out == b""
    assert err.decode().startswith(f"error: cannot serve on 127.0.0.1:{port}")


class _At:
    """Just enough of LocalServer for the chat() helper: a base URL."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
