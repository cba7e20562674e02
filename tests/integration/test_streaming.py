"""Streams against the local server: splits, endings, errors, releasing connections."""

from __future__ import annotations

import asyncio
import gc
import random
import warnings
from typing import Any

import pytest

import anyapi_async as aa
from anyapi_async.testing import (
    ErrorResponse,
    Generated,
    JSONResponse,
    LocalServer,
    RawResponse,
    SSEResponse,
)

from ..conftest import chunk_body as ev
from ..conftest import completion_body

MSGS: list[Any] = [{"role": "user", "content": "Stream me a story"}]


async def collect(client: aa.AsyncClient, **kwargs: Any) -> list[aa.ChatCompletionChunk]:
    stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True, **kwargs)
    async with stream:
        return [chunk async for chunk in stream]


def text_of(chunks: list[aa.ChatCompletionChunk], index: int = 0) -> str:
    return "".join(c.delta.content or "" for ch in chunks for c in ch.choices if c.index == index)


async def reference_text(client: aa.AsyncClient) -> str:
    c = await client.chat.completions.create(model="m", messages=MSGS, max_tokens=40, seed=3)
    return c.choices[0].message.content or ""


@pytest.mark.parametrize(
    "split", [{"chunk_size": 1}, {"chunk_size": 7}, {"split_seed": 11}, {"split_seed": 12345}]
)
async def test_split_streams_give_the_same_text(
    client: aa.AsyncClient, server: LocalServer, split: dict[str, Any]
) -> None:
    """Byte-by-byte and random-split streams yield exactly the non-streamed text."""
    expected = await reference_text(client)
    server.queue(Generated(**split))
    chunks = await collect(client, max_tokens=40, seed=3)
    assert text_of(chunks) == expected
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


async def test_sse_quirks_in_one_stream(client: aa.AsyncClient, server: LocalServer) -> None:
    """CRLF, comments, multi-line data, BOM, empty events and id-only blocks are handled."""
    server.queue(
        SSEResponse(
            [
                b"\xef\xbb\xbf: OPENROUTER PROCESSING\r\n\r\n",
                b"id: 1\r\n\r\n",
                b"data:\n\n",
                ev("Hel"),
                b'data: {"id":"c","choices":[{"index":0,\n'
                b'data: "delta":{"content":"lo"}}]}\r\n\r\n',
                b"retry: 100\n\n",
                ev(None, "stop"),
            ]
        )
    )
    chunks = await collect(client)
    assert text_of(chunks) == "Hello"


