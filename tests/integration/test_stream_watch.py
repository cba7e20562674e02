"""One timer watches every open stream's idle and first-event limits (`StreamWatch`).

The limits themselves are tested in test_streaming/test_retries_timeouts; these tests pin
what sharing the timer must keep: a stream opened later with a shorter limit still times
out on time, streams that end leave the watch, and a run of sequential streams arms no
timer of its own.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyapi_async as aa
from anyapi_async._streaming import StreamWatch
from anyapi_async.testing import Generated, LocalServer

MSGS = [{"role": "user", "content": "hi"}]


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
        try:
            await asyncio.wait_for(_read_all(stalled), 20)
        except aa.APITimeoutError as exc:
            waited = time.monotonic() - started
            assert exc.limit == "idle"
        else:
            raise AssertionError("the stalled stream did not time out")
        # Well before the first stream's 30 s limit, near its own 0.3 s.
        assert waited < 5
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

    loop.call_at = counting_call_at  # type: ignore[method-assign]
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
        async with stream:
            try:
                async for _ in stream:
                    got += 1
                    if got == 1:
                        await asyncio.sleep(0.8)  # holding the event, longer than idle
            except aa.APITimeoutError as exc:
                assert exc.limit == "idle"
            else:
                raise AssertionError("the stalled stream did not time out")
        assert got == 3
