"""Nothing hangs, nothing is lost: dropped streams, trickles, cuts, long waits, loops."""

from __future__ import annotations

import asyncio
import gc
import textwrap
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import anyapi_async as aa
from anyapi_async.testing import (
    ANY_MODEL,
    ErrorResponse,
    Generated,
    JSONResponse,
    LocalServer,
    RawResponse,
    SSEResponse,
)

from ..conftest import chunk_body as ev
from ..conftest import completion_body
from .conftest import run_clean

MSGS: list[Any] = [{"role": "user", "content": "hello"}]
#: A generous bound for things that must happen promptly (never a timing assertion).
BOUND = 10.0


@pytest.fixture
def no_gc() -> Iterator[None]:
    """The cycle collector off: what must be freed is freed by reference counting."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def ask(client: aa.AsyncClient, **kwargs: Any) -> aa.ChatCompletion:
    return await asyncio.wait_for(
        client.chat.completions.create(model="m", messages=MSGS, **kwargs), BOUND
    )


# --- 1. a dropped stream gives back its slot and its connection ---------------------------


async def test_dropped_streams_give_back_slots_and_connections(
    server: LocalServer, no_gc: None
) -> None:
    """Two streams dropped unread free both slots and both pooled connections, and warn."""
    async with aa.AsyncClient(
        api_key="k", base_url=server.base_url, max_concurrency=2, max_connections=2
    ) as c:
        s1 = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
        s2 = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del s1, s2
        ours = [w for w in caught if "AsyncStream was garbage-collected" in str(w.message)]
        assert len(ours) == 2
        assert all(w.category is ResourceWarning for w in ours)
        assert all(isinstance(w.source, aa.AsyncStream) for w in ours)  # for tracemalloc
        # Both slots and both connections are free: two calls at once go through.
        done = await asyncio.wait_for(asyncio.gather(ask(c), ask(c)), BOUND)
        assert all(d.choices for d in done)


async def test_waiting_for_a_slot_counts_against_total(server: LocalServer) -> None:
    """With every slot held, a call with Timeout(total=...) times out in the queue."""
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, max_concurrency=1) as c:
        stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
        async with stream:
            sent = len(server.requests)
            with pytest.raises(aa.APITimeoutError, match="max_concurrency slot") as info:
                await ask(c, timeout=aa.Timeout(30, total=0.2))
            assert info.value.limit == "total"
            with pytest.raises(aa.APITimeoutError, match="max_concurrency slot"):
                s = c.chat.completions.create(
                    model="m", messages=MSGS, stream=True, timeout=aa.Timeout(30, total=0.2)
                )
                await asyncio.wait_for(s, BOUND)
            assert len(server.requests) == sent  # nothing was sent while queued
        assert (await ask(c, timeout=aa.Timeout(30, total=20))).choices


# --- 2. leaving a loop early releases at once, without the collector ---------------------


async def test_break_without_async_with_frees_the_slot(server: LocalServer, no_gc: None) -> None:
    """`break` with the stream still referenced frees the slot; the next call proceeds."""
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, max_concurrency=1) as c:
        stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
        async for _ in stream:
            break
        assert (await ask(c)).choices
        assert stream.closed
        assert [chunk async for chunk in stream] == []  # a later loop yields nothing


async def test_break_from_an_unnamed_stream_frees_the_slot(
    server: LocalServer, no_gc: None
) -> None:
    """`async for chunk in await create(...)`: left early, nothing waits for a GC pass."""
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, max_concurrency=1) as c:
        for _ in range(3):
            async for _chunk in await c.chat.completions.create(
                model="m", messages=MSGS, stream=True
            ):
                break
        assert (await ask(c)).choices


async def test_exception_in_loop_body_frees_the_slot(server: LocalServer, no_gc: None) -> None:
    """An exception out of the loop body releases the stream without async with."""
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, max_concurrency=1) as c:
        stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
        with pytest.raises(LookupError):
            async for _ in stream:
                raise LookupError
        assert (await ask(c)).choices


async def test_helpers_still_share_one_stream_after_a_break(client: aa.AsyncClient) -> None:
    """stream(): break out of text_deltas(), get_final_completion() reads the rest."""
    whole = (await ask(client, max_tokens=30, seed=5)).choices[0].message.content
    async with client.chat.completions.stream(model="m", messages=MSGS, max_tokens=30, seed=5) as s:
        first = ""
        async for first in s.text_deltas():  # noqa: B007 - kept after the loop
            break
        final = await s.get_final_completion()
    assert first and final.choices[0].message.content == whole


# --- 3. a trickling body is bounded by the read limit -------------------------------------


async def test_trickling_body_times_out(server: LocalServer) -> None:
    """Headers, then a byte every 50 ms: the whole body must come within `read`."""
    server.queue(JSONResponse(completion_body("x" * 200), trickle=0.05))
    async with aa.AsyncClient(
        api_key="k", base_url=server.base_url, timeout=0.5, max_retries=0
    ) as c:
        with pytest.raises(aa.APITimeoutError, match="response body") as info:
            await ask(c)
    assert info.value.limit == "read"


async def test_trickling_body_is_retried(server: LocalServer, no_backoff: list[float]) -> None:
    """The body timeout comes before anything reached the caller: the call is retried."""
    server.queue(JSONResponse(completion_body("x" * 200), trickle=0.05))
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, timeout=0.5) as c:
        done = await ask(c)
    assert done.choices and done.http is not None and done.http.attempts == 2


async def test_slow_but_bounded_body_arrives(server: LocalServer) -> None:
    """A body trickled in well within the read limit is read whole."""
    server.queue(JSONResponse(completion_body("abc"), trickle=0.001))
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, timeout=30) as c:
        assert (await ask(c)).choices[0].message.content == "abc"


# --- 4. failures before the caller received anything are retried --------------------------


async def test_body_cut_midway_is_retried(client: aa.AsyncClient, server: LocalServer) -> None:
    """A non-streamed body cut after 20 bytes is retried like a connection error."""
    server.queue(JSONResponse(completion_body("y" * 100), cut_after_bytes=20))
    done = await ask(client)
    assert done.http is not None and done.http.attempts == 2
    assert len(server.requests) == 2


async def test_body_cut_every_time_raises_after_retries(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """Cut on every attempt: APIConnectionError after max_retries, never a partial body."""
    for _ in range(3):
        server.queue(JSONResponse(completion_body("y" * 100), cut_after_bytes=20))
    with pytest.raises(aa.APIConnectionError) as info:
        await ask(client)
    assert info.value.attempts == 3 and len(server.requests) == 3


async def test_stream_dropped_before_first_event_is_retried(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """Headers and a comment, then the connection drops: create() retries, text is whole."""
    server.queue(SSEResponse([b": PROCESSING\n\n", ev("lost"), ev(None, "stop")], cut_after=1))
    server.queue(SSEResponse([ev("Hi"), ev(None, "stop")]))
    stream = await asyncio.wait_for(
        client.chat.completions.create(model="m", messages=MSGS, stream=True), BOUND
    )
    async with stream:
        chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hi"
    assert stream.http.attempts == 2 and len(server.requests) == 2


async def test_stream_retries_stop_at_the_total_deadline(server: LocalServer) -> None:
    """Retries of a broken stream start stay within Timeout.total."""
    for _ in range(3):
        server.queue(SSEResponse([b": x\n\n", ev("a")], cut_after=1))
    policy = aa.RetryPolicy(2, initial_delay=5, jitter=False)
    async with aa.AsyncClient(
        api_key="k",
        base_url=server.base_url,
        retry_policy=policy,
        timeout=aa.Timeout(30, total=1),
    ) as c:
        with pytest.raises(aa.APIConnectionError) as info:
            await asyncio.wait_for(
                c.chat.completions.create(model="m", messages=MSGS, stream=True), BOUND
            )
    assert info.value.attempts == 1 and len(server.requests) == 1  # a 5 s wait would pass it


# --- 5. Retry-After beyond max_retry_after fails fast -------------------------------------


async def test_long_retry_after_fails_fast(
    client: aa.AsyncClient, server: LocalServer, no_backoff: list[float]
) -> None:
    """429 + Retry-After: 3600 raises RateLimitError at once, with the wait on it."""
    server.queue(ErrorResponse(429, headers={"Retry-After": "3600"}))
    with pytest.raises(aa.RateLimitError) as info:
        await ask(client)
    assert info.value.retry_after == 3600.0
    assert info.value.attempts == 1 and len(server.requests) == 1 and no_backoff == []


@pytest.mark.parametrize(
    ("status", "headers"),
    [(503, {"Retry-After": "120"}), (429, {"retry-after-ms": "61000"})],
)
async def test_long_server_wait_fails_fast_for_any_status(
    client: aa.AsyncClient, server: LocalServer, status: int, headers: dict[str, str]
) -> None:
    """Any retried status, and retry-after-ms too: a wait over the cap is not taken."""
    server.queue(ErrorResponse(status, headers=headers))
    with pytest.raises(aa.APIStatusError) as info:
        await ask(client)
    assert info.value.status_code == status and info.value.retry_after is not None
    assert info.value.retry_after > 60 and len(server.requests) == 1


async def test_retry_after_within_the_cap_is_waited(
    server: LocalServer, no_backoff: list[float]
) -> None:
    """A wait up to max_retry_after is taken, then the call succeeds."""
    server.queue(ErrorResponse(429, headers={"Retry-After": "30"}))
    policy = aa.RetryPolicy(max_retry_after=30)
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, retry_policy=policy) as c:
        assert (await ask(c)).choices
    assert no_backoff == [30.0]


# --- 6. every 5xx is retried ----------------------------------------------------------------


@pytest.mark.parametrize("status", [501, 505, 520, 522, 524, 529, 599])
async def test_every_5xx_is_retried(
    client: aa.AsyncClient, server: LocalServer, status: int
) -> None:
    """CDN 52x, 529 overloaded and the rest of 5xx are retried by default."""
    server.queue(ErrorResponse(status))
    done = await ask(client)
    assert done.http is not None and done.http.attempts == 2


async def test_5xx_retry_can_be_switched_off(server: LocalServer) -> None:
    """x-should-retry: false and retry_statuses still decide."""
    server.queue(ErrorResponse(529, headers={"x-should-retry": "false"}))
    server.queue(ErrorResponse(520))
    policy = aa.RetryPolicy(retry_statuses={429})
    async with aa.AsyncClient(api_key="k", base_url=server.base_url) as c:
        with pytest.raises(aa.InternalServerError, match="529"):
            await ask(c)
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, retry_policy=policy) as c:
        with pytest.raises(aa.InternalServerError, match="520"):
            await ask(c)
    assert len(server.requests) == 2


# --- 7. a cut stream's final result raises ------------------------------------------------


async def test_final_result_of_a_cut_stream_raises(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """After text_deltas() raised, get_final_completion() and get_final_text() raise it."""
    server.queue(Generated(cut_after=4))
    pieces: list[str] = []
    async with client.chat.completions.stream(model="m", messages=MSGS, max_tokens=30) as s:
        with pytest.raises(aa.APIConnectionError) as first:
            async for text in s.text_deltas():
                pieces.append(text)
        with pytest.raises(aa.APIConnectionError) as final:
            await s.get_final_completion()
        with pytest.raises(aa.APIConnectionError) as text_error:
            await s.get_final_text()
    assert pieces
    assert final.value is first.value and text_error.value is first.value
    assert len(server.requests) == 1


async def test_final_result_after_an_error_event_raises(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """An error event mid-stream: the final result raises the same status error."""
    server.queue(SSEResponse([ev("Hi"), {"error": {"message": "upstream", "code": 502}}]))
    async with client.chat.completions.stream(model="m", messages=MSGS) as s:
        with pytest.raises(aa.InternalServerError):
            async for _ in s.text_deltas():
                pass
        with pytest.raises(aa.InternalServerError, match="upstream"):
            await s.get_final_text()


async def test_final_result_of_a_closed_stream_raises(client: aa.AsyncClient) -> None:
    """A stream closed before its end has no final result: it says so."""
    async with client.chat.completions.stream(model="m", messages=MSGS, max_tokens=30) as s:
        async for _ in s.text_deltas():
            break
        await s.close()
        with pytest.raises(aa.APIConnectionError, match="closed before its end"):
            await s.get_final_completion()


async def test_second_loop_over_a_cut_stream_raises_again(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """A plain AsyncStream never looks complete after it was cut."""
    server.queue(Generated(cut_after=3))
    stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True)
    async with stream:
        with pytest.raises(aa.APIConnectionError) as first:
            async for _ in stream:
                pass
        with pytest.raises(aa.APIConnectionError) as again:
            async for _ in stream:
                pass
    assert again.value is first.value


# --- 8. a non-SSE body on a streaming call -------------------------------------------------


async def test_html_200_on_a_stream_names_content_type_and_body(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """A proxy's HTML page with status 200 raises APIResponseValidationError, not retried."""
    server.queue(RawResponse("<html><body>Blocked by the proxy</body></html>", status=200))
    with pytest.raises(aa.APIResponseValidationError, match="text/html") as info:
        await client.chat.completions.create(model="m", messages=MSGS, stream=True)
    assert "Blocked by the proxy" in info.value.body_snippet
    assert "Blocked by the proxy" in str(info.value)
    assert info.value.status_code == 200 and len(server.requests) == 1


