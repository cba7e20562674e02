"""The pytest plugin's fixtures, as a user's test suite would use them."""

from __future__ import annotations

from typing import Any

import pytest

from anyapi_async import AsyncClient, RateLimitError
from anyapi_async.testing import ErrorResponse, LocalServer


@pytest.fixture
def anyapi_server_options() -> dict[str, Any]:
    """Overriding the options fixture configures the server."""
    return {"seed": 7, "model": "house-model"}


async def test_fixtures_give_a_server_and_a_client(
    anyapi_server: LocalServer, anyapi_client: AsyncClient
) -> None:
    """anyapi_client talks to anyapi_server with a masked key; options reach the server."""
    assert anyapi_server.seed == 7
    reply = await anyapi_client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 5
    seen = anyapi_server.requests[-1]
    assert seen.headers["Authorization"] == "Bearer ***"
    assert seen.json is not None and seen.json["max_tokens"] == 5
    models = await anyapi_client.models.list()
    assert [m.id for m in models.data] == ["house-model"]


async def test_client_fixture_does_not_retry(
    anyapi_server: LocalServer, anyapi_client: AsyncClient
) -> None:
    """The client fixture has max_retries=0, so a scripted error surfaces at once."""
    anyapi_server.queue(ErrorResponse(429, headers={"Retry-After": "0"}))
    with pytest.raises(RateLimitError):
        await anyapi_client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
    assert len(anyapi_server.requests) == 1
