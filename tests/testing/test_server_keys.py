"""API keys: none needed by default (as the client sends none to a loopback URL), or required."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import aiohttp
import pytest

from anyapi_async import AsyncClient, AuthenticationError
from anyapi_async.testing import ANY_MODEL, LocalServer

from .conftest import USER, chat

STARTUP_TIMEOUT = 20.0


async def ask(client: AsyncClient) -> str:
    reply = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Tell me something nice"}]
    )
    return reply.choices[0].message.content or ""


async def test_client_without_a_key_gets_a_completion(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's promise: a loopback URL needs no key, and the local server agrees."""
    monkeypatch.delenv("ANYAPI_API_KEY", raising=False)
    async with (
        LocalServer(models=ANY_MODEL) as server,
        AsyncClient(base_url=server.base_url, max_retries=0) as client,
    ):
        assert await ask(client)
        models = await client.models.list()
    assert [m.id for m in models.data] == ["anyapi-local"]
    assert all("Authorization" not in r.headers for r in server.requests)
    assert server.require_key is False


async def test_require_key_answers_401_to_a_client_without_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """require_key=True: no key is a 401 (AuthenticationError); any Bearer key passes."""
    monkeypatch.delenv("ANYAPI_API_KEY", raising=False)
    async with LocalServer(require_key=True, models=ANY_MODEL) as server:
        assert server.require_key is True
        async with AsyncClient(base_url=server.base_url, max_retries=0) as client:
            with pytest.raises(AuthenticationError, match="API key"):
                await ask(client)
        async with AsyncClient(api_key="anything", base_url=server.base_url) as client:
            assert await ask(client)


async def test_require_a_specific_key(http: aiohttp.ClientSession) -> None:
    """require_key="sk-..." accepts that key only; the error never shows the key."""
    async with LocalServer(require_key="sk-right", models=ANY_MODEL) as server:
        status, body = await chat(http, server)  # `http` sends "Bearer sk-raw"
        assert status == 401
        assert body["error"]["code"] == "invalid_api_key"
        assert "sk-raw" not in str(body) and "sk-right" not in str(body)
        async with AsyncClient(api_key="sk-right", base_url=server.base_url) as client:
            assert await ask(client)
        async with AsyncClient(api_key="sk-wrong", base_url=server.base_url) as client:
            with pytest.raises(AuthenticationError) as caught:
                await ask(client)
        assert caught.value.status_code == 401


@pytest.mark.parametrize(
    ("value", "error"),
    [("", ValueError), ("  ", ValueError), (1, TypeError), (None, TypeError)],
)
def test_bad_require_key_is_refused(value: Any, error: type[Exception]) -> None:
    """require_key takes a bool or a non-empty key."""
    with pytest.raises(error, match="require_key"):
        LocalServer(require_key=value)


@pytest.mark.parametrize("required", [False, True])
async def test_cli_require_key(required: bool) -> None:
    """python -m anyapi_async.testing needs no key unless started with --require-key."""
    flags = ["--require-key"] if required else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "anyapi_async.testing",
        "--any-model",
        *flags,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), STARTUP_TIMEOUT)
        url = line.decode().strip() + "/chat/completions"
        async with aiohttp.ClientSession() as bare:
            async with bare.post(url, json={"model": "m", "messages": USER}) as resp:
                assert resp.status == (401 if required else 200)
            headers = {"Authorization": "Bearer k"}
            async with bare.post(
                url, json={"model": "m", "messages": USER}, headers=headers
            ) as resp:
                assert resp.status == 200
    finally:
        if proc.returncode is None:
            proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), STARTUP_TIMEOUT)
    assert proc.returncode == 0, err.decode()
