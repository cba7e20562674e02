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

Every `RateLimiter.acquire` must be paired with a `RateLimiter.release` once the request
has its answer.

The limiter keeps its own notion of time, ``max(clock(), start + waited)``, so a sleep that
returns early (a test's instant sleep, a fake clock) still counts as the time it was asked
for and the accounting stays right.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from . import _waits

if TYPE_CHECKING:
    from ._meta import RateLimitInfo
    from ._types import CompletionUsage

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_BURST_SECONDS",
    "DEFAULT_COMPLETION_TOKENS",
    "RateLimiter",
    "estimate_tokens",
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


class RateLimiter:
    """Requests-per-minute and tokens-per-minute budgets shared by every request through it.

    The batch API creates one from ``rpm=``/``tpm=``; build one yourself to share a budget
    between several batches, or to inject a clock in tests:

    ```python
    limiter = RateLimiter(rpm=500, tpm=200_000)
    async for r in client.chat.completions.batch(requests, limiter=limiter):
        ...
    ```

    With neither budget it still reacts to 429s and to ``x-ratelimit-*`` headers.

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
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise ValueError(f"{name} must be a number > 0 or None, got {value!r}")
        if not burst > 0:
            raise ValueError(f"burst must be > 0 seconds, got {burst!r}")
        self.rpm = rpm
        self.tpm = tpm
        self.burst = float(burst)
        self.adaptive = adaptive
        self._clock = clock
        self._sleep = sleep
        self._virtual = clock()
        now = self._virtual
        self._requests = _Bucket(rpm, burst, now) if rpm else None
        self._tokens = _Bucket(tpm, burst, now) if tpm else None
        self._paused_until = now
        # factor(now) = min(ceiling, low + max(0, now - since) / RECOVERY_SECONDS)
        self._factor_low = 1.0
        self._factor_since = now
        self._lock = asyncio.Lock()
        #: Requests allowed in flight (AIMD); infinite until the first 429.
        self._window = math.inf
        self._held = 0
        self._slot_freed: asyncio.Future[None] | None = None
        self._completion_tokens = float(DEFAULT_COMPLETION_TOKENS)
        self._typical_cost = 0.0
        #: Counters for reports: 429s seen, and seconds spent waiting.
        self.rate_limited = 0
        self.waited = 0.0

    def __repr__(self) -> str:
        return (
            f"RateLimiter(rpm={self.rpm!r}, tpm={self.tpm!r}, factor={self.factor:.3g}, "
            f"window={self._window:.3g}, rate_limited={self.rate_limited})"
        )

    # --- time and rates --------------------------------------------------------------------

    def _now(self) -> float:
        now = self._clock()
        if now < self._virtual:
            return self._virtual
        self._virtual = now
        return now

    def _factor(self, now: float) -> float:
        if self._factor_low >= 1.0:
            return 1.0
        climbed = max(0.0, now - self._factor_since) / RECOVERY_SECONDS
        return min(1.0, self._factor_low + climbed)

    @property
    def factor(self) -> float:
        """How much of the configured (or learned) rate is used now; < 1 after a 429."""
        return self._factor(self._now())

    @property
    def requests_per_minute(self) -> float | None:
        """The requests rate in force now (``rpm`` times `factor`), if ``rpm`` is set."""
        if self._requests is None:
            return None
        return self._requests.rate * 60.0 * self._factor(self._now())

    @property
    def window(self) -> float:
        """Requests allowed in flight now (``inf`` until a 429 has been met)."""
        return self._window

    @property
    def in_flight(self) -> int:
        """Requests acquired and not yet released."""
        return self._held

    @property
    def paused_until(self) -> float:
        """Clock time before which no request starts (after a 429 or an empty budget)."""
        return self._paused_until

    def _wait_time(self, now: float, cost: float) -> float:
        wait = self._paused_until - now
        factor = self._factor(now)
        for bucket, amount in ((self._requests, 1.0), (self._tokens, cost)):
            if bucket is not None:
                bucket.refill(now, factor)
                wait = max(wait, bucket.wait(amount, factor))
        return wait

    def _take(self, now: float, cost: float) -> None:
        if self._requests is not None:
            self._requests.level -= 1.0
        if self._tokens is not None:
            self._tokens.level -= cost
            self._typical_cost += LEARNING_WEIGHT * (cost - self._typical_cost)
        self._held += 1

    # --- the API the batch runner uses ------------------------------------------------------

    @property
    def limits_tokens(self) -> bool:
        """Whether requests need a token estimate (a ``tpm`` budget is set)."""
        return self._tokens is not None

    def estimate(self, params: Mapping[str, Any]) -> int:
        """`estimate_tokens` with the completion size learned from recent responses."""
        return estimate_tokens(params, completion_tokens=round(self._completion_tokens))

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until a request of ``tokens`` estimated tokens fits the budgets, and take it.

        Pair it with `release` once the request has its answer (success or error).
        """
        if not self._lock.locked() and self._held < self._window:
            now = self._now()
            if self._wait_time(now, tokens) <= 0:
                self._take(now, tokens)
                return
        # FIFO: asyncio.Lock wakes waiters in arrival order, so nobody starves.
        async with self._lock:
            while True:
                if self._held >= self._window:
                    self._slot_freed = asyncio.get_running_loop().create_future()
                    try:
                        await self._slot_freed
                    finally:
                        self._slot_freed = None
                    continue
                now = self._now()
                wait = self._wait_time(now, tokens)
                if wait <= 0:
                    self._take(now, tokens)
                    return
                await self._sleep(wait)
                self.waited += wait
                self._virtual = max(self._virtual, now + wait)

    def release(self, *, ok: bool = True) -> None:
        """A request acquired earlier has its answer; ``ok`` widens the window after a 429."""
        self._held -= 1
        if ok and self._window != math.inf:
            self._window += 1.0 / self._window
        waiter = self._slot_freed
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def record_usage(self, estimated: int, usage: CompletionUsage | None) -> None:
        """Correct the tokens bucket by what a finished request really used."""
        if usage is None or self._tokens is None:
            return
        actual = usage.total_tokens or usage.prompt_tokens + usage.completion_tokens
        bucket = self._tokens
        bucket.level = min(bucket.capacity, bucket.level + estimated - actual)
        self._completion_tokens += LEARNING_WEIGHT * (
            usage.completion_tokens - self._completion_tokens
        )

    def observe(self, info: RateLimitInfo) -> None:
        """Spread the rest of the server's budget when its headers say it is nearly spent."""
        if not self.adaptive:
            return
        hold = 0.0
        remaining, reset = info.remaining_requests, info.reset_requests
        if remaining is not None and reset is not None:
            low = max(1.0, LOW_BUDGET_FRACTION * (info.limit_requests or 0))
            if remaining <= low:
                hold = reset / (remaining + 1)
        remaining, reset = info.remaining_tokens, info.reset_tokens
        if remaining is not None and reset is not None:
            unit = max(1.0, self._typical_cost)
            low = max(unit, LOW_BUDGET_FRACTION * (info.limit_tokens or 0))
            if remaining <= low:
                hold = max(hold, reset * unit / (remaining + unit))
        if hold > 0:
            self._paused_until = max(self._paused_until, self._now() + hold)

    def on_rate_limited(self, delay: float) -> None:
        """A 429 came back: pause everyone for ``delay`` seconds and slow down."""
        self.rate_limited += 1
        if not self.adaptive:
            return
        now = self._now()
        if now < self._paused_until and self._factor_since >= now:
            # Same burst: requests sent before the pause are still coming back refused.
            self._paused_until = max(self._paused_until, now + delay)
            return
        self._factor_low = max(MIN_RATE_FACTOR, self._factor(now) / 2)
        # The one that met the 429 still counts as held: it is retried after the pause.
        self._window = max(1.0, min(self._window, self._held) / 2)
        self._paused_until = max(self._paused_until, now + delay)
        self._factor_since = self._paused_until
