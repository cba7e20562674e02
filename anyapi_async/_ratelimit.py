"""Client-side rate limiting: token buckets for RPM and TPM, adapted to what the server says.

Each budget is a token bucket (https://en.wikipedia.org/wiki/Token_bucket):

```text
rate     = per_minute / 60 * factor          # tokens added per second
capacity = max(1, per_minute / 60 * burst)    # at most `burst` seconds' worth at once
```

A request takes 1 from the requests bucket and its estimated token count from the tokens
bucket. A request larger than the whole bucket may go once the bucket is full and leaves
it in debt, so the average rate holds whatever the request sizes. Waiters are served in
arrival order.

Adaptation, so a job runs near the highest rate the account allows without a 429 storm:

- A 429 pauses every request for the server's ``Retry-After`` (or the backoff delay),
  halves ``factor`` (which then climbs back linearly to 1 within `RECOVERY_SECONDS`), and
  halves the *window*, the number of requests allowed in flight, from what was in flight
  when the 429 came. Each success widens the window by ``1 / window``, so it grows by about
  one per window of successes (AIMD, as TCP congestion control does). The window needs no
  configured budget and no time measurement, so it works for servers that send no headers.
  The 429s of one burst (those answered before the pause ends) count once.
- ``x-ratelimit-remaining-*`` at or below `LOW_BUDGET_FRACTION` of the limit spreads what
  is left until ``x-ratelimit-reset-*``: the next request waits ``reset / (remaining + 1)``.

The pieces: `RateState` holds the buckets, the factor and the pause, with no waiting and
no I/O (time is passed in); `InFlightWindow` is the AIMD window; `RateLimiter` puts both
behind the `Limiter` interface the batch runner uses, for one process. Every
`Limiter.acquire` must be paired with a `Limiter.release` once the request has its answer.

A budget shared by several processes is two declared pieces, so that an integration
(``anyapi_async.ray``) only carries calls between them: `SharedBudget`, the one budget
(what a Ray actor holds), which grants requests in blocks (`SharedBudget.lease`) and hears
about 429s and low headers; and `LeasedLimiter`, the `Limiter` each worker uses, which
spends its blocks locally and talks to the budget through a `BudgetSource` (the actor's
handle, wrapped).

The limiter keeps its own notion of time, ``max(clock(), start + waited)``, so a sleep that
returns early (a test's instant sleep, a fake clock) still counts as the time it was asked
for and the accounting stays right.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from . import _waits

if TYPE_CHECKING:
    from ._meta import RateLimitInfo
    from ._types import CompletionUsage

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_BURST_SECONDS",
    "DEFAULT_COMPLETION_TOKENS",
    "BudgetSource",
    "InFlightWindow",
    "LeasedLimiter",
    "Limiter",
    "RateLimiter",
    "RateState",
    "SharedBudget",
    "check_budgets",
    "estimate_tokens",
    "low_budget_hold",
]

#: Seconds of budget a bucket may spend at once (OpenAI enforces per-minute limits over
#: short slices too, so a minute's worth at once would meet 429s).
DEFAULT_BURST_SECONDS: Final = 1.0
#: The usual rule of thumb for English text with GPT-style tokenizers.
CHARS_PER_TOKEN: Final = 4
#: Tokens counted for each message's framing (role, separators).
MESSAGE_OVERHEAD_TOKENS: Final = 4
#: Tokens counted for an image, audio or file part (text-free parts are priced per item).
MEDIA_PART_TOKENS: Final = 256
#: Completion tokens assumed when the request sets no ``max_tokens``, until usage tells.
DEFAULT_COMPLETION_TOKENS: Final = 256
#: Weight of the newest sample in the running averages learned from responses.
LEARNING_WEIGHT: Final = 0.1
#: Lowest ``factor`` repeated 429s can push a configured rate to.
MIN_RATE_FACTOR: Final = 1 / 32
#: Seconds for ``factor`` to climb from 0 back to 1 after a 429.
RECOVERY_SECONDS: Final = 60.0
#: Remaining budget, as a fraction of the limit, below which requests are spread out.
LOW_BUDGET_FRACTION: Final = 0.05

_TOLERANCE: Final = 1e-9

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def _text_chars(content: object) -> tuple[int, int]:
    """Characters of text and the number of media parts in a message's ``content``."""
    if isinstance(content, str):
        return len(content), 0
    chars = media = 0
    if isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text")
                if isinstance(text, str):
                    chars += len(text)
                else:
                    media += 1
    return chars, media