async def test_plain_text_200_on_a_stream(client: aa.AsyncClient, server: LocalServer) -> None:
    """Plain text, even split byte by byte, is refused the same way."""
    server.queue(RawResponse("Service busy", content_type="text/plain", chunk_size=1))
    with pytest.raises(aa.APIResponseValidationError, match=r"text/plain.*Service busy"):
        await client.chat.completions.create(model="m", messages=MSGS, stream=True)


async def test_sse_under_another_content_type_is_read(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """SSE sent as text/plain (some proxies relabel it) still streams."""
    body = b'\xef\xbb\xbfdata: {"choices":[{"index":0,"delta":{"content":"ok"}}]}\n\n'
    body += b"data: [DONE]\n\n"
    server.queue(RawResponse(body, content_type="text/plain", chunk_size=2))
    stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True)
    async with stream:
        chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.content == "ok"


# --- 9. closing the client under a reader ---------------------------------------------------


async def test_closing_the_client_under_a_waiting_reader(server: LocalServer) -> None:
    """A reader waiting for the next event gets APIConnectionError when the client closes."""
    server.queue(Generated(stall_after=2))
    c = aa.AsyncClient(api_key="k", base_url=server.base_url)
    stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
    got: list[aa.ChatCompletionChunk] = []
    two = asyncio.Event()

    async def read() -> None:
        async for chunk in stream:
            got.append(chunk)
            if len(got) == 2:
                two.set()

    reader = asyncio.create_task(read())
    await asyncio.wait_for(two.wait(), BOUND)
    await c.aclose()
    with pytest.raises(aa.APIConnectionError):
        await asyncio.wait_for(reader, BOUND)
    assert stream.closed and len(got) == 2


