"""The cache step against the local server: every point counted in requests received."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import pytest

from anyapi_async import (
    APIError,
    AsyncClient,
    AsyncStream,
    ChatCompletion,
    ChatCompletionChunk,
    InternalServerError,
)
from anyapi_async._observe import CallContext, Observer
from anyapi_async.cache import MemoryCache
from anyapi_async.testing import ErrorResponse, Generated, JSONResponse, LocalServer

from .conftest import MESSAGES

T = TypeVar("T")
MODEL = "m1"


async def ask(client: AsyncClient, **params: Any) -> ChatCompletion:
    params.setdefault("model", MODEL)
    params.setdefault("messages", MESSAGES)
    completion: ChatCompletion = await client.chat.completions.create(**params)
    return completion


def hit(response: ChatCompletion | AsyncStream[Any]) -> bool:
    assert response.http is not None
    return response.http.cache_hit


async def stream_of(client: AsyncClient, **params: Any) -> AsyncStream[ChatCompletionChunk]:
    params.setdefault("model", MODEL)
    params.setdefault("messages", MESSAGES)
    stream: AsyncStream[ChatCompletionChunk] = await client.chat.completions.create(
        stream=True, **params
    )
    return stream


async def test_a_repeated_call_is_served_from_the_cache(
    cached: AsyncClient, server: LocalServer
) -> None:
    first = await ask(cached, max_tokens=5)
    second = await ask(cached, max_tokens=5)
    assert len(server.requests) == 1
    assert second.to_dict() == first.to_dict()
    assert second.choices[0].message.content == first.choices[0].message.content
    assert not hit(first)
    assert hit(second)
    assert second.http is not None
    assert second.http.attempts == 0
    assert second.http.headers["x-anyapi-cache"] == "hit"


@pytest.mark.parametrize(
    "change",
    [
        {"model": "m2"},
        {"messages": [{"role": "user", "content": "Say something else"}]},
        {"max_tokens": 6},
        {"temperature": 0.5},
        {"extra_body": {"top_k": 3}},
        {"extra_query": {"api-version": "2"}},
        {"seed": 1},
    ],
)
async def test_any_changed_field_misses(
    cached: AsyncClient, server: LocalServer, change: dict[str, Any]
) -> None:
    await ask(cached, max_tokens=5)
    await ask(cached, **{"max_tokens": 5, **change})
    assert len(server.requests) == 2
    await ask(cached, **{"max_tokens": 5, **change})
    assert len(server.requests) == 2


class DictCache:
    """A backend of the test's own over a dict it can share and look into."""

    def __init__(self, entries: dict[str, bytes], namespace: str = "") -> None:
        self.entries = entries
        self.namespace = namespace

    async def get(self, key: str) -> bytes | None:
        return self.entries.get(key)

    async def set(self, key: str, value: bytes) -> None:
        self.entries[key] = value

    async def aclose(self) -> None:
        pass


async def test_the_api_key_is_not_part_of_the_key_and_namespaces_separate(
    server: LocalServer,
) -> None:
    store: dict[str, bytes] = {}
    async with AsyncClient(api_key="sk-one", base_url=server.base_url,
                           cache=DictCache(store)) as a, \
            AsyncClient(api_key="sk-two", base_url=server.base_url,
                        cache=DictCache(store)) as b:
        await ask(a)
        await ask(b)
        assert len(server.requests) == 1
    assert not any(b"sk-one" in key.encode() or b"sk-one" in v for key, v in store.items())
    async with AsyncClient(base_url=server.base_url,
                           cache=DictCache(store, namespace="tenant-2")) as c:
        await ask(c)
        assert hit(await ask(c))
    assert len(server.requests) == 2 and len(store) == 2


async def test_cache_false_neither_reads_nor_writes(
    cached: AsyncClient, server: LocalServer, memory: MemoryCache
) -> None:
    await ask(cached, cache=False)
    assert len(memory) == 0
    await ask(cached)
    await ask(cached, cache=False)
    assert len(server.requests) == 3
    again = await ask(cached)
    assert hit(again) and len(server.requests) == 3


async def test_cache_refresh_writes_without_reading(
    cached: AsyncClient, server: LocalServer
) -> None:
    server.queue(JSONResponse(_completion("old")))
    assert (await ask(cached)).choices[0].message.content == "old"
    server.queue(JSONResponse(_completion("new")))
    refreshed = await ask(cached, cache="refresh")
    assert refreshed.choices[0].message.content == "new" and not hit(refreshed)
    assert (await ask(cached)).choices[0].message.content == "new"
    assert len(server.requests) == 2