def estimate_tokens(
    params: Mapping[str, Any], *, completion_tokens: int = DEFAULT_COMPLETION_TOKENS
) -> int:
    """A cheap upper-ish estimate of the tokens a chat request will use.

    Prompt: text characters / `CHARS_PER_TOKEN`, plus framing per message and a flat
    `MEDIA_PART_TOKENS` per image, audio or file part; tool definitions and tool-call
    arguments count by their length. Completion: ``max_completion_tokens`` or
    ``max_tokens`` when set (servers reserve that much), else ``completion_tokens``; times
    ``n``. No tokenizer is loaded: the estimate is corrected from ``usage`` afterwards.
    """
    chars = 0
    tokens = 0
    messages = params.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, Mapping):
                continue
            text, media = _text_chars(message.get("content"))
            chars += text
            tokens += MESSAGE_OVERHEAD_TOKENS + media * MEDIA_PART_TOKENS
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(function, Mapping):
                    chars += len(str(function.get("name", ""))) + len(
                        str(function.get("arguments", ""))
                    )
    tools = params.get("tools")
    if tools:
        # repr is close enough to the JSON length and never fails.
        chars += len(repr(tools))
    out = params.get("max_completion_tokens") or params.get("max_tokens")
    if isinstance(out, bool) or not isinstance(out, int) or out < 0:
        out = completion_tokens
    n = params.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        n = 1
    return math.ceil(chars / CHARS_PER_TOKEN) + tokens + out * n


class _Bucket:
    """One token bucket; ``level`` may go negative (debt) after an oversized take."""

    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, per_minute: float, burst: float, now: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst)
        self.level = self.capacity
        self.stamp = now

    def refill(self, now: float, factor: float) -> None:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate * factor)
            self.stamp = now

    def wait(self, cost: float, factor: float) -> float:
        """Seconds until ``cost`` may be taken (after `refill`)."""
        need = min(cost, self.capacity)
        # The tolerance stops float residue (a wait of 1e-17 s that cannot move a clock at
        # 5.0) from looping forever.
        if self.level >= need - _TOLERANCE:
            return 0.0
        return (need - self.level) / (self.rate * factor)


def check_budgets(rpm: float | None, tpm: float | None, burst: float) -> None:
    """Refuse budgets that are not positive numbers (``None`` means no budget)."""
    for name, value in (("rpm", rpm), ("tpm", tpm)):
        if value is not None and (isinstance(value, bool) or not value > 0):
            raise ValueError(f"{name} must be a number > 0 or None, got {value!r}")
    if isinstance(burst, bool) or not burst > 0:
        raise ValueError(f"burst must be > 0 seconds, got {burst!r}")


def low_budget_hold(info: RateLimitInfo, typical_cost: float = 0.0) -> float:
    """Seconds to hold the next request when ``x-ratelimit-*`` say the budget is nearly spent.

    At or below `LOW_BUDGET_FRACTION` of the limit, what is left is spread until the reset:
    ``reset / (remaining + 1)`` for requests; for tokens the same in units of a typical
    request's cost. 0 when the headers say nothing is short.
    """
    hold = 0.0
    remaining, reset = info.remaining_requests, info.reset_requests
    if remaining is not None and reset is not None:
        low = max(1.0, LOW_BUDGET_FRACTION * (info.limit_requests or 0))
        if remaining <= low:
            hold = reset / (remaining + 1)
    remaining, reset = info.remaining_tokens, info.reset_tokens
    if remaining is not None and reset is not None:
        unit = max(1.0, typical_cost)
        low = max(unit, LOW_BUDGET_FRACTION * (info.limit_tokens or 0))
        if remaining <= low:
            hold = max(hold, reset * unit / (remaining + unit))
    return hold


