"""Retries, timeouts and security against a misbehaving local server."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from typing import Any

import pytest
import trustme

import anyapi_async as aa
from anyapi_async.testing import (
    ANY_MODEL,
    ErrorResponse,
    Generated,
    Hang,
    JSONResponse,
    LocalServer,
    Redirect,
    instant_retries,
)

from ..conftest import API_KEY, completion_body

MSGS: list[Any] = [{"role": "user", "content": "hello"}]


async def test_retry_after_real_wait(server: LocalServer) -> None:
    """429 with Retry-After: 1, then 200: success after exactly 2 requests and >= 1 s."""
    server.queue(ErrorResponse(429, "slow down", headers={"Retry-After": "1"}))
    async with aa.AsyncClient(api_key="k", base_url=server.base_url) as c:
        start = time.monotonic()
        result = await c.chat.completions.create(model="m", messages=MSGS)
        elapsed = time.monotonic() - start
    assert result.choices and result.http is not None and result.http.attempts == 2
    assert len(server.requests) == 2
    assert elapsed >= 1.0


async def test_retry_after_ms(
    client: aa.AsyncClient, server: LocalServer, no_backoff: list[float]
) -> None:
    """retry-after-ms sets the wait."""
    server.queue(ErrorResponse(503, headers={"retry-after-ms": "1250"}))
    await client.chat.completions.create(model="m", messages=MSGS)
    assert no_backoff == [1.25]


@pytest.mark.parametrize("statuses", [[500, 502], [503, 504], [502, 503, 504]])
async def test_5xx_sequences(
    server: LocalServer, no_backoff: list[float], statuses: list[int]
) -> None:
    """A run of 5xx answers is absorbed when retries allow, else the last one raises."""
    for status in statuses:
        server.queue(ErrorResponse(status))
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, max_retries=2) as c:
        if len(statuses) <= 2:
            assert (await c.chat.completions.create(model="m", messages=MSGS)).choices
            assert len(server.requests) == len(statuses) + 1
        else:
            with pytest.raises(aa.InternalServerError) as info:
                await c.chat.completions.create(model="m", messages=MSGS)
            assert info.value.status_code == statuses[-1] and info.value.attempts == 3
            assert len(server.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 422])
async def test_no_retry_for_caller_errors(
    client: aa.AsyncClient, server: LocalServer, status: int
) -> None:
    """These statuses are never retried: the server sees exactly one request."""
    server.queue(ErrorResponse(status, "nope"))
    with pytest.raises(aa.APIStatusError) as info:
        await client.chat.completions.create(model="m", messages=MSGS)
    assert info.value.status_code == status
    assert len(server.requests) == 1


async def test_backoff_grows_and_respects_cap(server: LocalServer, no_backoff: list[float]) -> None:
    """Without jitter the waits double and stop at max_delay."""
    for _ in range(6):
        server.queue(ErrorResponse(500))
    policy = aa.RetryPolicy(6, initial_delay=0.1, multiplier=2, max_delay=0.5, jitter=False)
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, retry_policy=policy) as c:
        await c.chat.completions.create(model="m", messages=MSGS)
    assert no_backoff == [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]


async def test_connection_refused_is_retried_then_raises(no_backoff: list[float]) -> None:
    """Nothing listening: APIConnectionError after all attempts, cause chained."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    async with aa.AsyncClient(api_key="k", base_url=f"http://127.0.0.1:{port}/v1") as c:
        with pytest.raises(aa.APIConnectionError) as info:
            await c.chat.completions.create(model="m", messages=MSGS)
    assert info.value.attempts == 3 and len(no_backoff) == 2
    assert info.value.__cause__ is not None
    assert not isinstance(info.value, aa.APITimeoutError)


async def test_server_that_never_answers_times_out(server: LocalServer) -> None:
    """A request that is accepted and never answered raises APITimeoutError in time."""
    server.queue(Hang())
    async with aa.AsyncClient(
        api_key="k", base_url=server.base_url, timeout=0.5, max_retries=0
    ) as c:
        with pytest.raises(aa.APITimeoutError) as info:
            # The generous bound only keeps a broken timeout from hanging the suite.
            await asyncio.wait_for(c.chat.completions.create(model="m", messages=MSGS), 30)
    assert info.value.limit == "read"


