"""A cache hit is visible on the call's span: ``anyapi.cache.hit``."""

from __future__ import annotations

from typing import Any

import anyapi_async as aa
from anyapi_async.cache import MemoryCache
from anyapi_async.otel import instrument
from anyapi_async.testing import LocalServer

from .conftest import Telemetry, attrs_of

MSGS: list[Any] = [{"role": "user", "content": "hello"}]


async def test_spans_say_whether_the_cache_answered(
    server: LocalServer, telemetry: Telemetry
) -> None:
    async with aa.AsyncClient(base_url=server.base_url, cache=MemoryCache()) as client:
        instrument(client, **telemetry.providers())
        await client.chat.completions.create(model="m", messages=MSGS)
        await client.chat.completions.create(model="m", messages=MSGS)
        stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True)
        async with stream:
            assert [c async for c in stream]
        stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True)
        async with stream:
            replayed = [c async for c in stream]
    spans = telemetry.spans()
    assert [attrs_of(s)["anyapi.cache.hit"] for s in spans] == [False, True, False, True]
    assert attrs_of(spans[1])["anyapi.attempts"] == 0
    # The replayed stream's span is complete, as a live one's: response facts included.
    assert attrs_of(spans[3])["gen_ai.response.id"] == replayed[0].id
    assert len(server.requests) == 2


async def test_no_cache_no_attribute(otel_client: aa.AsyncClient, telemetry: Telemetry) -> None:
    await otel_client.chat.completions.create(model="m", messages=MSGS)
    assert "anyapi.cache.hit" not in attrs_of(telemetry.span())
