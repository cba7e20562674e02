"""RedisCache against a real ``redis-server`` the tests start on a free loopback port."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from anyapi_async import AsyncClient, ChatCompletion
from anyapi_async.cache import RedisCache
from anyapi_async.testing import LocalServer

from .conftest import MESSAGES
from .redisproc import REDIS_MARKS, RedisServer, running_redis

pytestmark = REDIS_MARKS


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from running_redis(tmp_path)


async def ask(client: AsyncClient) -> ChatCompletion:
    completion: ChatCompletion = await client.chat.completions.create(
        model="m1", messages=MESSAGES
    )
    return completion


def hit(completion: ChatCompletion) -> bool:
    assert completion.http is not None
    return completion.http.cache_hit


async def test_two_clients_share_entries_through_redis(
    server: LocalServer, redis_server: RedisServer
) -> None:
    async with AsyncClient(base_url=server.base_url, cache=RedisCache(redis_server.url)) as a:
        first = await ask(a)
    async with AsyncClient(base_url=server.base_url, cache=RedisCache(redis_server.url)) as b:
        second = await ask(b)
        stream = await b.chat.completions.create(model="m1", messages=MESSAGES, stream=True)
        async with stream:
            live = [c.to_dict() async for c in stream]
        stream = await b.chat.completions.create(model="m1", messages=MESSAGES, stream=True)
        async with stream:
            replayed = [c.to_dict() async for c in stream]
    assert hit(second) and second.to_dict() == first.to_dict()
    assert replayed == live and stream.http.cache_hit
    assert len(server.requests) == 2


async def test_ttl_is_set_on_each_entry(server: LocalServer, redis_server: RedisServer) -> None:
    cache = RedisCache(redis_server.url, ttl=60)
    async with AsyncClient(base_url=server.base_url, cache=cache) as client:
        await ask(client)
    import redis.asyncio

    r = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        keys = await r.keys("anyapi:*")
        assert len(keys) == 1
        assert 0 < await r.pttl(keys[0]) <= 60_000
    finally:
        await r.aclose()


async def test_redis_stopped_mid_run_warns_once_and_recovers(
    server: LocalServer, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="anyapi_async")
    cache = RedisCache(redis_server.url, retry_interval=0)
    async with AsyncClient(base_url=server.base_url, cache=cache) as client:
        await ask(client)
        assert hit(await ask(client))
        redis_server.stop()
        for _ in range(3):
            completion = await client.chat.completions.create(
                model="m1", messages=[{"role": "user", "content": "new"}]
            )
            assert not hit(completion)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "RedisCache" in warnings[0].getMessage()
        assert len(server.requests) == 4
        redis_server.start()  # empty again: no persistence
        await ask(client)
        assert hit(await ask(client))
    assert len(server.requests) == 5


async def test_unreachable_redis_from_the_start_never_fails_a_call(
    server: LocalServer, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.WARNING, logger="anyapi_async")
    nobody = RedisServer(tmp_path)  # a free port nothing listens on
    async with AsyncClient(base_url=server.base_url, cache=RedisCache(nobody.url)) as client:
        for _ in range(2):
            assert (await ask(client)).choices
    assert len(server.requests) == 2
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_the_url_is_checked_and_never_shows_a_password() -> None:
    with pytest.raises(ValueError, match="redis://"):
        RedisCache("http://example")
    assert "secret" not in repr(RedisCache("redis://user:secret@127.0.0.1:1/0"))
