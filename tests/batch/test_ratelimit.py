"""RateLimiter maths on a fake clock: buckets, usage correction, 429 adaptation, headers."""

from __future__ import annotations

import ast
import asyncio
import math
from pathlib import Path
from typing import Any

import pytest

import anyapi_async
from anyapi_async import CompletionUsage, RateLimitInfo
from anyapi_async._ratelimit import (
    DEFAULT_COMPLETION_TOKENS,
    MEDIA_PART_TOKENS,
    MESSAGE_OVERHEAD_TOKENS,
    RECOVERY_SECONDS,
    LeasedLimiter,
    Limiter,
    RateLimiter,
    RateState,
    SharedBudget,
    estimate_tokens,
    low_budget_hold,
)

from .conftest import FakeClock


def limiter(clock: FakeClock, **kwargs: Any) -> RateLimiter:
    return RateLimiter(clock=clock, sleep=clock.sleep, **kwargs)


def max_in_window(times: list[float], window: float) -> int:
    """The most events inside any half-open interval of length ``window``."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_rpm_bucket_paces_after_the_burst(clock: FakeClock) -> None:
    """rpm=600: 10 at once (1 s of burst), then one every 0.1 s."""
    rl = limiter(clock, rpm=600)
    times = []
    for _ in range(100):
        await rl.acquire()
        rl.release()
        times.append(clock.now)
    assert times[:10] == [0.0] * 10
    assert times[-1] == pytest.approx(9.0)
    assert max_in_window(times, 60.0) <= 600 + 10
    assert max_in_window(times[10:], 1.0) <= 11


async def test_concurrent_acquirers_share_the_rate_in_fifo_order(clock: FakeClock) -> None:
    """Tasks acquiring at once are served in arrival order at the configured rate."""
    rl = limiter(clock, rpm=120, burst=1.0)  # 2/s, bucket of 2
    order: list[tuple[int, float]] = []

    async def one(i: int) -> None:
        await rl.acquire()
        order.append((i, clock.now))
        rl.release()

    await asyncio.gather(*(one(i) for i in range(10)))
    assert [i for i, _ in order] == list(range(10))
    assert order[-1][1] == pytest.approx(4.0)  # 8 after the burst of 2, at 0.5 s each


async def test_tpm_counts_tokens_and_usage_refunds_them(clock: FakeClock) -> None:
    """tpm=6000 (100 tokens/s): estimates pace requests; usage gives back what was unused."""
    rl = limiter(clock, tpm=6000)
    for _ in range(3):
        await rl.acquire(100)
        rl.release()
    assert clock.now == pytest.approx(2.0)  # first from the full bucket, then 1 s each
    usage = CompletionUsage(prompt_tokens=5, completion_tokens=5, total_tokens=10)
    rl.record_usage(100, usage)  # 90 tokens back: the next one barely waits
    await rl.acquire(100)
    assert clock.now == pytest.approx(2.1)


async def test_request_larger_than_the_bucket_goes_and_leaves_debt(clock: FakeClock) -> None:
    """A request above capacity is not stuck forever; the average rate still holds."""
    rl = limiter(clock, tpm=600)  # 10 tokens/s, bucket of 10
    await rl.acquire(50)  # full bucket: goes at once, 40 in debt
    assert clock.now == 0.0
    await rl.acquire(10)
    assert clock.now == pytest.approx(5.0)  # debt repaid, then 10 more


async def test_429_pauses_everyone_and_halves_the_rate(clock: FakeClock) -> None:
    """One 429: a pause of the server's delay, factor halved, then a linear climb back."""
    rl = limiter(clock, rpm=600)
    await rl.acquire()
    rl.on_rate_limited(2.0)
    rl.release(ok=False)
    assert rl.factor == 0.5
    await rl.acquire()
    assert clock.now == pytest.approx(2.0)
    rl.release()
    assert rl.requests_per_minute == pytest.approx(300.0)
    clock.now += RECOVERY_SECONDS / 2
    assert rl.factor == pytest.approx(1.0)
    assert rl.rate_limited == 1


async def test_a_burst_of_429s_counts_once(clock: FakeClock) -> None:
    """The 429s answered before the pause ends belong to one burst: one cut, not eight."""
    rl = limiter(clock, rpm=6000)
    for _ in range(8):
        await rl.acquire()
    for _ in range(8):
        rl.on_rate_limited(1.0)
        rl.release(ok=False)
    assert rl.factor == 0.5
    assert rl.window == 4.0  # half of the 8 that were in flight
    assert rl.rate_limited == 8