async def test_closing_the_client_between_reads(server: LocalServer) -> None:
    """Closed while the reader holds an event: its next read raises APIConnectionError."""
    server.queue(Generated(stall_after=3))
    c = aa.AsyncClient(api_key="k", base_url=server.base_url)
    stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
    assert not stream.closed
    with pytest.raises(aa.APIConnectionError) as info:
        async for _ in stream:
            await c.aclose()
    assert "closed" in str(info.value)
    assert stream.closed


# --- 10. one client, several event loops ----------------------------------------------------

TWO_RUNS = textwrap.dedent(
    """
    import asyncio, gc, sys
    import anyapi_async as aa

    client = aa.AsyncClient(api_key="k", base_url=sys.argv[1])
    MSGS = [{"role": "user", "content": "hi"}]

    async def main():
        c = await client.chat.completions.create(model="m", messages=MSGS, max_tokens=5)
        s = await client.chat.completions.create(model="m", messages=MSGS, stream=True)
        async with s:
            n = len([chunk async for chunk in s])
        return c.choices[0].message.content, n

    first = asyncio.run(main())
    second = asyncio.run(main())
    asyncio.run(client.aclose())   # from a third loop: the pool died with the second
    gc.collect()
    print("same" if first == second else "different", first[1])
    """
)


