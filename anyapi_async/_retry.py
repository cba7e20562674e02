"""Retries: the policy and its backoff maths (pure; the loop is the pipeline's).

Delay before retry ``n`` (1-based), unless the server says otherwise:

```text
cap   = min(max_delay, initial_delay * multiplier ** (n - 1))
delay = uniform(0, cap)        # "full jitter"; jitter=False gives delay = cap
```

A ``retry-after-ms`` or ``Retry-After`` header (seconds or an HTTP date, RFC 9110 §10.2.3)
replaces the computed delay; a server wait longer than ``max_retry_after`` is not taken at
all: the error is raised at once, its ``retry_after`` saying how long the server asked for.
``x-should-retry: true|false`` from the server overrides the status table. A
``Timeout.total`` deadline bounds the whole call: a wait that would end past it is not
taken, and the last error is raised instead.

Every failure before the call hands anything to the caller (the response of a
non-streamed call, a stream's first event) happened before the caller saw a byte, so
connection errors and timeouts there are retried; after that, nothing is.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from ._exceptions import APIConnectionError, APIStatusError, APITimeoutError
from ._meta import parse_retry_after

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "INITIAL_RETRY_DELAY",
    "MAX_RETRY_DELAY",
    "RetryPolicy",
    "parse_retry_after",
]



DEFAULT_MAX_RETRIES: Final = 2
INITIAL_RETRY_DELAY: Final = 0.5
RETRY_MULTIPLIER: Final = 2.0
MAX_RETRY_DELAY: Final = 8.0
MAX_RETRY_AFTER: Final = 60.0
#: 408, 409, 429 and every status from 500 up (CDNs answer 520-524, providers 529).
RETRY_STATUSES: Final = frozenset((408, 409, 429, *range(500, 1000)))



class RetryPolicy:
    """Which failures are retried, and how long to wait between attempts.

    ``max_retries`` counts retries, so ``max_retries=2`` makes at most 3 attempts. Connection
    errors and timeouts are retried until the call hands something to the caller (a cut
    body, or a stream that broke before its first event, included), and so are the
    statuses in ``retry_statuses`` (default: 408, 409, 429 and every status >= 500). A
    server asking to wait longer than ``max_retry_after`` is not retried.
    ``jitter=True`` spreads each wait uniformly over ``[0, delay]``.
    """

    __slots__ = (
        "initial_delay",
        "jitter",
        "max_delay",
        "max_retries",
        "max_retry_after",
        "multiplier",
        "retry_connection_errors",
        "retry_statuses",
        "retry_timeouts",
    )

    def __init__(
        self,
        max_retries: int = DEFAULT_MAX_RETRIES,
        *,
        initial_delay: float = INITIAL_RETRY_DELAY,
        multiplier: float = RETRY_MULTIPLIER,
        max_delay: float = MAX_RETRY_DELAY,
        jitter: bool = True,
        max_retry_after: float = MAX_RETRY_AFTER,
        retry_statuses: Iterable[int] = RETRY_STATUSES,
        retry_connection_errors: bool = True,
        retry_timeouts: bool = True,
    ) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        for name, value in (
            ("initial_delay", initial_delay),
            ("max_delay", max_delay),
            ("max_retry_after", max_retry_after),
        ):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if not multiplier >= 1:
            raise ValueError(f"multiplier must be >= 1, got {multiplier!r}")
        self.max_retries = max_retries
        self.initial_delay = float(initial_delay)
        self.multiplier = float(multiplier)
        self.max_delay = float(max_delay)
        self.jitter = jitter
        self.max_retry_after = float(max_retry_after)
        self.retry_statuses = frozenset(retry_statuses)
        self.retry_connection_errors = retry_connection_errors
        self.retry_timeouts = retry_timeouts

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_retries={self.max_retries}, initial_delay={self.initial_delay}, "
            f"multiplier={self.multiplier}, max_delay={self.max_delay}, jitter={self.jitter})"
        )

    def with_max_retries(self, max_retries: int) -> RetryPolicy:
        """A copy with another ``max_retries``."""
        if max_retries == self.max_retries:
            return self
        copy = RetryPolicy(max_retries)
        for name in self.__slots__:
            if name != "max_retries":
                setattr(copy, name, getattr(self, name))
        return copy

    def backoff(self, retry: int, *, rand: Callable[[], float] = random.random) -> float:
        """The computed wait before retry number ``retry`` (1-based)."""
        cap = min(self.max_delay, self.initial_delay * self.multiplier ** (retry - 1))
        return cap * rand() if self.jitter else cap

    def delay(
        self,
        retry: int,
        headers: Mapping[str, str] | None = None,
        *,
        now: float | None = None,
    ) -> float:
        """The wait before retry ``retry``: the server's ``Retry-After`` if any, else backoff."""
        if headers is not None:
            after = parse_retry_after(headers, now=now)
            if after is not None:
                return min(after, self.max_retry_after)
        return self.backoff(retry)

    def should_retry(self, exc: BaseException, *, before_response: bool) -> bool:
        """Whether ``exc`` is worth another attempt under this policy.

        ``before_response``: nothing of the response has reached the caller yet (the
        retry loop always passes ``True``: it ends once something has).
        """
        if isinstance(exc, APIStatusError):
            verdict = exc.headers.get("x-should-retry") if exc.headers else None
            if verdict == "true":
                return True
            if verdict == "false":
                return False
            return exc.status_code in self.retry_statuses
        if isinstance(exc, APITimeoutError):
            return before_response and self.retry_timeouts
        if isinstance(exc, APIConnectionError):
            return before_response and self.retry_connection_errors
        return False
