"""One timer watches every open stream's idle and first-event limits (`StreamWatch`).

The limits themselves are tested in test_streaming/test_retries_timeouts; these tests pin
what sharing the timer must keep: a stream opened later with a shorter limit still times
out on time, streams that end leave the watch, and a run of sequential streams arms no
timer of its own. A chat call's read limit is its watchdog's too, from the request to
the last byte (a stream's silences, or a whole non-streamed body), so aiohttp's per-packet
read timer is left out.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import anyapi_async as aa
from anyapi_async._streaming import StreamWatch
from anyapi_async.testing import (
    ErrorResponse,
    Generated,
    Hang,
    JSONResponse,
    LocalServer,
    instant_retries,
)

from ..conftest import completion_body

MSGS: list[Any] = [{"role": "user", "content": "hi"}]


async def _read_all(stream: aa.AsyncStream[Any]) -> int:
    got = 0
    async with stream:
        async for _ in stream:
            got += 1
    return got


async def test_a_later_stream_with_a_shorter_limit_times_out_on_time(
    server: LocalServer,
) -> None:
    """The timer is armed for the first stream's far deadline; a second stream with a
    0.3 s idle limit stalls and must still end near 0.3 s, while the first goes on."""
    server.queue(Generated(pace=0.05), Generated(stall_after=2))
    async with aa.AsyncClient(
        api_key="k", base_url=server.base_url, timeout=aa.Timeout(30), max_retries=0
    ) as c:
        slow_ok = await c.chat.completions.create(
            model="m", messages=MSGS, stream=True, max_tokens=20
        )
        stalled = await c.chat.completions.create(
            model="m", messages=MSGS, stream=True, timeout=aa.Timeout(30, idle=0.3)
        )
        healthy = asyncio.ensure_future(_read_all(slow_ok))
        started = time.monotonic()
        with pytest.raises(aa.APITimeoutError) as info:
            await asyncio.wait_for(_read_all(stalled), 20)
        # Well before the first stream's 30 s limit, near its own 0.3 s.
        assert time.monotonic() - started < 5
        assert info.value.limit == "idle"
        assert await asyncio.wait_for(healthy, 20) > 2


async def test_streams_leave_the_watch_and_share_its_timer(server: LocalServer) -> None:
    """Twenty sequential streams: every watchdog leaves the watch when its stream ends,
    and the watch's timer is armed once, not once per stream."""
    loop = asyncio.get_running_loop()
    armed: list[Any] = []
    call_at = loop.call_at

    def counting_call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(getattr(callback, "__self__", None), StreamWatch):
            armed.append(callback.__self__)
        return call_at(when, callback, *args, **kwargs)

    loop.call_at = counting_call_at  # type: ignore[method-assign,assignment]
    try:
        async with aa.AsyncClient(api_key="k", base_url=server.base_url) as c:
            for _ in range(20):
                stream = await c.chat.completions.create(
                    model="m", messages=MSGS, stream=True, max_tokens=5
                )
                assert await _read_all(stream) > 0
            watch = c.pipeline.shared.watch
            assert watch is not None
            assert not watch._dogs
    finally:
        del loop.call_at
    assert len(armed) == 1 and armed[0] is watch


async def test_a_held_stream_is_not_cut_and_its_next_wait_is_watched(
    server: LocalServer,
) -> None:
    """While the caller holds an event the stream is not waiting (no idle time passes);
    once it waits again, silence past the limit ends it."""
    server.queue(Generated(stall_after=3))
    async with aa.AsyncClient(
        api_key="k", base_url=server.base_url, timeout=aa.Timeout(30, idle=0.3), max_retries=0
    ) as c:
        stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
        got = 0
        with pytest.raises(aa.APITimeoutError) as info:
            async with stream:
                async for _ in stream:
                    got += 1
                    if got == 1:
                        await asyncio.sleep(0.8)  # holding the event, longer than idle
        assert info.value.limit == "idle"
        assert got == 3


# --- the read limit of a chat call is the watchdog's, not the transport's -----------------


async def test_stream_headers_that_never_come_time_out_on_the_read_limit(
    server: LocalServer,
) -> None:
    """No aiohttp read timer bounds a stream's wait for its headers: the watchdog does."""
    server.queue(Hang())
    async with aa.AsyncClient(
        api_key="k", base_url=server.base_url, timeout=aa.Timeout(30, read=0.3), max_retries=0
    ) as c:
        started = time.monotonic()
        with pytest.raises(aa.APITimeoutError, match="response headers") as info:
            await asyncio.wait_for(
                c.chat.completions.create(model="m", messages=MSGS, stream=True), 20
            )
        assert time.monotonic() - started < 5
    assert info.value.limit == "read"


async def test_a_read_timeout_before_the_headers_is_retried(server: LocalServer) -> None:
    server.queue(Hang())
    async with aa.AsyncClient(
        api_key="k", base_url=server.base_url, timeout=aa.Timeout(30, read=0.3), max_retries=1
    ) as c:
        with instant_retries():
            stream = await asyncio.wait_for(
                c.chat.completions.create(model="m", messages=MSGS, stream=True), 20
            )
        assert await _read_all(stream) > 0
        assert stream.http is not None and stream.http.attempts == 2
    assert len(server.requests) == 2


