"""Shared fixtures: the local server and a client for it, a mocked endpoint, instant retries.

tests/unit/conftest.py points ``client`` at the mocked endpoint instead.
"""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import aioresponses.core as aioresponses_core
import pytest
from aioresponses import aioresponses

import anyapi_async
from anyapi_async.testing import ANY_MODEL, LocalServer, instant_retries

BASE_URL = "https://api.test/v1"
#: Each error status and the class it raises (API.md's table, plus 402).
STATUS_CLASSES: list[tuple[int, type[anyapi_async.APIStatusError]]] = [
    (400, anyapi_async.BadRequestError),
    (401, anyapi_async.AuthenticationError),
    (402, anyapi_async.PaymentRequiredError),
    (403, anyapi_async.PermissionDeniedError),
    (404, anyapi_async.NotFoundError),
    (409, anyapi_async.ConflictError),
    (422, anyapi_async.UnprocessableEntityError),
    (429, anyapi_async.RateLimitError),
    (500, anyapi_async.InternalServerError),
    (502, anyapi_async.InternalServerError),
    (503, anyapi_async.InternalServerError),
]
API_KEY = "sk-test-SECRET-key-0123456789"


def completion_body(content: str | None = "x", **message: Any) -> dict[str, Any]:
    """A minimal ``chat.completion`` body with one finished choice."""
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": "stop",
            }
        ],
    }


def chunk_body(
    content: str | None = None, finish: str | None = None, index: int = 0, **extra: Any
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` event with one choice's content delta (and finish reason)."""
    delta = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
        **extra,
    }


class _CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds ClientResponse without ``stream_writer``, which aiohttp 3.14
    requires (aioresponses issue #289). Supplying a writer stub keeps the mocks working on
    the newest aiohttp, so the suite needs no aiohttp pin."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", types.SimpleNamespace(output_size=0))
        super().__init__(*args, **kwargs)


aioresponses_core.ClientResponse = _CompatResponse  # type: ignore[attr-defined]


@pytest.fixture
def no_backoff() -> Iterator[list[float]]:
    """Make retry waits instant (the public switch); the list records each wait asked for."""
    with instant_retries() as waits:
        yield waits


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    """aioresponses for request-shape and error-mapping unit tests (no sockets)."""
    with aioresponses() as m:
        yield m


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    """The library's own local chat-completions server on 127.0.0.1, serving any model."""
    async with LocalServer(models=ANY_MODEL) as s:
        yield s


@pytest.fixture
async def client(
    server: LocalServer, no_backoff: list[float]
) -> AsyncIterator[anyapi_async.AsyncClient]:
    """A client for the local server (default retries), with instant retry waits."""
    async with anyapi_async.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
        yield c
