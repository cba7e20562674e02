"""client.post/get request shape and error mapping, against aioresponses (no sockets)."""

from __future__ import annotations

import json

import msgspec
import pytest
from aioresponses import aioresponses
from yarl import URL

import anyapi_async as aa

from ..conftest import API_KEY, BASE_URL, STATUS_CLASSES, completion_body


class Item(msgspec.Struct):
    name: str
    size: int = 0


async def test_post_shape_headers_query_and_idempotency(
    client: aa.AsyncClient, mocked: aioresponses
) -> None:
    """post() sends the client's headers plus the call's, its query, and an idempotency key."""
    url = f"{BASE_URL}/files?purpose=batch"
    mocked.post(url, payload={"id": "f1"})
    got = await client.post(
        "/files",
        body=Item(name="a"),
        cast_to=dict,
        extra_headers={"X-Extra": "1", "User-Agent": None},
        extra_query={"purpose": "batch"},
        idempotency_key="key-1",
    )
    assert got == {"id": "f1"}
    call = mocked.requests[("POST", URL(url))][0]
    headers = call.kwargs["headers"]
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert headers["X-Extra"] == "1" and "User-Agent" not in headers
    assert headers["Idempotency-Key"] == "key-1"
    assert headers["Accept"] == "application/json"
    assert json.loads(call.kwargs["data"]) == {"name": "a", "size": 0}


async def test_get_sends_no_body(client: aa.AsyncClient, mocked: aioresponses) -> None:
    """get() sends no body and decodes into the Struct asked for."""
    mocked.get(f"{BASE_URL}/things/x", payload={"name": "x", "size": 3, "other": True})
    item = await client.get("things/x", cast_to=Item)
    assert item == Item(name="x", size=3)
    call = mocked.requests[("GET", URL(f"{BASE_URL}/things/x"))][0]
    assert call.kwargs["data"] is None


@pytest.mark.parametrize(("status", "cls"), STATUS_CLASSES)
async def test_post_maps_each_status(
    client: aa.AsyncClient, mocked: aioresponses, status: int, cls: type[aa.APIStatusError]
) -> None:
    """Every error status raises the class create() raises for it."""
    mocked.post(
        f"{BASE_URL}/x",
        status=status,
        payload={"error": {"message": f"m{status}"}},
        repeat=True,
    )
    with pytest.raises(cls, match=f"m{status}"):
        await client.post("/x", body={}, cast_to=bytes, max_retries=0)


async def test_post_bytes_body_goes_out_unchanged(
    client: aa.AsyncClient, mocked: aioresponses
) -> None:
    """A bytes body is sent byte for byte (not re-encoded)."""
    mocked.post(f"{BASE_URL}/chat/completions", payload=completion_body())
    raw = b'{"model": "m",   "messages": []}'
    await client.post("/chat/completions", body=raw, cast_to=aa.ChatCompletion)
    call = mocked.requests[("POST", URL(f"{BASE_URL}/chat/completions"))][0]
    assert call.kwargs["data"] == raw
