"""What a response carries besides its body: headers, request id, rate limits, timings."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Final

__all__ = [
    "RateLimitInfo",
    "ResponseInfo",
    "Timings",
    "parse_duration",
    "parse_retry_after",
    "request_id_of",
]

_REQUEST_ID_HEADERS: Final = ("x-request-id", "request-id", "x-amzn-requestid", "cf-ray")
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT: Final = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def request_id_of(headers: Mapping[str, str]) -> str | None:
    """The request id a server put in its headers, under any of the usual names."""
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` (seconds or HTTP date)."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            ms = float(value)
        except ValueError:
            pass
        else:
            if ms >= 0 and ms == ms:
                return ms / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        import email.utils  # only servers that send HTTP dates pay for this import

        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, seconds)
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return None
    return seconds


def parse_duration(value: str | None) -> float | None:
    """Seconds from an ``x-ratelimit-reset-*`` value such as ``"1s"``, ``"6m0s"``, ``"2.5"``."""
    if not value:
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class RateLimitInfo:
    """The ``x-ratelimit-*`` headers, parsed; a missing or malformed header gives ``None``."""

    __slots__ = (
        "limit_requests",
        "limit_tokens",
        "remaining_requests",
        "remaining_tokens",
        "reset_requests",
        "reset_tokens",
    )

    def __init__(self, headers: Mapping[str, str]) -> None:
        self.limit_requests = _int(headers.get("x-ratelimit-limit-requests"))
        self.remaining_requests = _int(headers.get("x-ratelimit-remaining-requests"))
        self.reset_requests = parse_duration(headers.get("x-ratelimit-reset-requests"))
        self.limit_tokens = _int(headers.get("x-ratelimit-limit-tokens"))
        self.remaining_tokens = _int(headers.get("x-ratelimit-remaining-tokens"))
        self.reset_tokens = parse_duration(headers.get("x-ratelimit-reset-tokens"))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"RateLimitInfo({fields})"


class Timings:
    """Loop times of one call; the properties give durations in seconds."""

    __slots__ = ("finished", "first_token", "headers", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.headers: float | None = None
        self.first_token: float | None = None
        self.finished: float | None = None

    @property
    def time_to_headers(self) -> float | None:
        return None if self.headers is None else self.headers - self.started

    @property
    def time_to_first_token(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.started

    @property
    def total(self) -> float | None:
        return None if self.finished is None else self.finished - self.started

    def __repr__(self) -> str:
        return (
            f"Timings(time_to_headers={self.time_to_headers!r}, "
            f"time_to_first_token={self.time_to_first_token!r}, total={self.total!r})"
        )


class ResponseInfo:
    """HTTP facts about a completed call: ``completion.http`` and ``stream.http``."""

    __slots__ = ("_rate_limit", "attempts", "headers", "status_code", "timings")

    def __init__(
        self, status_code: int, headers: Mapping[str, str], attempts: int, timings: Timings
    ) -> None:
        self.status_code = status_code
        self.headers = headers
        self.attempts = attempts
        self.timings = timings
        self._rate_limit: RateLimitInfo | None = None

    @property
    def request_id(self) -> str | None:
        return request_id_of(self.headers)

    @property
    def cache_hit(self) -> bool:
        """Whether this response was replayed from the client's cache (nothing was sent)."""
        return self.headers.get("x-anyapi-cache") == "hit"

    @property
    def rate_limit(self) -> RateLimitInfo:
        if self._rate_limit is None:
            self._rate_limit = RateLimitInfo(self.headers)
        return self._rate_limit

    def __repr__(self) -> str:
        return (
            f"ResponseInfo(status_code={self.status_code}, request_id={self.request_id!r}, "
            f"attempts={self.attempts})"
        )