async def test_window_bounds_in_flight_after_429_and_grows_back(clock: FakeClock) -> None:
    """After a 429 at 8 in flight only 4 may be; successes widen the window again."""
    rl = limiter(clock)
    for _ in range(8):
        await rl.acquire()
    rl.on_rate_limited(0.5)
    for _ in range(8):
        rl.release(ok=False)
    for _ in range(4):
        await rl.acquire()
    fifth = asyncio.ensure_future(rl.acquire())
    await asyncio.sleep(0)
    assert not fifth.done() and rl.in_flight == 4
    rl.release()  # a success: the slot frees and the window widens by 1/4
    await fifth
    assert rl.window == pytest.approx(4.25)
    for _ in range(4):
        rl.release()
    assert rl.in_flight == 0


async def test_window_without_budgets_needs_no_headers(clock: FakeClock) -> None:
    """No rpm/tpm: before any 429 nothing waits; a 429 alone turns on the window."""
    rl = limiter(clock)
    for _ in range(50):
        await rl.acquire()
    assert clock.now == 0.0 and math.isinf(rl.window)
    rl.on_rate_limited(0.0)
    assert rl.window == 25.0


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "3s"}, 3.0),
        (
            {
                "x-ratelimit-limit-requests": "1000",
                "x-ratelimit-remaining-requests": "9",
                "x-ratelimit-reset-requests": "1s",
            },
            0.1,
        ),
        (
            {
                "x-ratelimit-limit-requests": "1000",
                "x-ratelimit-remaining-requests": "900",
                "x-ratelimit-reset-requests": "1s",
            },
            0.0,
        ),
        ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "2s"}, 2.0),
        ({"x-ratelimit-remaining-requests": "0"}, 0.0),  # no reset time: nothing to pace by
    ],
)
async def test_headers_spread_a_nearly_spent_budget(
    clock: FakeClock, headers: dict[str, str], wait: float
) -> None:
    """Remaining at or below 5 % of the limit: wait reset / (remaining + 1) before the next."""
    rl = limiter(clock)
    rl.observe(RateLimitInfo(headers))
    await rl.acquire()
    assert clock.now == pytest.approx(wait)


async def test_not_adaptive_ignores_429_and_headers(clock: FakeClock) -> None:
    """adaptive=False: only the configured budgets apply."""
    rl = limiter(clock, adaptive=False)
    rl.observe(
        RateLimitInfo({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "9s"})
    )
    rl.on_rate_limited(5.0)
    await rl.acquire()
    assert clock.now == 0.0 and rl.rate_limited == 1 and math.isinf(rl.window)


async def test_instant_sleep_keeps_the_accounting(no_backoff: list[float]) -> None:
    """With the retry sleep made instant and a real clock, waits are asked for, not spun on."""
    rl = RateLimiter(rpm=60)  # 1/s, bucket of 1; default sleep is the retry layer's
    for _ in range(4):
        await rl.acquire()
        rl.release()
    assert no_backoff == [pytest.approx(1.0, abs=0.05)] * 3
    assert rl.waited == pytest.approx(3.0, abs=0.1)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"messages": [{"role": "user", "content": "x" * 400}]}, 100 + 4 + 256),
        (
            {"messages": [{"role": "user", "content": "abcd"}], "max_tokens": 10, "n": 3},
            1 + MESSAGE_OVERHEAD_TOKENS + 30,
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "y" * 40},
                            {"type": "image_url", "image_url": {"url": "data:..."}},
                        ],
                    }
                ],
                "max_completion_tokens": 0,
            },
            10 + MESSAGE_OVERHEAD_TOKENS + MEDIA_PART_TOKENS + DEFAULT_COMPLETION_TOKENS,
        ),
        ({"messages": "not a list"}, DEFAULT_COMPLETION_TOKENS),
    ],
)
def test_estimate_tokens(params: dict[str, Any], expected: int) -> None:
    """chars/4 + framing + media + max_tokens (or the default) times n."""
    assert estimate_tokens(params) == expected


async def test_estimate_learns_completion_size_from_usage(clock: FakeClock) -> None:
    """Without max_tokens the completion part of the estimate follows observed usage."""
    rl = limiter(clock, tpm=1_000_000)
    params = {"messages": [{"role": "user", "content": "hi"}]}
    before = rl.estimate(params)
    for _ in range(100):
        rl.record_usage(before, CompletionUsage(prompt_tokens=5, completion_tokens=6))
    assert rl.estimate(params) < before - 200


@pytest.mark.parametrize("kwargs", [{"rpm": 0}, {"tpm": -1}, {"rpm": True}, {"burst": 0}])
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    """Budgets and burst must be positive numbers."""
    with pytest.raises(ValueError, match="must be"):
        RateLimiter(**kwargs)


