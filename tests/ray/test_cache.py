"""The Ray stage with a response cache in Redis, shared by every actor: a rerun sends nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from anyapi_async.ray import ChatCompletions

from ..cache.redisproc import REDIS_MARKS, RedisServer, running_redis
from .conftest import RAY_MARKS, ThreadedServer
from .test_stage import body, run

pytestmark = [*RAY_MARKS, *REDIS_MARKS]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from running_redis(tmp_path)


def test_a_rerun_is_answered_from_the_shared_cache(
    ray_server: ThreadedServer, redis_server: RedisServer
) -> None:
    rows = [{"custom_id": f"r{i:02}", "body": body(i)} for i in range(16)]
    first = run(ray_server, rows, cache=redis_server.url)
    sent = len(ray_server.chat_requests())
    assert sent == 16
    second = run(ray_server, rows, cache=redis_server.url)
    assert len(ray_server.chat_requests()) == sent
    assert [r["response"] for r in second] == [r["response"] for r in first]
    assert all(r["error"] is None for r in second)


def test_a_bad_cache_is_refused_on_the_driver() -> None:
    with pytest.raises(ValueError, match="redis:// URL"):
        ChatCompletions(base_url="http://127.0.0.1:1/v1", cache=" ")