def test_one_client_across_two_asyncio_runs(server_url: str) -> None:
    """Two asyncio.run() calls share a module-level client: no ResourceWarning, no leak."""
    out = run_clean(TWO_RUNS, server_url, timeout=60).split()
    assert out[0] == "same" and int(out[1]) > 1


def test_aclose_from_another_loop_while_the_first_is_open(server_url: str) -> None:
    """aclose() from another loop raises clearly while the pool's loop is still open."""
    loop = asyncio.new_event_loop()
    client = aa.AsyncClient(api_key="k", base_url=server_url)
    loop.run_until_complete(client.chat.completions.create(model="m", messages=MSGS))
    with pytest.raises(RuntimeError, match="event loop it was used in"):
        asyncio.run(client.aclose())
    loop.run_until_complete(client.aclose())  # where it belongs: closes cleanly
    assert client.closed
    loop.close()


# --- 12. no key for a loopback base URL -----------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_needs_no_key(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    """Without a key, requests to 127.0.0.0/8 or localhost go out with no Authorization."""
    monkeypatch.delenv("ANYAPI_API_KEY", raising=False)
    base_url = server.base_url.replace("127.0.0.1", host)
    async with aa.AsyncClient(base_url=base_url, max_retries=0) as c:
        reply = await ask(c)  # the local server needs no key either (unless require_key)
    assert reply.choices[0].message.content
    assert "Authorization" not in server.requests[-1].headers
    async with LocalServer(models=ANY_MODEL, require_key=True) as strict:
        base_url = strict.base_url.replace("127.0.0.1", host)
        async with aa.AsyncClient(base_url=base_url, max_retries=0) as c:
            with pytest.raises(aa.AuthenticationError):  # a server that wants a key
                await ask(c)
    assert "Authorization" not in strict.requests[-1].headers


def test_remote_base_url_still_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-loopback base URL without a key is refused at construction."""
    monkeypatch.delenv("ANYAPI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="No API key"):
        aa.AsyncClient(base_url="https://api.example.com/v1")


async def test_batch_item_with_long_retry_after_fails_fast(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """In batch(), a 429 asking for an hour ends that item at once, the wait on its error."""
    server.queue(ErrorResponse(429, headers={"Retry-After": "3600"}))
    async with client.chat.completions.batch([{"model": "m", "messages": MSGS}]) as run:
        results = [r async for r in run]
    error = results[0].error
    assert isinstance(error, aa.RateLimitError) and error.retry_after == 3600.0
    assert len(server.requests) == 1
