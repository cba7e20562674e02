"""One rate budget for every actor, measured at the server; 429s and headers lower it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from anyapi_async.ray import BUDGET_NAMESPACE, RateBudget, _SharedLimiter
from anyapi_async.testing import ErrorResponse, Generated

from .conftest import RAY_MARKS, ThreadedServer
from .test_stage import body, run

pytestmark = RAY_MARKS

RPM = 1200  # 20 requests a second, a bucket of 20 (1 s of burst)


@pytest.fixture
def budget(ray_cluster: None) -> Iterator[str]:
    """A fresh budget actor name, removed after the test."""
    name = f"test-budget-{uuid.uuid4().hex[:8]}"
    yield name
    RateBudget.remove(name)


def stats(name: str) -> dict[str, Any]:
    result: dict[str, Any] = ray.get(RateBudget.get_or_create(name, rpm=RPM).stats.remote())
    return result


def most_in_window(samples: list[tuple[float, int]], seconds: float) -> int:
    """The most requests the server received within any ``seconds`` of the sampled run."""
    best = 0
    start = 0
    for t, count in samples:
        while samples[start][0] < t - seconds:
            start += 1
        best = max(best, count - samples[start][1])
    return best


def test_two_actors_share_one_rpm(ray_server: ThreadedServer, budget: str) -> None:
    """2 actors, rpm=1200 each configured: the server sees ~20 requests/s in all, not 40."""
    rows = [{"custom_id": f"r{i:03}", "body": body(i)} for i in range(120)]
    ray_server.start_sampling()
    out = run(ray_server, rows, actors=2, batch_size=10, concurrency=16, rpm=RPM, budget=budget)
    samples = ray_server.stop_sampling()
    assert all(r["status_code"] == 200 for r in out) and len(out) == 120
    assert stats(budget)["granted"] >= 120
    # After the first second's burst (20), any 2 s hold at most 40 (20/s), plus the few
    # requests leased but not yet sent and the sampling step; two budgets of their own
    # would allow 80.
    steady = [s for s in samples if s[1] >= 30]
    assert most_in_window(steady, 2.0) <= 52
    # And the actors did use the budget: well over half of it in the busiest second.
    assert most_in_window(steady, 1.0) >= 12


def test_a_429_anywhere_slows_the_whole_cluster(ray_server: ThreadedServer, budget: str) -> None:
    """A 429 met by one worker halves the shared rate; the refused row is retried and ends ok."""
    ray_server.queue(ErrorResponse(429, headers={"retry-after": "0.2"}))
    rows = [{"custom_id": f"r{i:02}", "body": body(i)} for i in range(10)]
    out = run(ray_server, rows, actors=2, batch_size=5, concurrency=4, rpm=RPM, budget=budget)
    assert all(r["status_code"] == 200 and r["error"] is None for r in out)
    assert sorted(r["attempts"] for r in out)[-1] == 2
    after = stats(budget)
    assert after["rate_limited"] == 1 and after["factor"] < 1.0


def test_low_remaining_header_pauses_the_budget(ray_server: ThreadedServer, budget: str) -> None:
    """x-ratelimit-remaining near 0 seen by a worker is reported to the shared budget."""
    low = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "200ms"}
    ray_server.queue(Generated(headers=low))
    rows = [{"custom_id": f"r{i:02}", "body": body(i)} for i in range(6)]
    out = run(ray_server, rows, actors=1, batch_size=6, concurrency=2, rpm=RPM, budget=budget)
    assert all(r["status_code"] == 200 for r in out)
    assert stats(budget)["pauses"] == 1


def test_get_or_create_finds_the_running_budget(budget: str) -> None:
    """The same name gives the same actor, reconfigured; remove ends it."""
    first = RateBudget.get_or_create(budget, rpm=600)
    RateBudget.get_or_create(budget, rpm=RPM, tpm=10_000)
    assert ray.get(first.stats.remote())["rpm"] == RPM
    assert RateBudget.remove(budget) is True
    assert RateBudget.remove(budget) is False


async def test_a_lost_budget_is_found_again(budget: str) -> None:
    """A worker whose budget actor is gone starts (or finds) it again and carries on."""
    handle = RateBudget.get_or_create(budget, rpm=6000)
    limiter = _SharedLimiter(handle, budget, 6000, None)
    await limiter.acquire()
    limiter.release()
    assert RateBudget.remove(budget) is True
    deadline = time.monotonic() + 30
    while True:  # ray.kill is asynchronous: wait until the name is free
        try:
            ray.get_actor(budget, namespace=BUDGET_NAMESPACE)
        except ValueError:
            break
        assert time.monotonic() < deadline, "the budget actor did not end"
        await asyncio.sleep(0.05)
    for _ in range(limiter_block(limiter) + 1):  # past the lease held before the loss
        await limiter.acquire()
        limiter.release()
    stats_now: dict[str, Any] = await ray.get_actor(
        budget, namespace=BUDGET_NAMESPACE
    ).stats.remote()
    assert stats_now["granted"] >= 1 and stats_now["rpm"] == 6000


def limiter_block(limiter: _SharedLimiter) -> int:
    return limiter.block
