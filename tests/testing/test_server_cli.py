"""``python -m anyapi_async.testing``: prints its base URL first, serves, stops cleanly."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

import aiohttp
import pytest

from anyapi_async.testing import ANY_MODEL, RESET_PATH, LocalServer
from anyapi_async.testing.__main__ import main

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


async def test_cli_bounds_and_reset() -> None:
    """--max-generation and the record bounds reach the server; POST /_anyapi/reset works."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "anyapi_async.testing",
        "--any-model",
        "--max-generation",
        "10",
        "--max-records",
        "2",
        "--max-record-body",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), STARTUP_TIMEOUT)
        remote = _At(line.decode().strip())
        async with aiohttp.ClientSession() as http:
            status, body = await chat(http, remote)
            assert status == 400 and "max_generation limit of 10 " in body["error"]["message"]
            assert (await chat(http, remote, max_tokens=10))[0] == 200
            root = remote.base_url.removesuffix("/v1")
            async with http.post(root + RESET_PATH) as resp:
                assert resp.status == 200 and (await resp.json())["reset"] is True
    finally:
        if proc.returncode is None:
            proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), STARTUP_TIMEOUT)
    assert proc.returncode == 0, err.decode()


@pytest.mark.parametrize(
    "argv",
    [["--max-records", "-1"], ["--max-record-body", "x"], ["--max-generation", "0"]],
)
def test_cli_refuses_bad_bounds(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A negative, zero or non-integer bound is a usage error naming the option."""
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert f"argument {argv[0]}: expected an integer" in capsys.readouterr().err


class _At:
    """Just enough of LocalServer for the chat() helper: a base URL."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