async def test_a_silent_stream_times_out_on_the_read_limit(server: LocalServer) -> None:
    """With idle off, silence between bytes is still bounded, by read."""
    server.queue(Generated(stall_after=2))
    async with aa.AsyncClient(
        api_key="k",
        base_url=server.base_url,
        timeout=aa.Timeout(30, read=0.3, idle=None),
        max_retries=0,
    ) as c:
        stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
        with pytest.raises(aa.APITimeoutError) as info:
            await asyncio.wait_for(_read_all(stream), 20)
    assert info.value.limit == "read"


async def test_bytes_without_events_keep_the_read_limit_away(server: LocalServer) -> None:
    """Keep-alive comments are bytes: with idle off, read does not fire while they come
    (the total limit ends this stream instead)."""
    server.queue(Generated(stall_after=2, keepalive=": PROCESSING", keepalive_interval=0.05))
    async with aa.AsyncClient(
        api_key="k",
        base_url=server.base_url,
        timeout=aa.Timeout(30, read=0.3, idle=None, total=1.5),
        max_retries=0,
    ) as c:
        stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
        with pytest.raises(aa.APITimeoutError) as info:
            await asyncio.wait_for(_read_all(stream), 20)
    assert info.value.limit == "total"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
async def test_cancelling_a_request_leaves_no_watchdog_behind(
    server: LocalServer, stream: bool
) -> None:
    """A caller's own cancellation while the headers are awaited stays a cancellation, and
    the request's watchdog cannot cancel the task later."""
    server.queue(Hang())
    sent = asyncio.Event()

    class Sent(aa.Hooks):
        def on_request(self, info: aa.AttemptInfo) -> None:
            sent.set()

    async with aa.AsyncClient(
        api_key="k",
        base_url=server.base_url,
        timeout=aa.Timeout(30, read=0.2),
        max_retries=0,
        hooks=[Sent()],
    ) as c:
        pending = asyncio.ensure_future(
            c.chat.completions.create(model="m", messages=MSGS, stream=stream)
        )
        await sent.wait()  # the attempt is under way: its watchdog is watching
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        watch = c.pipeline.shared.watch
        assert watch is not None and not watch._dogs
        # Longer than the read limit: nothing cancels this task now.
        await asyncio.sleep(0.4)


async def test_no_aiohttp_read_timer_for_chat_calls(server: LocalServer) -> None:
    """aiohttp re-arms its sock_read timer on every packet; a chat stream and a plain call
    do without it (their watchdog bounds the read limit), a raw response keeps it."""
    loop = asyncio.get_running_loop()
    armed: list[str] = []
    call_at = loop.call_at

    def counting_call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        armed.append(getattr(callback, "__name__", ""))
        return call_at(when, callback, *args, **kwargs)

    loop.call_at = counting_call_at  # type: ignore[method-assign,assignment]
    try:
        async with aa.AsyncClient(api_key="k", base_url=server.base_url) as c:
            stream = await c.chat.completions.create(
                model="m", messages=MSGS, stream=True, max_tokens=5
            )
            assert await _read_all(stream) > 0
            await c.chat.completions.create(model="m", messages=MSGS, max_tokens=5)
            assert "_on_read_timeout" not in armed
            raw = await c.chat.completions.with_raw_response.create(
                model="m", messages=MSGS, max_tokens=5
            )
            assert raw.parse().choices
            assert "_on_read_timeout" in armed
    finally:
        del loop.call_at


async def test_a_plain_call_whose_headers_never_come_times_out_and_is_retried(
    server: LocalServer,
) -> None:
    server.queue(Hang())
    async with aa.AsyncClient(
        api_key="k", base_url=server.base_url, timeout=aa.Timeout(30, read=0.3), max_retries=1
    ) as c:
        with instant_retries():
            completion = await asyncio.wait_for(
                c.chat.completions.create(model="m", messages=MSGS), 20
            )
        assert completion.choices and completion.http is not None
        assert completion.http.attempts == 2
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("answer", "raised"),
    [
        # An unreadable error body still raises the status's error, once read gives up.
        (lambda: ErrorResponse(400, "x" * 200, trickle=0.05), aa.BadRequestError),
        (lambda: JSONResponse(completion_body("x" * 200), trickle=0.05), aa.APITimeoutError),
    ],
    ids=["error body", "JSON answer"],
)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
async def test_a_trickled_body_is_bounded_as_a_whole(
    server: LocalServer, stream: bool, answer: Any, raised: type[Exception]
) -> None:
    """An error body, or a JSON answer where a stream was asked for, must arrive whole
    within the read limit (no transport body timer bounds a watched request: its watchdog
    does), as docs/timeouts.md says; the body alone would take 10 s."""
    server.queue(answer())
    async with aa.AsyncClient(
        api_key="k", base_url=server.base_url, timeout=aa.Timeout(30, read=0.3), max_retries=0
    ) as c:
        started = time.monotonic()
        with pytest.raises(raised) as info:
            await asyncio.wait_for(
                c.chat.completions.create(model="m", messages=MSGS, stream=stream), 20
            )
        assert time.monotonic() - started < 5
    if raised is aa.APITimeoutError:
        assert info.value.limit == "read"  # type: ignore[attr-defined]
        assert "response body" in str(info.value)