async def test_eof_after_finish_reason_without_done_is_normal(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """Some providers omit [DONE]; a finish_reason on every choice ends normally."""
    server.queue(
        SSEResponse(
            [ev("a", index=0), ev("b", index=1), ev(None, "stop", 0), ev(None, "length", 1)],
            done=False,
        )
    )
    chunks = await collect(client)
    assert (text_of(chunks, 0), text_of(chunks, 1)) == ("a", "b")


async def test_first_event_counts_like_any_other(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """The first event is decoded while the stream opens and yielded from there: its choice,
    finish reason, usage and body count as for every later event."""
    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    server.queue(SSEResponse([ev("a", "stop", usage=usage)], done=False))
    stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True)
    async with stream:
        chunks = [chunk async for chunk in stream]
    assert text_of(chunks) == "a"
    assert stream.usage is not None and stream.usage.total_tokens == 4
    assert chunks[0].to_dict()["usage"] == usage

    # Choice 1 opens the stream and never finishes: that is a cut stream.
    server.queue(SSEResponse([ev("b", index=1), ev(None, "stop", 0)], done=False))
    with pytest.raises(aa.APIConnectionError, match="not every choice"):
        await collect(client)


async def test_eof_without_done_or_finish_raises(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """A body that just ends mid-answer is a cut stream."""
    server.queue(SSEResponse([ev("a"), ev("b")], done=False))
    got: list[str] = []
    with pytest.raises(aa.APIConnectionError, match="ended early"):
        stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True)
        async with stream:
            async for chunk in stream:
                got.append(chunk.choices[0].delta.content or "")
    assert got == ["a", "b"]


async def test_one_choice_unfinished_raises(client: aa.AsyncClient, server: LocalServer) -> None:
    """With n=2, EOF when only one choice finished is a cut stream."""
    server.queue(SSEResponse([ev("a", index=0), ev("b", index=1), ev(None, "stop", 0)], done=False))
    with pytest.raises(aa.APIConnectionError, match="not every choice"):
        await collect(client)


async def test_connection_cut_mid_stream_raises_and_is_not_retried(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """A transfer broken after events were delivered raises; no retry, no duplicated text."""
    expected = await reference_text(client)
    server.queue(Generated(cut_after=4))
    got: list[str] = []
    with pytest.raises(aa.APIConnectionError):
        stream = await client.chat.completions.create(
            model="m", messages=MSGS, stream=True, max_tokens=40, seed=3
        )
        async with stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    got.append(chunk.choices[0].delta.content)
    assert len(server.requests) == 2  # the reference call and the one stream attempt
    assert got and expected.startswith("".join(got))
    assert "".join(got) != expected


async def test_error_event_mid_stream(client: aa.AsyncClient, server: LocalServer) -> None:
    """An error event after text raises the matching status error with its metadata."""
    error = {"message": "Upstream provider failed", "code": 502, "metadata": {"provider": "x"}}
    server.queue(SSEResponse([ev("Hi"), {"error": error}, ev(None, "error")], done=False))
    with pytest.raises(aa.InternalServerError, match="Upstream provider failed") as info:
        await collect(client)
    assert info.value.code == 502 and info.value.metadata == {"provider": "x"}
    assert len(server.requests) == 1


async def test_object_error_event(client: aa.AsyncClient, server: LocalServer) -> None:
    """An inference-server style {"object": "error"} event raises."""
    server.queue(
        SSEResponse(
            [
                ev("Hi"),
                {
                    "object": "error",
                    "message": "KV cache full",
                    "type": "InternalError",
                    "code": 500,
                },
            ]
        )
    )
    with pytest.raises(aa.InternalServerError, match="KV cache full"):
        await collect(client)


async def test_error_as_first_event_is_retried(client: aa.AsyncClient, server: LocalServer) -> None:
    """An error before any event reached the caller is retried like its status."""
    server.queue(SSEResponse([{"error": {"message": "overloaded", "code": 503}}], done=False))
    chunks = await collect(client)
    assert text_of(chunks)
    assert len(server.requests) == 2


async def test_status_error_on_stream_request(client: aa.AsyncClient, server: LocalServer) -> None:
    """A non-2xx answer to a stream request raises the status error."""
    server.queue(ErrorResponse(401, "bad key"))
    with pytest.raises(aa.AuthenticationError, match="bad key"):
        await collect(client)


async def test_json_error_body_instead_of_sse(client: aa.AsyncClient, server: LocalServer) -> None:
    """A 200 JSON error body for a stream request is handled as an error, not SSE."""
    server.queue(JSONResponse({"error": {"message": "quota", "code": 402}}))
    with pytest.raises(aa.PaymentRequiredError, match="quota"):
        await collect(client)


async def test_malformed_event_raises_validation_error(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """An event that is not JSON raises APIResponseValidationError."""
    server.queue(SSEResponse([ev("a"), "{not json", ev(None, "stop")]))
    with pytest.raises(aa.APIResponseValidationError, match="not valid JSON"):
        await collect(client)


async def test_html_page_for_stream_request(client: aa.AsyncClient, server: LocalServer) -> None:
    """A 503 HTML page from a proxy raises the status error after retries."""
    for _ in range(3):
        server.queue(RawResponse("<html>Service Unavailable</html>", status=503))
    with pytest.raises(aa.InternalServerError, match="Service Unavailable"):
        await collect(client)
    assert len(server.requests) == 3


async def test_idle_timeout_despite_keepalive_comments(server: LocalServer) -> None:
    """A stream that stalls after 3 events but keeps sending comments times out (idle)."""
    server.queue(Generated(stall_after=3, keepalive=": PROCESSING", keepalive_interval=0.02))
    async with aa.AsyncClient(
        api_key="k", base_url=server.base_url, timeout=aa.Timeout(5, idle=0.3), max_retries=0
    ) as c:
        got = 0

        async def read_all() -> None:
            nonlocal got
            stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
            async with stream:
                async for _ in stream:
                    got += 1

        with pytest.raises(aa.APITimeoutError) as info:
            # The comments keep the socket busy: only the idle limit can end this before 30 s.
            await asyncio.wait_for(read_all(), 30)
        assert info.value.limit == "idle"
        assert got == 3


async def test_long_healthy_stream_is_not_cut(server: LocalServer) -> None:
    """A paced stream longer than every limit completes: limits bound silence, not length."""
    server.queue(Generated(pace=0.01))
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, timeout=0.25) as c:
        chunks = await collect(c, max_tokens=60)
    assert len(chunks) >= 40


async def test_break_releases_connection_and_pool_of_one_stays_healthy(server: LocalServer) -> None:
    """1,000 streams abandoned mid-way leave a pool of 1 usable at once, with no warnings."""
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, max_connections=1) as c:
        for i in range(1000):
            stream = await c.chat.completions.create(
                model="m", messages=MSGS, stream=True, max_tokens=30
            )
            try:
                async with stream:
                    async for n, _ in aenumerate(stream):
                        if i % 2 == 0:
                            break  # abandoned by break
                        if n == 2:
                            raise LookupError  # abandoned by an exception
            except LookupError:
                pass
        done = await asyncio.wait_for(c.chat.completions.create(model="m", messages=MSGS), 5)
        assert done.choices


async def aenumerate(stream: aa.AsyncStream[aa.ChatCompletionChunk]) -> Any:
    n = 0
    async for chunk in stream:
        yield n, chunk
        n += 1


async def test_exception_in_consumer_releases(client: aa.AsyncClient, server: LocalServer) -> None:
    """An exception inside the loop body closes the stream."""
    stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True)
    with pytest.raises(KeyError):
        async with stream:
            async for _ in stream:
                raise KeyError("consumer bug")
    assert stream._closed


