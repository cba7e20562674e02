"""Helpers for the local server's own tests: a raw aiohttp session and SSE splitting."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import aiohttp
import pytest


class HasBaseURL(Protocol):
    """A LocalServer, or anything else with a base URL (a server in another process)."""

    @property
    def base_url(self) -> str: ...


USER: list[dict[str, Any]] = [{"role": "user", "content": "Tell me something nice"}]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session sending a Bearer key, so tests see the raw wire."""
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-raw"}) as session:
        yield session


async def chat(
    http: aiohttp.ClientSession, server: HasBaseURL, **body: Any
) -> tuple[int, dict[str, Any]]:
    """POST a non-streaming request; the status and the decoded JSON body."""
    body.setdefault("model", "m")
    body.setdefault("messages", USER)
    async with http.post(server.base_url + "/chat/completions", json=body) as resp:
        return resp.status, json.loads(await resp.read())


async def stream_events(
    http: aiohttp.ClientSession, server: HasBaseURL, **body: Any
) -> list[bytes]:
    """POST a streaming request; the raw events (each ``data: ...`` without the blank line)."""
    body.setdefault("model", "m")
    body.setdefault("messages", USER)
    body["stream"] = True
    async with http.post(server.base_url + "/chat/completions", json=body) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = await resp.read()
    assert raw.endswith(b"\n\n")
    return raw[:-2].split(b"\n\n")


def chunks_of(events: list[bytes]) -> list[dict[str, Any]]:
    """The JSON chunks of a stream that ends with ``data: [DONE]``."""
    assert events[-1] == b"data: [DONE]"
    assert all(e.startswith(b"data: ") and b"\n" not in e for e in events)
    return [json.loads(e[len(b"data: ") :]) for e in events[:-1]]


def streamed_text(chunks: list[dict[str, Any]], index: int = 0) -> str:
    """Choice ``index``'s content, joined from its deltas."""
    return "".join(
        c["delta"].get("content") or ""
        for chunk in chunks
        for c in chunk["choices"]
        if c["index"] == index
    )


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a state the server reaches on its own (bounded; never a fixed sleep)."""

    async def poll() -> None:
        # The server's counters offer no event to await, so poll them briefly.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout)