async def test_a_bad_cache_value_is_refused_before_any_request(
    cached: AsyncClient, server: LocalServer
) -> None:
    with pytest.raises(ValueError, match="cache must be True, False or 'refresh'"):
        await ask(cached, cache="yes")
    assert server.requests == []
    with pytest.raises(TypeError, match="cache must be a cache backend"):
        AsyncClient(base_url=server.base_url, cache="memory")  # type: ignore[arg-type]


async def test_errors_are_never_stored(
    cached: AsyncClient, server: LocalServer, memory: MemoryCache
) -> None:
    server.queue(ErrorResponse(500), ErrorResponse(500), ErrorResponse(500))
    with pytest.raises(InternalServerError):
        await ask(cached)
    assert len(memory) == 0
    ok = await ask(cached)
    assert not hit(ok)
    assert len(server.requests) == 4


async def test_a_response_that_fails_validation_is_not_stored(
    cached: AsyncClient, server: LocalServer, memory: MemoryCache
) -> None:
    from anyapi_async import APIResponseValidationError

    server.queue(JSONResponse({"id": "x", "object": "chat.completion", "created": "soon"}))
    with pytest.raises(APIResponseValidationError):
        await ask(cached, max_retries=0)
    assert len(memory) == 0
    await ask(cached)
    assert len(server.requests) == 2


async def test_a_replayed_stream_is_the_same_stream_with_the_same_helpers(
    cached: AsyncClient, server: LocalServer
) -> None:
    params: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "max_tokens": 12,
                              "logprobs": True, "top_logprobs": 2}
    async with cached.chat.completions.stream(**params) as live:
        live_text = [t async for t in live.text_deltas()]
        live_final = await live.get_final_completion()
    async with cached.chat.completions.stream(**params) as replay:
        replay_text = [t async for t in replay.text_deltas()]
        replay_final = await replay.get_final_completion()
    assert len(server.requests) == 1
    assert replay_text == live_text and len(live_text) > 3
    assert replay_final.choices[0].message.content == live_final.choices[0].message.content
    assert msgspec.to_builtins(replay_final.choices[0].logprobs) == msgspec.to_builtins(
        live_final.choices[0].logprobs
    )
    stream = await stream_of(cached, **params)
    async with stream:
        chunks = [c async for c in stream]
    assert hit(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(
        live_text
    )
    assert len(server.requests) == 1


async def test_streams_and_bodies_are_separate_entries(
    cached: AsyncClient, server: LocalServer
) -> None:
    await ask(cached)
    stream = await stream_of(cached)
    async with stream:
        assert [c async for c in stream]
    assert not hit(stream)
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    "fault", [{"cut_after": 2}, {"error_after": 2}], ids=["cut", "error_event"]
)
async def test_cut_or_failed_streams_are_never_stored(
    cached: AsyncClient, server: LocalServer, memory: MemoryCache, fault: dict[str, Any]
) -> None:
    server.queue(Generated(**fault))
    stream = await stream_of(cached, max_tokens=10)
    with pytest.raises(APIError):
        async with stream:
            async for _ in stream:
                pass
    await cached.pipeline.cache.flush()  # type: ignore[union-attr]
    assert len(memory) == 0
    again = await stream_of(cached, max_tokens=10)
    async with again:
        assert [c async for c in again]
    assert not hit(again)
    assert len(server.requests) == 2


async def test_a_stream_stopped_early_is_not_stored(
    cached: AsyncClient, server: LocalServer, memory: MemoryCache
) -> None:
    stream = await stream_of(cached, max_tokens=20)
    async with stream:
        async for _ in stream:
            break
    await cached.pipeline.cache.flush()  # type: ignore[union-attr]
    assert len(memory) == 0


async def test_single_flight_sends_one_request_for_concurrent_identical_calls(
    cached: AsyncClient, server: LocalServer
) -> None:
    server.queue(Generated(first_byte_delay=0.2))
    results = await asyncio.gather(*(ask(cached, max_tokens=4) for _ in range(8)))
    assert len(server.requests) == 1
    assert len({r.choices[0].message.content for r in results}) == 1
    assert sum(hit(r) for r in results) == 7


async def test_single_flight_waiters_get_the_leaders_error(
    cached: AsyncClient, server: LocalServer
) -> None:
    server.queue(ErrorResponse(400, first_byte_delay=0.2))
    results = await asyncio.gather(
        *(ask(cached, max_tokens=4) for _ in range(5)), return_exceptions=True
    )
    assert len(server.requests) == 1
    assert all(type(r).__name__ == "BadRequestError" for r in results)
    assert (await ask(cached, max_tokens=4)).choices
    assert len(server.requests) == 2