async def test_first_event_limit(server: LocalServer) -> None:
    """Timeout(first_event=...) bounds the wait for the response headers."""
    server.queue(Generated(first_byte_delay=2.0))
    async with aa.AsyncClient(
        api_key="k",
        base_url=server.base_url,
        timeout=aa.Timeout(10, first_event=0.3),
        max_retries=0,
    ) as c:
        with pytest.raises(aa.APITimeoutError, match="first_event") as info:
            await c.chat.completions.create(model="m", messages=MSGS)
    assert info.value.limit == "first_event"


async def test_total_deadline_spans_retries(server: LocalServer) -> None:
    """total bounds every attempt and wait: a 429 asking for 5 s is not waited for."""
    server.queue(ErrorResponse(429, headers={"Retry-After": "5"}))
    async with aa.AsyncClient(
        api_key="k", base_url=server.base_url, timeout=aa.Timeout(10, total=1.0)
    ) as c:
        with instant_retries() as waits, pytest.raises(aa.RateLimitError):
            await c.chat.completions.create(model="m", messages=MSGS)
    assert waits == []  # the 5 s wait would pass the deadline: not even asked for
    assert len(server.requests) == 1


async def test_total_deadline_cuts_a_slow_call(server: LocalServer) -> None:
    """A call that would outlast total raises APITimeoutError(limit='total')."""
    server.queue(Hang(), Hang(), Hang())
    async with aa.AsyncClient(
        api_key="k", base_url=server.base_url, timeout=aa.Timeout(30, total=0.6)
    ) as c:
        with pytest.raises(aa.APITimeoutError) as info:
            # Each attempt's own limit is 30 s: only `total` can end the call before 20 s.
            await asyncio.wait_for(c.chat.completions.create(model="m", messages=MSGS), 20)
    assert info.value.limit == "total"


async def test_stall_after_three_chunks(server: LocalServer) -> None:
    """A stream that stalls after 3 events raises APITimeoutError instead of hanging."""
    server.queue(Generated(stall_after=3))
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, timeout=0.4) as c:
        stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
        n = 0
        with pytest.raises(aa.APITimeoutError):
            async with stream:
                async for _ in stream:
                    n += 1
    assert n == 3


async def test_hooks_see_attempts_retries_and_completion(
    server: LocalServer, no_backoff: list[float]
) -> None:
    """Hooks run per attempt: request, response, retry with reason, completion with usage."""
    seen: list[str] = []

    class Recorder(aa.Hooks):
        def on_request(self, info: aa.AttemptInfo) -> None:
            seen.append(f"request {info.attempt}")

        def on_response(self, info: aa.AttemptInfo, status: int, headers: Any) -> None:
            seen.append(f"response {status}")

        def on_retry(self, info: aa.AttemptInfo, delay: float, error: aa.APIError) -> None:
            seen.append(f"retry {type(error).__name__}")

        def on_complete(self, info: aa.AttemptInfo, usage: aa.CompletionUsage | None) -> None:
            seen.append(f"complete {usage is not None}")

    server.queue(ErrorResponse(429))
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, hooks=[Recorder()]) as c:
        await c.chat.completions.create(model="m", messages=MSGS)
        stream = await c.chat.completions.create(
            model="m", messages=MSGS, stream=True, stream_options={"include_usage": True}
        )
        async with stream:
            async for _ in stream:
                pass
    assert seen == [
        "request 1",
        "response 429",
        "retry RateLimitError",
        "request 2",
        "response 200",
        "complete True",
        "request 1",
        "response 200",
        "complete True",
    ]


async def test_rate_limit_headers_parsed(client: aa.AsyncClient, server: LocalServer) -> None:
    """x-ratelimit-* headers are exposed as a typed object."""
    server.queue(
        JSONResponse(
            completion_body("x"),
            headers={
                "x-ratelimit-limit-requests": "100",
                "x-ratelimit-remaining-requests": "7",
                "x-ratelimit-reset-requests": "1m30s",
                "x-ratelimit-remaining-tokens": "900",
                "x-ratelimit-reset-tokens": "250ms",
            },
        )
    )
    c = await client.chat.completions.create(model="m", messages=MSGS)
    assert c.http is not None
    rl = c.http.rate_limit
    assert (rl.limit_requests, rl.remaining_requests, rl.reset_requests) == (100, 7, 90.0)
    assert (rl.remaining_tokens, rl.reset_tokens) == (900, 0.25)


