"""client.chat.completions.batch against the local server: bounds, rates, 429s, order, cancel."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Mapping
from typing import Any

import pytest

import anyapi_async as aa
from anyapi_async._ratelimit import RateLimiter
from anyapi_async.testing import ErrorResponse, Generated, Hang, LocalServer

from ..conftest import API_KEY
from .conftest import FakeClock, batch_tasks, wait_until


def request(i: int, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": f"question {i}"}], **extra}


class StartTimes(aa.Hooks):
    """Records the fake clock's time at each HTTP attempt."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.times: list[float] = []

    def on_request(self, info: aa.AttemptInfo) -> None:
        self.times.append(self.clock.now)


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_in_flight_never_exceeds_concurrency(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """The server never sees more than `concurrency` requests at once, and does see that many."""
    server.set_default(Generated(first_byte_delay=0.05))
    async with client.chat.completions.batch((request(i) for i in range(40)), concurrency=5) as run:
        results = [r async for r in run]
    assert len(results) == 40 and all(r.ok for r in results)
    assert server.max_in_flight == 5
    assert len(server.requests) == 40


async def test_ordered_results_match_their_requests(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """ordered=True gives input order under shuffled latencies; each result is its request's."""
    delays = [i * 0.004 for i in range(20)]
    random.Random(7).shuffle(delays)
    server.queue(*(Generated(first_byte_delay=d) for d in delays))
    requests = [request(i, custom_id=f"q{i}") for i in range(20)]
    async with client.chat.completions.batch(requests, concurrency=20, ordered=True) as run:
        results = [r async for r in run]
    assert [r.index for r in results] == list(range(20))
    by_id = {rec.request_id: rec for rec in server.requests}
    for r in results:
        assert r.completion is not None and r.completion.http is not None
        sent = by_id[r.completion.http.request_id or ""].json
        assert sent["messages"][0]["content"] == f"question {r.index}"
        assert r.custom_id == f"q{r.index}" and "custom_id" not in sent
        assert r.latency > 0 and r.attempts == 1


async def test_unordered_results_come_as_they_finish(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """Without ordered=True the one slow request comes out last, whatever its index."""
    server.queue(Generated(first_byte_delay=0.3))
    async with client.chat.completions.batch([request(i) for i in range(6)], concurrency=6) as run:
        results = [r async for r in run]
    assert sorted(r.index for r in results) == list(range(6))
    assert results[-1].latency >= 0.3
    assert all(r.latency < 0.3 for r in results[:-1])


async def _collect(run: aa._batch.BatchRun) -> list[aa._batch.BatchResult]:
    async with run:
        return [r async for r in run]


async def test_a_429_burst_slows_the_job_and_it_completes(
    server: LocalServer, no_backoff: list[float], clock: FakeClock
) -> None:
    """Six 429s: all 30 items still succeed, after a pause and at a lower rate."""
    server.queue(*(ErrorResponse(429, headers={"Retry-After": "1"}) for _ in range(6)))
    limiter = RateLimiter(rpm=600, clock=clock, sleep=clock.sleep)  # 10 at once, then 10/s
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
        run = c.chat.completions.batch(
            (request(i) for i in range(30)), concurrency=6, limiter=limiter
        )
        results = await _collect(run)
    assert all(r.ok for r in results) and len(results) == 30
    assert sum(r.attempts for r in results) == 36 == len(server.requests)
    assert sorted(r.attempts for r in results)[-6:] == [2] * 6
    assert run.stats.rate_limited == 6 and limiter.rate_limited == 6
    assert 1.0 in clock.sleeps  # everyone paused for Retry-After
    # The window was switched on (halved from 6) and has been growing back since.
    assert math.isfinite(limiter.window) and limiter.factor < 1
    # Without 429s: 10 at once, then 20 at 10/s = 2 s. The pause alone would make it 3 s;
    # the halved rate (climbing back 1/60 per second) stretches the last 21 to about 4 s.
    assert clock.now > 2.0 + 1.0 + 1.0
    assert no_backoff == []  # 429s are not retried inside the client


async def test_rpm_holds_within_tolerance(server: LocalServer, clock: FakeClock) -> None:
    """rpm=1200 with a fake clock: 20 at once, then 20/s; no 1 s window above 40."""
    starts = StartTimes(clock)
    limiter = RateLimiter(rpm=1200, clock=clock, sleep=clock.sleep)
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url, hooks=[starts]) as c:
        results = await _collect(
            c.chat.completions.batch(
                (request(i) for i in range(100)), concurrency=16, limiter=limiter
            )
        )
    assert all(r.ok for r in results) and len(starts.times) == 100
    assert max(starts.times) == pytest.approx((100 - 20) / 20, abs=0.01)
    assert max_in_window(starts.times, 1.0) <= 20 + 20
    assert max_in_window(starts.times, 4.0) <= 20 + 80


async def test_tpm_holds_within_tolerance(server: LocalServer, clock: FakeClock) -> None:
    """tpm=6000 with a fake clock: the tokens the server reports stay within the budget."""
    starts = StartTimes(clock)
    limiter = RateLimiter(tpm=6000, clock=clock, sleep=clock.sleep)  # 100 tokens/s
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url, hooks=[starts]) as c:
        run = c.chat.completions.batch(
            (request(i, max_tokens=16) for i in range(60)), concurrency=8, limiter=limiter
        )
        results = await _collect(run)
    used = sum(
        r.completion.usage.total_tokens for r in results if r.completion and r.completion.usage
    )
    assert all(r.ok for r in results) and used > 0
    duration = max(starts.times)
    # The bucket (100 tokens) plus 100 tokens/s, with up to 8 estimates outstanding.
    allowed = 100 + 100 * duration + 8 * limiter.estimate(request(0, max_tokens=16))
    assert used <= allowed
    assert used >= 0.5 * 100 * duration  # and it did not crawl either


async def test_stop_on_error_stops_sending(client: aa.AsyncClient, server: LocalServer) -> None:
    """stop_on_error=True: the first failure raises and no later request is sent."""
    server.queue(Generated(), ErrorResponse(400, "bad item"))
    got: list[int] = []
    with pytest.raises(aa.BadRequestError, match="bad item"):
        async with client.chat.completions.batch(
            (request(i) for i in range(10)), concurrency=1, stop_on_error=True
        ) as run:
            async for r in run:
                got.append(r.index)
    assert got == [0] and len(server.requests) == 2


async def test_errors_are_results_with_attempts(
    client: aa.AsyncClient, server: LocalServer, no_backoff: list[float]
) -> None:
    """A 400 is a result; a 500 is retried by the client and its attempts counted."""
    server.queue(ErrorResponse(400), ErrorResponse(500), ErrorResponse(500))
    async with client.chat.completions.batch((request(i) for i in range(3)), concurrency=1) as run:
        results = [r async for r in run]
    assert isinstance(results[0].error, aa.BadRequestError) and results[0].attempts == 1
    assert results[1].ok and results[1].attempts == 3
    assert results[1].completion is not None and results[1].completion.http is not None
    assert results[1].completion.http.attempts == 3
    assert results[2].ok and len(no_backoff) == 2


@pytest.mark.parametrize(
    ("client_retries", "response", "attempts"),
    [
        (0, ErrorResponse(429), 1),  # max_retries=0: no retry, not even for 429
        (2, ErrorResponse(429, code="insufficient_quota"), 1),  # waiting cannot help
        (2, ErrorResponse(429, headers={"x-should-retry": "false"}), 1),
    ],
)
async def test_429_that_is_not_retried(
    server: LocalServer,
    no_backoff: list[float],
    client_retries: int,
    response: ErrorResponse,
    attempts: int,
) -> None:
    """Some 429s fail the item at once (but still slow the rest down)."""
    server.queue(response)
    async with aa.AsyncClient(
        api_key=API_KEY, base_url=server.base_url, max_retries=client_retries
    ) as c:
        run = c.chat.completions.batch([request(0)])
        [result] = await _collect(run)
    assert isinstance(result.error, aa.RateLimitError) and result.attempts == attempts
    assert run.limiter.rate_limited == 1 and len(server.requests) == 1


async def test_cancelling_releases_server_connections(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """A cancelled consumer cancels hung requests; the server sees them go."""
    server.set_default(Hang())
    run = client.chat.completions.batch((request(i) for i in range(100)), concurrency=4)
    consumer = asyncio.create_task(_collect(run))
    await wait_until(lambda: server.in_flight == 4)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert batch_tasks() == [] and run.stats.in_flight == 0
    await wait_until(lambda: server.in_flight == 0)
    assert len(server.requests) == 4


async def test_client_max_concurrency_also_bounds_a_batch(server: LocalServer) -> None:
    """AsyncClient(max_concurrency=3) caps a batch asking for 10."""
    server.set_default(Generated(first_byte_delay=0.03))
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url, max_concurrency=3) as c:
        results = await _collect(
            c.chat.completions.batch([request(i) for i in range(12)], concurrency=10)
        )
    assert all(r.ok for r in results) and server.max_in_flight == 3


async def test_openai_batch_lines_as_input(client: aa.AsyncClient, server: LocalServer) -> None:
    """{"custom_id", "body"} items are accepted: the body is sent, the id comes back."""
    items: list[Mapping[str, Any]] = [
        {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": request(0)},
        {"custom_id": "b", "body": request(1)},
    ]
    results = await _collect(client.chat.completions.batch(items, ordered=True))
    assert [r.custom_id for r in results] == ["a", "b"] and all(r.ok for r in results)
    sent = sorted(rec.json["messages"][0]["content"] for rec in server.requests)
    assert sent == ["question 0", "question 1"]