async def test_single_flight_for_streams(cached: AsyncClient, server: LocalServer) -> None:
    server.queue(Generated(first_byte_delay=0.2))

    async def read() -> str:
        stream = await stream_of(cached, max_tokens=6)
        async with stream:
            return "".join([c.choices[0].delta.content or "" async for c in stream
                            if c.choices])

    texts = await asyncio.gather(*(read() for _ in range(6)))
    assert len(server.requests) == 1
    assert len(set(texts)) == 1 and texts[0]


async def test_hits_are_visible_to_observers(server: LocalServer) -> None:
    seen: list[str | None] = []

    class Watch(Observer):
        async def call(self, context: CallContext, send: Callable[[], Awaitable[T]]) -> T:
            result = await send()
            seen.append(context.cache)
            return result

    async with AsyncClient(base_url=server.base_url, cache=MemoryCache(),
                           hooks=[Watch()]) as client:
        await ask(client)
        await ask(client)
        await ask(client, cache=False)
        await ask(client, cache="refresh")
    assert seen == ["miss", "hit", "bypass", "refresh"]


async def test_get_requests_are_not_cached(cached: AsyncClient, server: LocalServer) -> None:
    await cached.models.list()
    await cached.models.list()
    assert len(server.requests) == 2


class Broken:
    """A backend that fails until ``fixed``."""

    def __init__(self) -> None:
        self.fixed = False
        self.store = MemoryCache()

    async def get(self, key: str) -> bytes | None:
        if not self.fixed:
            raise OSError("disk on fire")
        return await self.store.get(key)

    async def set(self, key: str, value: bytes) -> None:
        if not self.fixed:
            raise OSError("disk on fire")
        await self.store.set(key, value)

    async def aclose(self) -> None:
        pass


async def test_a_failing_backend_warns_once_and_calls_still_succeed(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    backend = Broken()
    caplog.set_level(logging.INFO, logger="anyapi_async")
    async with AsyncClient(base_url=server.base_url, cache=backend) as client:
        for _ in range(3):
            assert (await ask(client)).choices
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "disk on fire" in warnings[0].getMessage()
        assert len(server.requests) == 3
        backend.fixed = True
        await ask(client)
        assert hit(await ask(client))
        assert len(server.requests) == 4
        assert any("works again" in r.getMessage() for r in caplog.records)


async def test_an_undecodable_value_is_a_miss(server: LocalServer) -> None:
    store: dict[str, bytes] = {}
    async with AsyncClient(base_url=server.base_url, cache=DictCache(store)) as client:
        await ask(client)
        for key in store:
            store[key] = b"\x93garbage"
        second = await ask(client)
        assert not hit(second)
        assert len(server.requests) == 2
        assert hit(await ask(client))


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
    }


class Answer(msgspec.Struct):
    answer: int


async def test_a_reply_parse_refuses_is_not_stored(
    cached: AsyncClient, server: LocalServer, memory: MemoryCache
) -> None:
    from anyapi_async import ContentValidationError

    server.queue(JSONResponse(_completion('{"answer": "not a number"}')))
    with pytest.raises(ContentValidationError):
        await cached.chat.completions.parse(model=MODEL, messages=MESSAGES,
                                            response_format=Answer)
    assert len(memory) == 0
    server.queue(JSONResponse(_completion('{"answer": 42}')))
    first = await cached.chat.completions.parse(model=MODEL, messages=MESSAGES,
                                                response_format=Answer)
    again = await cached.chat.completions.parse(model=MODEL, messages=MESSAGES,
                                                response_format=Answer)
    assert first.choices[0].message.parsed == again.choices[0].message.parsed == Answer(42)
    assert hit(again)
    assert len(server.requests) == 2


async def test_waiters_of_a_stream_closed_early_send_their_own(
    cached: AsyncClient, server: LocalServer
) -> None:
    server.queue(Generated(first_byte_delay=0.2))

    async def leader() -> None:
        stream = await stream_of(cached, max_tokens=8)
        async with stream:
            async for _ in stream:
                break

    async def waiter() -> str:
        stream = await stream_of(cached, max_tokens=8)
        async with stream:
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert not hit(stream)
        return text

    _, text = await asyncio.gather(leader(), waiter())
    assert text
    assert len(server.requests) == 2
