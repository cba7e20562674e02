"""Query strings: a base_url that carries one (Azure's api-version), default_query, extra_query."""

from __future__ import annotations

from typing import Any

import pytest

import anyapi_async as aa
from anyapi_async.testing import LocalServer

from ..conftest import API_KEY

MSGS: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("suffix", ["?api-version=2024-10-21", "/?api-version=2024-10-21"])
async def test_base_url_query_is_kept_on_every_request(server: LocalServer, suffix: str) -> None:
    """The query of base_url goes on every path, streaming or not, not into the path."""
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url + suffix) as client:
        assert client.default_query == {"api-version": "2024-10-21"}
        await client.chat.completions.create(model="m", messages=MSGS)
        async with await client.chat.completions.create(
            model="m", messages=MSGS, stream=True
        ) as stream:
            assert [c async for c in stream]
        await client.models.list()
        await client.models.retrieve("m")
    seen = [(r.method, r.path, r.query) for r in server.requests]
    query = {"api-version": "2024-10-21"}
    assert seen == [
        ("POST", "/v1/chat/completions", query),
        ("POST", "/v1/chat/completions", query),
        ("GET", "/v1/models", query),
        ("GET", "/v1/models/m", query),
    ]


async def test_default_query_merges_with_extra_query(server: LocalServer) -> None:
    """default_query adds to base_url's; extra_query adds, overrides, and None removes."""
    async with aa.AsyncClient(
        api_key=API_KEY,
        base_url=server.base_url + "?api-version=1",
        default_query={"tenant": "a b&c"},
    ) as client:
        await client.chat.completions.create(model="m", messages=MSGS)
        await client.chat.completions.create(
            model="m", messages=MSGS, extra_query={"api-version": "2", "trace": "on"}
        )
        await client.chat.completions.create(
            model="m", messages=MSGS, extra_query={"api-version": None, "tenant": None}
        )
        copy = client.with_options(default_query={"tenant": "b"})
        await copy.chat.completions.create(model="m", messages=MSGS)
        assert client.default_query == {"api-version": "1", "tenant": "a b&c"}
    assert [r.query for r in server.requests] == [
        {"api-version": "1", "tenant": "a b&c"},
        {"api-version": "2", "tenant": "a b&c", "trace": "on"},
        {},
        {"api-version": "1", "tenant": "b"},
    ]
    assert all(r.path == "/v1/chat/completions" for r in server.requests)


@pytest.mark.parametrize(
    ("query", "match"),
    [(["a"], "must be a dict of str, not list"), ({"n": 1}, "'n' maps to int")],
)
def test_default_query_must_map_str_to_str(query: Any, match: str) -> None:
    """A default_query that cannot be sent fails when the client is made."""
    with pytest.raises(TypeError, match=match):
        aa.AsyncClient(api_key="k", base_url="http://127.0.0.1:9/v1", default_query=query)
