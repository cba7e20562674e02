"""Backoff and Retry-After maths, and which outcomes the policy retries."""

from __future__ import annotations

import email.utils

import pytest
from multidict import CIMultiDict

from anyapi_async import (
    APIConnectionError,
    APITimeoutError,
    RetryPolicy,
)
from anyapi_async._exceptions import make_status_error
from anyapi_async._retry import parse_retry_after

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "nope", "retry-after": "2"}, 2.0),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": " 0.5 "}, 0.5),
        ({"retry-after": email.utils.formatdate(NOW + 20, usegmt=True)}, 20.0),
        ({"retry-after": email.utils.formatdate(NOW - 20, usegmt=True)}, 0.0),
        ({"retry-after": "-1"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    """retry-after-ms first, then Retry-After as seconds or an HTTP date (RFC 9110)."""
    got = parse_retry_after(CIMultiDict(headers), now=NOW)
    assert got == (pytest.approx(expected, abs=0.01) if expected is not None else None)


def test_backoff_grows_and_is_capped_without_jitter() -> None:
    """Without jitter the waits are initial * multiplier**n up to max_delay."""
    policy = RetryPolicy(initial_delay=0.5, multiplier=2, max_delay=3, jitter=False)
    assert [policy.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_full_jitter_stays_within_cap() -> None:
    """Full jitter picks uniformly in [0, cap]."""
    policy = RetryPolicy(initial_delay=1, multiplier=2, max_delay=8)
    assert policy.backoff(3, rand=lambda: 0.0) == 0.0
    assert policy.backoff(3, rand=lambda: 0.5) == 2.0
    assert policy.backoff(10, rand=lambda: 0.999) < 8.0


def test_retry_after_is_capped() -> None:
    """A server's Retry-After longer than max_retry_after is cut to it."""
    policy = RetryPolicy(max_retry_after=5)
    assert policy.delay(1, CIMultiDict({"retry-after": "120"})) == 5.0


@pytest.mark.parametrize(
    "status", [408, 409, 429, 500, 501, 502, 503, 504, 505, 520, 521, 522, 523, 524, 529, 599]
)
def test_retryable_statuses(status: int) -> None:
    """The default table retries these statuses."""
    assert RetryPolicy().should_retry(make_status_error(status, None), before_response=False)


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 410, 413, 422, 451])
def test_not_retryable_statuses(status: int) -> None:
    """Caller errors are never retried by default."""
    assert not RetryPolicy().should_retry(make_status_error(status, None), before_response=False)


def test_x_should_retry_overrides_table() -> None:
    """x-should-retry: true/false from the server beats the status table."""
    policy = RetryPolicy()
    yes = make_status_error(400, None, CIMultiDict({"x-should-retry": "true"}))
    no = make_status_error(503, None, CIMultiDict({"x-should-retry": "false"}))
    assert policy.should_retry(yes, before_response=False)
    assert not policy.should_retry(no, before_response=False)


def test_connection_errors_retry_only_before_a_response() -> None:
    """A connection error or timeout after response bytes arrived is not retried."""
    policy = RetryPolicy()
    for exc in (APIConnectionError(), APITimeoutError()):
        assert policy.should_retry(exc, before_response=True)
        assert not policy.should_retry(exc, before_response=False)


def test_policy_validation() -> None:
    """Bad policy values are refused with a clear message."""
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(-1)
    with pytest.raises(ValueError, match="multiplier"):
        RetryPolicy(multiplier=0.5)


def test_with_max_retries_copies() -> None:
    """with_max_retries keeps every other setting."""
    policy = RetryPolicy(3, initial_delay=0.1, jitter=False)
    copy = policy.with_max_retries(0)
    assert (copy.max_retries, copy.initial_delay, copy.jitter) == (0, 0.1, False)
    assert policy.max_retries == 3


def test_retry_statuses_accepts_any_iterable() -> None:
    """retry_statuses may be a set, list or range; it replaces the whole table."""
    policy = RetryPolicy(retry_statuses={429})
    assert policy.retry_statuses == frozenset({429})
    assert not policy.should_retry(make_status_error(529, None), before_response=True)
    assert RetryPolicy(retry_statuses=range(500, 600)).should_retry(
        make_status_error(529, None), before_response=True
    )