class RateState:
    """The budgets and how they adapt, with no waiting and no I/O: time is passed in.

    What a local `RateLimiter` holds for one process, and what the cluster's budget actor
    (`anyapi_async.ray.RateBudget`) holds for every worker: two token buckets, the
    ``factor`` a 429 halves and time restores, and the pause before the next request.
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        burst: float = DEFAULT_BURST_SECONDS,
        adaptive: bool = True,
        now: float = 0.0,
    ) -> None:
        check_budgets(rpm, tpm, burst)
        self.rpm = rpm
        self.tpm = tpm
        self.burst = float(burst)
        self.adaptive = adaptive
        self.requests = _Bucket(rpm, burst, now) if rpm else None
        self.tokens = _Bucket(tpm, burst, now) if tpm else None
        self.paused_until = now
        # factor(now) = min(1, low + max(0, now - since) / RECOVERY_SECONDS)
        self._factor_low = 1.0
        self._factor_since = now
        #: 429s reported.
        self.rate_limited = 0

    def configure(self, rpm: float | None, tpm: float | None, now: float) -> None:
        """Change the budgets in place (a bucket keeps its level, capped to the new size)."""
        check_budgets(rpm, tpm, self.burst)
        for name, value in (("requests", rpm), ("tokens", tpm)):
            bucket: _Bucket | None = getattr(self, name)
            if not value:
                setattr(self, name, None)
            elif bucket is None:
                setattr(self, name, _Bucket(value, self.burst, now))
            else:
                bucket.refill(now, self.factor(now))
                bucket.rate = value / 60.0
                bucket.capacity = max(1.0, bucket.rate * self.burst)
                bucket.level = min(bucket.level, bucket.capacity)
        self.rpm, self.tpm = rpm, tpm

    def factor(self, now: float) -> float:
        """How much of the configured rate is in force at ``now``; < 1 after a 429."""
        if self._factor_low >= 1.0:
            return 1.0
        climbed = max(0.0, now - self._factor_since) / RECOVERY_SECONDS
        return min(1.0, self._factor_low + climbed)

    def wait_time(self, now: float, cost: float) -> float:
        """Seconds until one request of ``cost`` tokens may start (<= 0: now)."""
        wait = self.paused_until - now
        factor = self.factor(now)
        for bucket, amount in ((self.requests, 1.0), (self.tokens, cost)):
            if bucket is not None:
                bucket.refill(now, factor)
                wait = max(wait, bucket.wait(amount, factor))
        return wait

    def take(self, cost: float) -> None:
        """Spend one request of ``cost`` tokens (after `wait_time` said it fits)."""
        if self.requests is not None:
            self.requests.level -= 1.0
        if self.tokens is not None:
            self.tokens.level -= cost

    def refund(self, tokens: float) -> None:
        """Give back ``tokens`` (negative: charge more), as usage corrects an estimate."""
        bucket = self.tokens
        if bucket is not None:
            bucket.level = min(bucket.capacity, bucket.level + tokens)

    def pause(self, now: float, hold: float) -> None:
        """Start no request for ``hold`` seconds from ``now`` (if that is later than now)."""
        if self.adaptive and hold > 0:
            self.paused_until = max(self.paused_until, now + hold)

    def on_rate_limited(self, now: float, delay: float) -> bool:
        """A 429: pause ``delay`` seconds, halve the factor; True unless the same burst."""
        self.rate_limited += 1
        if not self.adaptive:
            return False
        if now < self.paused_until and self._factor_since >= now:
            # Same burst: requests sent before the pause are still coming back refused.
            self.paused_until = max(self.paused_until, now + delay)
            return False
        self._factor_low = max(MIN_RATE_FACTOR, self.factor(now) / 2)
        self.paused_until = max(self.paused_until, now + delay)
        self._factor_since = self.paused_until
        return True


class InFlightWindow:
    """Requests allowed in flight (AIMD): infinite until a 429, then halved and regrown.

    A 429 halves the window from what was in flight; each success widens it by
    ``1 / window``, about one per window of successes, as TCP congestion control does.
    """

    def __init__(self) -> None:
        self.size = math.inf
        self.held = 0
        self._slot_freed: asyncio.Future[None] | None = None

    @property
    def full(self) -> bool:
        return self.held >= self.size

    async def wait_for_slot(self) -> None:
        """Wait until a request in flight finishes (call while `full`)."""
        self._slot_freed = asyncio.get_running_loop().create_future()
        try:
            await self._slot_freed
        finally:
            self._slot_freed = None

    def release(self, *, ok: bool) -> None:
        self.held -= 1
        if ok and self.size != math.inf:
            self.size += 1.0 / self.size
        waiter = self._slot_freed
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def cut(self) -> None:
        # The request that met the 429 still counts as held: it is retried after the pause.
        self.size = max(1.0, min(self.size, self.held) / 2)


@runtime_checkable
class Limiter(Protocol):
    """What the batch runner needs from a rate budget, local (`RateLimiter`) or shared.

    Every `acquire` is paired with a `release` once the request has its answer; the
    runner reports what it learns with `observe`, `on_rate_limited` and `record_usage`.
    ``anyapi_async.ray`` implements it on top of a budget actor shared by a Ray cluster.
    """

    @property
    def limits_tokens(self) -> bool:
        """Whether requests need a token estimate (a ``tpm`` budget is set)."""
        ...

    @property
    def rate_limited(self) -> int:
        """429s this limiter has been told about."""
        ...

    def estimate(self, params: Mapping[str, Any]) -> int:
        """The tokens a request with these parameters is expected to use."""
        ...

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until a request of ``tokens`` estimated tokens fits the budget, and take it."""
        ...

    def release(self, *, ok: bool = True) -> None:
        """A request acquired earlier has its answer (``ok``: not a 429)."""
        ...

    def record_usage(self, estimated: int, usage: CompletionUsage | None) -> None:
        """Correct the token budget by what a finished request really used."""
        ...

    def observe(self, info: RateLimitInfo) -> None:
        """Learn from a response's ``x-ratelimit-*`` headers."""
        ...

    def on_rate_limited(self, delay: float) -> None:
        """A 429 came back: pause for ``delay`` seconds and slow down."""
        ...