async def test_cancelling_the_consumer_releases(server: LocalServer) -> None:
    """Cancelling a task mid-stream releases its connection (pool of 1 still works)."""
    server.queue(Generated(pace=0.05))
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, max_connections=1) as c:
        first = asyncio.Event()

        async def consume() -> None:
            stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
            async with stream:
                async for _ in stream:
                    first.set()

        task = asyncio.create_task(consume())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        ok = await asyncio.wait_for(c.chat.completions.create(model="m", messages=MSGS), 5)
        assert ok.choices


async def test_close_from_another_task(client: aa.AsyncClient, server: LocalServer) -> None:
    """close() from another task ends the reader quietly (a browser went away)."""
    server.queue(Generated(stall_after=2))
    stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True)
    got: list[aa.ChatCompletionChunk] = []

    async def read() -> None:
        async for chunk in stream:
            got.append(chunk)
            if len(got) == 2:
                closer.set()

    closer = asyncio.Event()
    reader = asyncio.create_task(read())
    await closer.wait()
    await stream.close()
    await asyncio.wait_for(reader, 5)
    assert len(got) == 2


def test_dropped_stream_warns(server_url: str) -> None:
    """A stream dropped unclosed warns instead of scheduling work from __del__."""

    async def main() -> None:
        async with aa.AsyncClient(api_key="k", base_url=server_url) as c:
            stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                del stream
                gc.collect()
            assert any("AsyncStream" in str(w.message) for w in caught)

    asyncio.run(main())


async def test_headers_and_request_id_on_stream(client: aa.AsyncClient) -> None:
    """Response headers, request id and timings are on the stream."""
    stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True)
    async with stream:
        assert stream.request_id and stream.headers["content-type"].startswith("text/event-stream")
        async for _ in stream:
            pass
    assert stream.http.timings.time_to_first_token is not None
    assert stream.http.timings.total is not None