def test_rate_state_is_the_limiter_without_waiting() -> None:
    """RateState (what the cluster budget holds) paces, pauses and halves on time passed in."""
    state = RateState(rpm=600, now=0.0)  # 10/s, a bucket of 10
    for _ in range(10):
        assert state.wait_time(0.0, 0) <= 0
        state.take(0)
    assert state.wait_time(0.0, 0) == pytest.approx(0.1)
    assert state.on_rate_limited(1.0, 2.0) is True  # a new burst: factor halved
    assert state.on_rate_limited(1.5, 2.0) is False  # the same burst
    assert state.factor(3.0) == 0.5 and state.rate_limited == 2
    assert state.wait_time(3.0, 0) == pytest.approx(0.5)  # paused until 3.5


def test_rate_state_configure_keeps_the_level() -> None:
    """A budget changed in place keeps what was spent, capped to the new bucket."""
    state = RateState(rpm=600, now=0.0)
    for _ in range(10):
        state.take(0)
    state.configure(60, 6000, now=0.0)  # 1/s: the empty bucket stays empty
    assert state.wait_time(0.0, 0) == pytest.approx(1.0)
    assert state.tokens is not None and state.tpm == 6000
    state.configure(None, None, now=0.0)
    assert state.wait_time(0.0, 10**9) <= 0


def test_low_budget_hold_matches_the_limiter() -> None:
    """The pure hold is what observe() pauses for."""
    info = RateLimitInfo(
        {
            "x-ratelimit-limit-requests": "1000",
            "x-ratelimit-remaining-requests": "9",
            "x-ratelimit-reset-requests": "1s",
        }
    )
    assert low_budget_hold(info) == pytest.approx(0.1)
    assert low_budget_hold(RateLimitInfo({})) == 0.0


def test_rate_limiter_is_a_limiter() -> None:
    """The local limiter satisfies the interface the batch runner takes."""
    assert isinstance(RateLimiter(), Limiter)


# --- the shared budget and its leases (what anyapi_async.ray carries over Ray) ---------------


async def test_shared_budget_grants_what_the_bucket_holds_then_waits(clock: FakeClock) -> None:
    """rpm=600 (a bucket of 10): a lease of 64 gets 10; the next waits 0.1 s for one more."""
    budget = SharedBudget(rpm=600, clock=clock, sleep=clock.sleep)
    assert await budget.lease(64, 0.0, 0.0) == 10
    assert await budget.lease(64, 0.0, 0.0) == 1
    assert clock.sleeps == [pytest.approx(0.1)]
    assert budget.stats()["granted"] == 11


async def test_shared_budget_settles_tokens_and_hears_429s(clock: FakeClock) -> None:
    """A lease's adjust charges the tokens bucket; a 429 pauses and halves for everyone."""
    budget = SharedBudget(tpm=6000, clock=clock, sleep=clock.sleep)  # 100 tokens/s, 100 at once
    assert await budget.lease(64, 10.0, 0.0) == 10
    # 50 tokens more were used than leased: the bucket is at -50, so 10 more take 0.6 s.
    assert await budget.lease(64, 10.0, 50.0) == 1
    assert clock.sleeps == [pytest.approx(0.6)]
    budget.rate_limited(2.0)
    budget.pause(0.5)
    stats = budget.stats()
    assert stats["rate_limited"] == 1 and stats["pauses"] == 1
    assert stats["factor"] == pytest.approx(0.5) and stats["paused_for"] == pytest.approx(2.0)


class RecordingSource:
    """A `BudgetSource` that grants what is asked for and records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[float, ...]]] = []

    async def lease(self, requests: int, cost: float, adjust: float) -> int:
        self.calls.append(("lease", (requests, cost, adjust)))
        return requests

    def pause(self, hold: float) -> None:
        self.calls.append(("pause", (hold,)))

    def rate_limited(self, delay: float) -> None:
        self.calls.append(("rate_limited", (delay,)))


async def test_leased_limiter_spends_blocks_and_reports_429s() -> None:
    """Leases come in blocks; a 429 drops the rest of the lease and reaches the budget."""
    source = RecordingSource()
    limiter = LeasedLimiter(source, tpm=None, block=3, ttl=60.0, report_slack=0.05)
    assert isinstance(limiter, Limiter) and not limiter.limits_tokens
    for _ in range(4):
        await limiter.acquire()
        limiter.release()
    limiter.on_rate_limited(0.5)
    await limiter.acquire()
    assert source.calls == [
        ("lease", (3, 0.0, 0.0)),
        ("lease", (3, 0.0, 0.0)),
        ("rate_limited", (0.5,)),
        ("lease", (3, 0.0, 0.0)),
    ]
    assert limiter.rate_limited == 1


def test_ray_uses_only_the_declared_interface() -> None:
    """anyapi_async.ray takes from _ratelimit the shared-budget interface, no internals."""
    path = Path(anyapi_async.__file__).parent / "ray.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "_ratelimit"
        for alias in node.names
    }
    assert imported == {
        "DEFAULT_BURST_SECONDS",
        "LeasedLimiter",
        "Limiter",
        "RateLimiter",
        "SharedBudget",
        "check_budgets",
    }