class RateLimiter:
    """Requests-per-minute and tokens-per-minute budgets shared by every request through it.

    The batch API creates one from ``rpm=``/``tpm=``; build one yourself to share a budget
    between several batches, or to inject a clock in tests:

    ```python
    limiter = RateLimiter(rpm=500, tpm=200_000)
    async for r in client.chat.completions.batch(requests, limiter=limiter):
        ...
    ```

    With neither budget it still reacts to 429s and to ``x-ratelimit-*`` headers. It is the
    local `Limiter`; ``anyapi_async.ray`` offers one shared by a whole Ray cluster.

    Args:
        rpm: requests per minute, or ``None``.
        tpm: tokens per minute (prompt + completion, estimated by `estimate_tokens` and
            corrected from ``usage``), or ``None``.
        burst: seconds of budget that may be spent at once.
        adaptive: react to 429s and ``x-ratelimit-*`` headers (default ``True``).
        clock: monotonic seconds (default `time.monotonic`).
        sleep: awaited to wait (default: ``asyncio.sleep``, made instant by
            `anyapi_async.testing.instant_retries`).
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        burst: float = DEFAULT_BURST_SECONDS,
        adaptive: bool = True,
        clock: Clock = time.monotonic,
        sleep: Sleep = _waits.sleep,
    ) -> None:
        check_budgets(rpm, tpm, burst)
        self._clock = clock
        self._sleep = sleep
        self._virtual = clock()
        self._state = RateState(rpm, tpm, burst=burst, adaptive=adaptive, now=self._virtual)
        self._lock = asyncio.Lock()
        self._window = InFlightWindow()
        self._completion_tokens = float(DEFAULT_COMPLETION_TOKENS)
        self._typical_cost = 0.0
        #: Seconds spent waiting (for reports).
        self.waited = 0.0

    def __repr__(self) -> str:
        return (
            f"RateLimiter(rpm={self.rpm!r}, tpm={self.tpm!r}, factor={self.factor:.3g}, "
            f"window={self.window:.3g}, rate_limited={self.rate_limited})"
        )

    # --- time and rates --------------------------------------------------------------------

    def _now(self) -> float:
        now = self._clock()
        if now < self._virtual:
            return self._virtual
        self._virtual = now
        return now

    @property
    def rpm(self) -> float | None:
        return self._state.rpm

    @property
    def tpm(self) -> float | None:
        return self._state.tpm

    @property
    def burst(self) -> float:
        return self._state.burst

    @property
    def adaptive(self) -> bool:
        return self._state.adaptive

    @property
    def rate_limited(self) -> int:
        """429s seen."""
        return self._state.rate_limited

    @property
    def factor(self) -> float:
        """How much of the configured (or learned) rate is used now; < 1 after a 429."""
        return self._state.factor(self._now())

    @property
    def requests_per_minute(self) -> float | None:
        """The requests rate in force now (``rpm`` times `factor`), if ``rpm`` is set."""
        bucket = self._state.requests
        if bucket is None:
            return None
        return bucket.rate * 60.0 * self._state.factor(self._now())

    @property
    def window(self) -> float:
        """Requests allowed in flight now (``inf`` until a 429 has been met)."""
        return self._window.size

    @property
    def in_flight(self) -> int:
        """Requests acquired and not yet released."""
        return self._window.held

    @property
    def paused_until(self) -> float:
        """Clock time before which no request starts (after a 429 or an empty budget)."""
        return self._state.paused_until

    def _take(self, cost: float) -> None:
        self._state.take(cost)
        if self._state.tokens is not None:
            self._typical_cost += LEARNING_WEIGHT * (cost - self._typical_cost)
        self._window.held += 1

    # --- the Limiter interface -------------------------------------------------------------

    @property
    def limits_tokens(self) -> bool:
        """Whether requests need a token estimate (a ``tpm`` budget is set)."""
        return self._state.tokens is not None

    def estimate(self, params: Mapping[str, Any]) -> int:
        """`estimate_tokens` with the completion size learned from recent responses."""
        return estimate_tokens(params, completion_tokens=round(self._completion_tokens))

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until a request of ``tokens`` estimated tokens fits the budgets, and take it.

        Pair it with `release` once the request has its answer (success or error).
        """
        window, state = self._window, self._state
        if (
            not self._lock.locked()
            and not window.full
            and state.wait_time(self._now(), tokens) <= 0
        ):
            self._take(tokens)
            return
        # FIFO: asyncio.Lock wakes waiters in arrival order, so nobody starves.
        async with self._lock:
            while True:
                if window.full:
                    await window.wait_for_slot()
                    continue
                now = self._now()
                wait = state.wait_time(now, tokens)
                if wait <= 0:
                    self._take(tokens)
                    return
                await self._sleep(wait)
                self.waited += wait
                self._virtual = max(self._virtual, now + wait)

    def release(self, *, ok: bool = True) -> None:
        """A request acquired earlier has its answer; ``ok`` widens the window after a 429."""
        self._window.release(ok=ok)

    def record_usage(self, estimated: int, usage: CompletionUsage | None) -> None:
        """Correct the tokens bucket by what a finished request really used."""
        if usage is None or self._state.tokens is None:
            return
        actual = usage.total_tokens or usage.prompt_tokens + usage.completion_tokens
        self._state.refund(estimated - actual)
        self._completion_tokens += LEARNING_WEIGHT * (
            usage.completion_tokens - self._completion_tokens
        )

    def observe(self, info: RateLimitInfo) -> None:
        """Spread the rest of the server's budget when its headers say it is nearly spent."""
        if self._state.adaptive:
            self._state.pause(self._now(), low_budget_hold(info, self._typical_cost))

    def on_rate_limited(self, delay: float) -> None:
        """A 429 came back: pause everyone for ``delay`` seconds and slow down."""
        if self._state.on_rate_limited(self._now(), delay):
            self._window.cut()


