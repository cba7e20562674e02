"""The public testing switch: `instant_retries()` and `set_instant_retries()`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import anyapi_async as aa
from anyapi_async import _waits
from anyapi_async.testing import (
    ErrorResponse,
    LocalServer,
    instant_retries,
    set_instant_retries,
)

from ..conftest import API_KEY

MSGS: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture
def switch_off_after() -> Iterator[None]:
    """Whatever a test does to the process-wide switch, it is off afterwards."""
    yield
    set_instant_retries(False)


async def test_block_records_the_server_retry_after(server: LocalServer) -> None:
    """Inside the block a 429 with Retry-After is retried at once; the wait is recorded."""
    server.queue(
        ErrorResponse(429, headers={"Retry-After": "30"}),
        ErrorResponse(503, headers={"retry-after-ms": "1500"}),
    )
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as client:
        with instant_retries() as waits:
            c = await client.chat.completions.create(model="m", messages=MSGS)
    assert c.http is not None and c.http.attempts == 3
    assert waits == [30.0, 1.5]
    assert not _waits.is_instant()


async def test_blocks_nest_and_the_rate_limiter_follows() -> None:
    """Nested blocks each record; RateLimiter's default sleep is the same switch."""
    limiter = aa.RateLimiter(rpm=60)  # one request a second, a bucket of one
    with instant_retries() as outer:
        await limiter.acquire()
        limiter.release()
        with instant_retries() as inner:
            await limiter.acquire()
            limiter.release()
        assert _waits.is_instant()
    assert not _waits.is_instant()
    assert inner == [pytest.approx(1.0, abs=0.05)]
    assert outer == inner


def test_process_wide_switch(switch_off_after: None) -> None:
    """set_instant_retries(True) stays on until turned off, and records nothing."""
    assert not _waits.is_instant()
    set_instant_retries()
    assert _waits.is_instant()
    with instant_retries() as waits:
        pass
    assert _waits.is_instant() and waits == []
    set_instant_retries(False)
    assert not _waits.is_instant()


async def test_docs_example_gives_up_after_two_retries(server: LocalServer) -> None:
    """docs/testing.md's example: three 503s, two recorded waits, then the error."""
    server.queue(*[ErrorResponse(503, headers={"Retry-After": "20"})] * 3)
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url, max_retries=0) as c:
        client = c.with_options(max_retries=2)
        with instant_retries() as waits, pytest.raises(aa.InternalServerError) as info:
            await client.chat.completions.create(model="m", messages=MSGS)
    assert waits == [20.0, 20.0]
    assert info.value.attempts == 3