# --- security ----------------------------------------------------------------------------


async def test_redirect_to_other_host_drops_authorization(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """A redirect to 127.0.0.2 is followed without the Authorization header.

    The other host, like any real API (a LocalServer requiring a key), then refuses the
    unauthenticated request.
    """
    async with LocalServer(host="127.0.0.2", models=ANY_MODEL, require_key=True) as other:
        server.queue(Redirect(other.base_url + "/chat/completions", status=307))
        with pytest.raises(aa.AuthenticationError):
            await client.chat.completions.create(model="m", messages=MSGS, max_retries=0)
        assert len(other.requests) == 1
        assert "Authorization" not in other.requests[0].headers
        assert other.requests[0].json == server.requests[0].json


async def test_redirect_on_same_origin_keeps_authorization(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """A redirect within the same origin keeps the credentials and succeeds."""
    server.queue(Redirect("/v1/chat/completions", status=308))
    c = await client.chat.completions.create(model="m", messages=MSGS)
    assert c.choices
    assert len(server.requests) == 2
    assert server.requests[1].headers["Authorization"] == "Bearer ***"


async def test_self_signed_https_refused_by_default() -> None:
    """A local HTTPS server with a self-signed certificate is refused unless verify=False."""
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    async with LocalServer(ssl=ctx, models=ANY_MODEL) as tls:
        assert tls.base_url.startswith("https://")
        async with aa.AsyncClient(api_key="k", base_url=tls.base_url, max_retries=0) as c:
            with pytest.raises(aa.APIConnectionError, match=r"(?i)certificate|ssl"):
                await c.chat.completions.create(model="m", messages=MSGS)
        assert tls.requests == []
        async with aa.AsyncClient(api_key="k", base_url=tls.base_url, verify=False) as c:
            assert (await c.chat.completions.create(model="m", messages=MSGS)).choices
        trusted = ssl.create_default_context()
        ca.configure_trust(trusted)
        async with aa.AsyncClient(api_key="k", base_url=tls.base_url, verify=trusted) as c:
            assert (await c.chat.completions.create(model="m", messages=MSGS)).choices


async def test_no_key_in_logs_or_errors_at_debug(
    server: LocalServer, caplog: pytest.LogCaptureFixture, no_backoff: list[float]
) -> None:
    """Logs on the root logger at DEBUG and exceptions never contain the key."""
    server.queue(ErrorResponse(503), ErrorResponse(401, "invalid key"))
    with caplog.at_level(logging.DEBUG):
        async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
            with pytest.raises(aa.AuthenticationError) as info:
                await c.chat.completions.create(model="m", messages=MSGS)
    logs = "\n".join(f"{r.getMessage()} {r.args}" for r in caplog.records)
    assert "Retrying" in logs
    assert API_KEY not in logs
    assert API_KEY not in str(info.value) and API_KEY not in repr(info.value.args)
    assert all(API_KEY not in str(r.headers) for r in server.requests)


async def test_oversized_body_is_refused(server: LocalServer) -> None:
    """A non-streaming body beyond max_response_size raises ResponseTooLargeError."""
    server.queue(JSONResponse(completion_body("y" * 5000)))
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, max_response_size=1000) as c:
        with pytest.raises(aa.ResponseTooLargeError, match="max_response_size"):
            await c.chat.completions.create(model="m", messages=MSGS)
        assert (await c.chat.completions.create(model="m", messages=MSGS, max_tokens=3)).choices


async def test_deadline_bounded_concurrency_cap(server: LocalServer) -> None:
    """max_concurrency bounds requests in flight, and a stream holds its slot until closed."""
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, max_concurrency=2) as c:
        await asyncio.gather(
            *(c.chat.completions.create(model="m", messages=MSGS) for _ in range(10))
        )
        assert server.max_in_flight <= 2
        s1 = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
        s2 = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
        third = asyncio.create_task(c.chat.completions.create(model="m", messages=MSGS))
        await asyncio.sleep(0)
        done, _ = await asyncio.wait({third}, timeout=0.2)
        assert not done
        await s1.close()
        assert (await asyncio.wait_for(third, 5)).choices
        await s2.close()
