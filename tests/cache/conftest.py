"""Fixtures of the cache tests: the local server, and a client with a cache in front of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from anyapi_async import AsyncClient, ChatCompletionMessageParam
from anyapi_async.cache import MemoryCache
from anyapi_async.testing import LocalServer

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say something"}]


@pytest.fixture
def memory() -> MemoryCache:
    return MemoryCache()


@pytest.fixture
async def cached(
    server: LocalServer, memory: MemoryCache, no_backoff: list[float]
) -> AsyncIterator[AsyncClient]:
    """A client of the local server with a MemoryCache."""
    async with AsyncClient(base_url=server.base_url, cache=memory) as c:
        yield c
