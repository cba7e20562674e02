"""Router fixtures: three local servers that serve every model, and a client for each."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import anyapi_async
from anyapi_async.testing import ANY_MODEL, LocalServer

Servers = tuple[LocalServer, LocalServer, LocalServer]
Clients = tuple[anyapi_async.AsyncClient, anyapi_async.AsyncClient, anyapi_async.AsyncClient]


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    async with (
        LocalServer(models=ANY_MODEL) as a,
        LocalServer(models=ANY_MODEL) as b,
        LocalServer(models=ANY_MODEL) as c,
    ):
        yield a, b, c


@pytest.fixture
async def clients(servers: Servers) -> AsyncIterator[Clients]:
    # Clients with retries on: the router must still make one attempt per route.
    made = tuple(anyapi_async.AsyncClient(base_url=s.base_url, max_retries=3) for s in servers)
    try:
        yield made  # type: ignore[misc]
    finally:
        for client in made:
            await client.aclose()
