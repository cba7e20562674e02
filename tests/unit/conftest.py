"""Unit tests never open sockets: ``client`` talks to the aioresponses-mocked endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import anyapi_async

from ..conftest import API_KEY, BASE_URL


@pytest.fixture
async def client(no_backoff: list[float]) -> AsyncIterator[anyapi_async.AsyncClient]:
    """A client pointed at the mocked base URL."""
    async with anyapi_async.AsyncClient(api_key=API_KEY, base_url=BASE_URL) as c:
        yield c