async def test_helpers_text_logprobs_and_final(client: aa.AsyncClient) -> None:
    """text_deltas then get_final_completion; logprobs() yields entries live."""
    async with client.chat.completions.stream(
        model="m",
        messages=MSGS,
        max_tokens=20,
        seed=3,
        logprobs=True,
        top_logprobs=2,
        stream_options={"include_usage": True},
    ) as s:
        pieces = [t async for t in s.text_deltas()]
        final = await s.get_final_completion()
    assert "".join(pieces) == final.choices[0].message.content
    assert final.usage is not None and final.usage.completion_tokens > 0
    assert final.choices[0].logprobs is not None
    assert len(final.choices[0].logprobs.content or []) == final.usage.completion_tokens
    async with client.chat.completions.stream(
        model="m", messages=MSGS, max_tokens=10, logprobs=True, top_logprobs=3
    ) as s:
        entries = [e async for e in s.logprobs()]
    assert entries and all(len(e.top_logprobs) == 3 for e in entries)


async def test_tool_call_stream_accumulates(client: aa.AsyncClient) -> None:
    """Tool-call arguments streamed in fragments merge into valid JSON; events report them."""
    tools: list[Any] = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    async with client.chat.completions.stream(
        model="m", messages=MSGS, tools=tools, tool_choice="required"
    ) as s:
        events = [e async for e in s.events()]
        final = await s.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"
    import json

    assert "city" in json.loads(calls[0].function.arguments)
    fragments = [e for e in events if isinstance(e, aa.ToolCallArgumentsDeltaEvent)]
    done = [e for e in events if isinstance(e, aa.ToolCallDoneEvent)]
    assert len(fragments) > 1
    assert "".join(f.delta for f in fragments) == calls[0].function.arguments
    assert done and done[0].arguments == calls[0].function.arguments
    assert final.choices[0].finish_reason == "tool_calls"


async def test_n2_stream(client: aa.AsyncClient) -> None:
    """n=2 interleaved choices accumulate separately."""
    async with client.chat.completions.stream(model="m", messages=MSGS, n=2, max_tokens=10) as s:
        final = await s.get_final_completion()
    assert [c.index for c in final.choices] == [0, 1]
    assert all(c.message.content for c in final.choices)


async def test_random_splits_of_a_recorded_stream(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """A stream with quirks survives many seeded random splits with identical results."""
    events: list[Any] = [ev(t) for t in ["Ça", " va", " 👋", " bien"]] + [ev(None, "stop")]
    results = set()
    for seed in random.Random(7).sample(range(10_000), 15):
        server.queue(SSEResponse(events, split_seed=seed))
        results.add(text_of(await collect(client)))
    assert results == {"Ça va 👋 bien"}


async def test_slow_consumer_is_not_an_idle_server(server: LocalServer) -> None:
    """Time the caller spends before reading does not count against the idle limit."""
    async with aa.AsyncClient(
        api_key="k", base_url=server.base_url, timeout=aa.Timeout(5, idle=0.2)
    ) as c:
        stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
        async with stream:
            await asyncio.sleep(0.5)  # the caller is busy elsewhere, not the server
            chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices[0].finish_reason is not None


async def test_empty_stream_raises_from_create(client: aa.AsyncClient, server: LocalServer) -> None:
    """A 200 stream that ends before any event is retried, then raises from create()."""
    for _ in range(3):
        server.queue(SSEResponse([b": only a comment\n\n"], done=False))
    with pytest.raises(aa.APIConnectionError, match="before its first event") as info:
        await client.chat.completions.create(model="m", messages=MSGS, stream=True)
    assert info.value.attempts == 3 and len(server.requests) == 3


async def test_server_ignoring_stream_true(client: aa.AsyncClient, server: LocalServer) -> None:
    """A server that answers a stream request with a whole JSON completion gives one chunk."""
    server.queue(JSONResponse(completion_body("whole")))
    async with client.chat.completions.stream(model="m", messages=MSGS) as s:
        final = await s.get_final_completion()
    assert final.choices[0].message.content == "whole"
    assert final.choices[0].finish_reason == "stop"