# --- one budget shared by several processes ---------------------------------------------------


class SharedBudget:
    """One requests/tokens budget granted in blocks to many `LeasedLimiter`s.

    It holds the `RateState` a `RateLimiter` holds; the workers lease requests from it
    (`lease`) and report what they learn (`pause`, `rate_limited`), which then slows them
    all. ``anyapi_async.ray.RateBudget`` is a Ray actor holding one.
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        burst: float = DEFAULT_BURST_SECONDS,
        adaptive: bool = True,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._state = RateState(rpm, tpm, burst=burst, adaptive=adaptive, now=clock())
        self._lock = asyncio.Lock()
        self._granted = 0
        self._pauses = 0

    def configure(self, rpm: float | None, tpm: float | None) -> None:
        """Set the budgets, keeping what was spent."""
        self._state.configure(rpm, tpm, self._clock())

    async def lease(self, requests: int, cost: float, adjust: float) -> int:
        """Wait until one request of ``cost`` tokens fits; grant up to ``requests`` of them.

        ``adjust`` settles the worker's earlier leases: tokens its requests used beyond
        the ``cost`` they were leased at (negative: fewer). Requests are served in arrival
        order.
        """
        state = self._state
        if adjust:
            state.refund(-adjust)
        async with self._lock:
            while True:
                now = self._clock()
                wait = state.wait_time(now, cost)
                if wait <= 0:
                    break
                await self._sleep(wait)
            granted = 0
            while granted < requests and state.wait_time(now, cost) <= 0:
                state.take(cost)
                granted += 1
            self._granted += granted
            return granted

    def pause(self, hold: float) -> None:
        """Start no request for ``hold`` seconds (a worker saw the budget nearly spent)."""
        self._pauses += 1
        self._state.pause(self._clock(), hold)

    def rate_limited(self, delay: float) -> None:
        """A worker met a 429: pause ``delay`` seconds and halve the rate for everyone."""
        self._state.on_rate_limited(self._clock(), delay)

    def stats(self) -> dict[str, float | int | None]:
        """Counters: requests granted, 429s and low-budget pauses reported, the factor and
        budgets in force."""
        state, now = self._state, self._clock()
        return {
            "granted": self._granted,
            "rate_limited": state.rate_limited,
            "pauses": self._pauses,
            "factor": state.factor(now),
            "rpm": state.rpm,
            "tpm": state.tpm,
            "paused_for": max(0.0, state.paused_until - now),
        }


class BudgetSource(Protocol):
    """How a `LeasedLimiter` reaches its `SharedBudget` (in another process, say)."""

    async def lease(self, requests: int, cost: float, adjust: float) -> int:
        """`SharedBudget.lease`."""
        ...

    def pause(self, hold: float) -> None:
        """`SharedBudget.pause`; need not wait for it to arrive."""
        ...

    def rate_limited(self, delay: float) -> None:
        """`SharedBudget.rate_limited`; need not wait for it to arrive."""
        ...


class LeasedLimiter:
    """The `Limiter` of one worker of a `SharedBudget`: leases requests in blocks, reports back.

    A lease of ``block`` requests is spent locally for at most ``ttl`` seconds (a worker
    must not sit on budget others could use) and dropped at a 429 or a low
    ``x-ratelimit-remaining-*``. Tokens used beyond what was leased (or fewer) are settled
    on the next lease. A low budget is reported once per pause (``report_slack`` seconds
    of it at most), not on every response. The in-flight window (AIMD after a 429) stays
    the worker's own; the rate is the shared one.
    """

    def __init__(
        self,
        source: BudgetSource,
        *,
        tpm: float | None,
        block: int,
        ttl: float,
        report_slack: float,
    ) -> None:
        self._source = source
        self._tpm = tpm
        #: Requests asked for per lease.
        self.block = block
        self._ttl = ttl
        self._report_slack = report_slack
        self._lock = asyncio.Lock()
        self._window = InFlightWindow()
        self._slots = 0
        self._slot_cost = 0.0
        self._expires = 0.0
        #: Tokens used beyond what was leased (negative: fewer), settled on the next lease.
        self._adjust = 0.0
        self._paused_until = 0.0
        self._completion_tokens = float(DEFAULT_COMPLETION_TOKENS)
        self._typical_cost = 0.0
        self._rate_limited = 0

    @property
    def limits_tokens(self) -> bool:
        return self._tpm is not None

    @property
    def rate_limited(self) -> int:
        return self._rate_limited

    def estimate(self, params: Mapping[str, Any]) -> int:
        return estimate_tokens(params, completion_tokens=round(self._completion_tokens))

    async def acquire(self, tokens: int = 0) -> None:
        async with self._lock:  # FIFO, as the local limiter
            while self._window.full:
                await self._window.wait_for_slot()
            loop = asyncio.get_running_loop()
            if self._slots <= 0 or loop.time() >= self._expires:
                self._slots = 0
                cost = max(float(tokens), self._typical_cost) if self._tpm else 0.0
                adjust, self._adjust = self._adjust, 0.0
                self._slots = await self._source.lease(self.block, cost, adjust)
                self._slot_cost = cost
                self._expires = loop.time() + self._ttl
            self._slots -= 1
            self._adjust += tokens - self._slot_cost if self._tpm else 0.0
            if self._tpm:
                self._typical_cost += LEARNING_WEIGHT * (tokens - self._typical_cost)
            self._window.held += 1

    def release(self, *, ok: bool = True) -> None:
        self._window.release(ok=ok)

    def record_usage(self, estimated: int, usage: CompletionUsage | None) -> None:
        if usage is None or not self._tpm:
            return
        actual = usage.total_tokens or usage.prompt_tokens + usage.completion_tokens
        self._adjust += actual - estimated
        self._completion_tokens += LEARNING_WEIGHT * (
            usage.completion_tokens - self._completion_tokens
        )

    def observe(self, info: RateLimitInfo) -> None:
        hold = low_budget_hold(info, self._typical_cost)
        if hold <= 0:
            return
        now = asyncio.get_running_loop().time()
        self._slots = 0  # what is left of the lease was granted before the server said so
        if now + hold > self._paused_until + self._report_slack:
            self._paused_until = now + hold
            self._source.pause(hold)

    def on_rate_limited(self, delay: float) -> None:
        self._rate_limited += 1
        self._slots = 0
        now = asyncio.get_running_loop().time()
        if now >= self._paused_until:  # a new burst here: cut this worker's window once
            self._window.cut()
        self._paused_until = max(self._paused_until, now + delay)
        self._source.rate_limited(delay)
