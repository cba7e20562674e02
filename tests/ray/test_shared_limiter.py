"""The worker side of the cluster budget, against a recording stand-in for the actor."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from anyapi_async import CompletionUsage, RateLimitInfo
from anyapi_async.ray import LEASE_TTL, MAX_LEASE, _SharedLimiter

from .conftest import RAY_MARKS

pytestmark = RAY_MARKS


class _Method:
    def __init__(self, calls: list[tuple[str, tuple[Any, ...]]], name: str, result: Any) -> None:
        self._calls, self._name, self._result = calls, name, result

    def remote(self, *args: Any) -> Awaitable[Any]:
        self._calls.append((self._name, args))

        async def answer() -> Any:
            return self._result(*args) if callable(self._result) else self._result

        return answer()


class FakeBudget:
    """Records every call; a lease grants what was asked for (or ``grant``)."""

    def __init__(self, grant: Callable[..., int] | None = None) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.lease = _Method(self.calls, "lease", grant or (lambda n, cost, adjust: n))
        self.pause = _Method(self.calls, "pause", None)
        self.rate_limited = _Method(self.calls, "rate_limited", None)

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for called, args in self.calls if called == name]


def shared(budget: FakeBudget, rpm: float | None = None, tpm: float | None = None) -> Any:
    return _SharedLimiter(budget, "test", rpm, tpm)  # type: ignore[arg-type]


async def test_leases_come_in_blocks_of_a_tenth_of_a_second() -> None:
    """rpm=1200 (20/s): a lease holds 2 requests, so 6 requests take 3 round trips."""
    budget = FakeBudget()
    limiter = shared(budget, rpm=1200)
    for _ in range(6):
        await limiter.acquire()
        limiter.release()
    assert budget.named("lease") == [(2, 0.0, 0.0)] * 3


async def test_tpm_alone_leases_up_to_the_cap() -> None:
    """With only tpm a lease asks for MAX_LEASE requests at the request's estimated cost."""
    budget = FakeBudget(grant=lambda n, cost, adjust: 3)
    limiter = shared(budget, tpm=60_000)
    await limiter.acquire(100)
    assert budget.named("lease") == [(MAX_LEASE, 100.0, 0.0)]


async def test_usage_and_estimates_are_settled_on_the_next_lease() -> None:
    """Tokens used beyond what was leased (or fewer) travel with the next lease."""
    budget = FakeBudget(grant=lambda n, cost, adjust: 2)
    limiter = shared(budget, tpm=60_000)
    await limiter.acquire(100)  # leased 2 at 100 each
    limiter.release()
    await limiter.acquire(130)  # the second slot: 30 more than leased
    limiter.release()
    limiter.record_usage(100, CompletionUsage(prompt_tokens=20, completion_tokens=20))  # -60
    await limiter.acquire(100)  # a new lease settles +30 - 60
    (_, _, first), (_, _, second) = budget.named("lease")
    assert first == 0.0 and second == pytest.approx(-30.0)


async def test_a_429_drops_the_lease_and_tells_the_budget() -> None:
    """After a 429 the rest of the lease is not spent: the next request asks the budget."""
    budget = FakeBudget()
    limiter = shared(budget, rpm=6000)  # leases of 10
    await limiter.acquire()
    limiter.on_rate_limited(0.5)
    limiter.release(ok=False)
    await limiter.acquire()
    await asyncio.sleep(0)  # let the report go out
    assert len(budget.named("lease")) == 2
    assert budget.named("rate_limited") == [(0.5,)]
    assert limiter.rate_limited == 1


async def test_low_headers_are_reported_once_per_pause() -> None:
    """A nearly spent budget seen on many responses is one report, not one per response."""
    budget = FakeBudget()
    limiter = shared(budget, rpm=6000)
    low = RateLimitInfo({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"})
    for _ in range(5):
        limiter.observe(low)
    limiter.observe(RateLimitInfo({}))
    await asyncio.sleep(0)
    assert budget.named("pause") == [(2.0,)]


async def test_an_unspent_lease_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lease older than LEASE_TTL is dropped: a worker does not sit on others' budget."""
    budget = FakeBudget()
    limiter = shared(budget, rpm=6000)
    await limiter.acquire()
    limiter.release()
    loop = asyncio.get_running_loop()
    later = loop.time() + LEASE_TTL + 0.01
    monkeypatch.setattr(loop, "time", lambda: later)
    await limiter.acquire()
    assert len(budget.named("lease")) == 2
