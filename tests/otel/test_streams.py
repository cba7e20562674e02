"""Streamed calls: the span lives as long as the stream and always ends."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

import anyapi_async as aa
from anyapi_async import otel
from anyapi_async.testing import ErrorResponse, Generated, LocalServer

from ..conftest import API_KEY
from .conftest import Telemetry, attrs_of

MSGS: list[Any] = [{"role": "user", "content": "tell me a story"}]


async def _drain(client: aa.AsyncClient, **params: Any) -> list[aa.ChatCompletionChunk]:
    stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True, **params)
    async with stream:
        return [chunk async for chunk in stream]


@pytest.fixture
async def usage_client(
    server: LocalServer, no_backoff: list[float], telemetry: Telemetry
) -> AsyncIterator[aa.AsyncClient]:
    """An instrumented client that asks streams for usage (include_usage=True)."""
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
        yield otel.instrument(c, **telemetry.providers(), include_usage=True)


async def test_streamed_span_has_finish_reasons_and_usage(
    usage_client: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """A whole stream: one span, ended with the stream, with finish reasons and usage."""
    stream = await usage_client.chat.completions.create(model="m", messages=MSGS, stream=True)
    assert telemetry.spans() == []  # open while the stream is
    async with stream:
        chunks = [chunk async for chunk in stream]
    span = telemetry.span()
    attrs = attrs_of(span)
    assert span.name == "chat m"
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["anyapi.stream.end"] == "complete"
    assert attrs["anyapi.stream.chunks"] == len(chunks)
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.response.id"] == chunks[0].id
    usage = chunks[-1].usage
    assert usage is not None  # asked for by the instrumentation (include_usage=True)
    assert attrs["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert attrs["gen_ai.response.time_to_first_chunk"] > 0
    assert span.status.status_code is StatusCode.UNSET
    sent = server.requests[-1].json
    assert sent is not None and sent["stream_options"] == {"include_usage": True}
    ttfc = telemetry.histogram("gen_ai.client.operation.time_to_first_chunk")
    per_chunk = telemetry.histogram("gen_ai.client.operation.time_per_output_chunk")
    assert [p.count for p in ttfc] == [1]
    assert [p.count for p in per_chunk] == [1]  # once per stream by default: its mean


async def test_callers_stream_options_are_left_alone(
    usage_client: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """A caller who set stream_options keeps them: no usage chunk, no usage attributes."""
    await _drain(usage_client, stream_options={"include_usage": False})
    sent = server.requests[-1].json
    assert sent is not None and sent["stream_options"] == {"include_usage": False}
    attrs = attrs_of(telemetry.span())
    assert "gen_ai.usage.input_tokens" not in attrs
    assert telemetry.histogram("gen_ai.client.token.usage") == []


async def test_streams_are_sent_as_written_by_default(
    otel_client: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """instrument() without include_usage sends the request as the caller wrote it."""
    chunks = await _drain(otel_client)
    sent = server.requests[-1].json
    assert sent is not None and "stream_options" not in sent
    assert all(chunk.usage is None for chunk in chunks)
    assert "gen_ai.usage.input_tokens" not in attrs_of(telemetry.span())


async def test_callers_own_stream_options_give_usage(
    otel_client: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """Without include_usage, a caller asking for usage themselves still gets it on the span."""
    chunks = await _drain(otel_client, stream_options={"include_usage": True})
    usage = chunks[-1].usage
    assert usage is not None
    assert attrs_of(telemetry.span())["gen_ai.usage.input_tokens"] == usage.prompt_tokens


async def test_per_chunk_metrics_record_every_chunk(
    server: LocalServer, telemetry: Telemetry, no_backoff: list[float]
) -> None:
    """per_chunk_metrics=True: one time_per_output_chunk record per chunk after the first."""
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
        otel.instrument(c, **telemetry.providers(), per_chunk_metrics=True)
        chunks = await _drain(c)
    per_chunk = telemetry.histogram("gen_ai.client.operation.time_per_output_chunk")
    assert sum(p.count for p in per_chunk) == len(chunks) - 1
    assert attrs_of(telemetry.span())["anyapi.stream.end"] == "complete"


async def test_stream_helper_is_traced(otel_client: aa.AsyncClient, telemetry: Telemetry) -> None:
    """client.chat.completions.stream() goes through the same span."""
    async with otel_client.chat.completions.stream(model="m", messages=MSGS) as s:
        text = "".join([t async for t in s.text_deltas()])
        final = await s.get_final_completion()
    assert text
    attrs = attrs_of(telemetry.span())
    assert attrs["anyapi.stream.end"] == "complete"
    assert attrs["gen_ai.response.finish_reasons"] == (final.choices[0].finish_reason,)


async def test_break_out_ends_the_span_as_closed(
    otel_client: aa.AsyncClient, telemetry: Telemetry
) -> None:
    """Leaving the loop early inside `async with` ends the span, without an error."""
    stream = await otel_client.chat.completions.create(model="m", messages=MSGS, stream=True)
    async with stream:
        async for _ in stream:
            break
    span = telemetry.span()
    attrs = attrs_of(span)
    assert attrs["anyapi.stream.end"] == "closed"
    assert attrs["anyapi.stream.chunks"] == 1
    assert span.status.status_code is StatusCode.UNSET


async def test_close_without_reading_ends_the_span(
    otel_client: aa.AsyncClient, telemetry: Telemetry
) -> None:
    """A stream closed before any read still ends its span."""
    stream = await otel_client.chat.completions.create(model="m", messages=MSGS, stream=True)
    await stream.close()
    attrs = attrs_of(telemetry.span())
    assert attrs["anyapi.stream.end"] == "closed"
    assert attrs["anyapi.stream.chunks"] == 0
    assert attrs["gen_ai.response.time_to_first_chunk"] > 0


async def test_cut_stream_ends_with_the_error(
    otel_client: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """A stream cut mid-way raises, and its span ends with that error."""
    server.queue(Generated(cut_after=3))
    with pytest.raises(aa.APIConnectionError):
        await _drain(otel_client)
    span = telemetry.span()
    attrs = attrs_of(span)
    assert attrs["anyapi.stream.end"] == "error"
    assert attrs["error.type"] == "APIConnectionError"
    assert span.status.status_code is StatusCode.ERROR


async def test_cancelled_stream_ends_the_span(
    otel_client: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """Cancelling the task that reads a stream ends the span with error.type CancelledError."""
    server.queue(Generated(stall_after=2))
    first = asyncio.Event()

    async def read() -> None:
        stream = await otel_client.chat.completions.create(model="m", messages=MSGS, stream=True)
        async with stream:
            async for _ in stream:
                first.set()

    task = asyncio.create_task(read())
    await asyncio.wait_for(first.wait(), 10)
    assert telemetry.spans() == []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    span = telemetry.span()
    attrs = attrs_of(span)
    assert attrs["anyapi.stream.end"] == "cancelled"
    assert attrs["error.type"] == "CancelledError"


async def test_abandoned_stream_ends_the_span(
    otel_client: aa.AsyncClient, telemetry: Telemetry
) -> None:
    """A stream dropped without close (never read) ends its span when collected."""
    stream = await otel_client.chat.completions.create(model="m", messages=MSGS, stream=True)
    assert telemetry.spans() == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the stream's own unclosed warning
        del stream
        gc.collect()
    attrs = attrs_of(telemetry.span())
    assert attrs["anyapi.stream.end"] == "abandoned"


async def test_partly_read_abandoned_stream_ends_the_span(
    otel_client: aa.AsyncClient, telemetry: Telemetry
) -> None:
    """A stream read in part and then dropped ends its span once its iterator is let go.

    The dropped iterator is no longer kept alive by the stream (no cycle): the event loop
    finalises it at once (an aclose task), which closes the stream and ends the span.
    """
    stream = await otel_client.chat.completions.create(model="m", messages=MSGS, stream=True)
    iterator = aiter(stream)
    await anext(iterator)
    del stream, iterator

    async def span_ended() -> None:
        # The exporter offers no event to wait on: yield to the loop until the span is in.
        while not telemetry.spans():  # noqa: ASYNC110
            await asyncio.sleep(0)

    await asyncio.wait_for(span_ended(), 10)
    attrs = attrs_of(telemetry.span())
    assert attrs["anyapi.stream.end"] == "closed"
    assert attrs["anyapi.stream.chunks"] == 1


async def test_streams_keep_their_own_spans(
    otel_client: aa.AsyncClient, telemetry: Telemetry
) -> None:
    """Concurrent streams each end their own span, with their own chunk counts."""
    counts = await asyncio.gather(*(_drain(otel_client, max_tokens=n) for n in (3, 6, 9)))
    spans = telemetry.spans()
    assert len(spans) == 3
    assert sorted(attrs_of(s)["anyapi.stream.chunks"] for s in spans) == sorted(
        len(c) for c in counts
    )


async def test_retried_stream_is_one_span(
    otel_client: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """A stream whose first attempt gets a 503 is retried inside the same span."""
    server.queue(ErrorResponse(503))
    chunks = await _drain(otel_client)
    span = telemetry.span()
    attrs = attrs_of(span)
    assert attrs["anyapi.attempts"] == 2
    assert attrs["anyapi.stream.end"] == "complete"
    assert attrs["anyapi.stream.chunks"] == len(chunks)
    assert [e.name for e in span.events] == ["anyapi.retry"]


async def test_seam_streams_and_raw_responses_are_traced(
    otel_client: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """post(stream=True) of dicts, raw and streaming responses work under instrumentation."""
    from anyapi_async.testing import SSEResponse

    server.queue(SSEResponse([{"n": 1}, {"n": 2}]))
    body = {"model": "m", "messages": MSGS}
    stream = await otel_client.post("/chat/completions", body=body, cast_to=dict, stream=True)
    async with stream:
        assert [item async for item in stream] == [{"n": 1}, {"n": 2}]
    raw = await otel_client.chat.completions.with_raw_response.create(model="m", messages=MSGS)
    assert raw.parse().choices[0].message.content
    async with otel_client.chat.completions.with_streaming_response.create(
        model="m", messages=MSGS, stream=True
    ) as response:
        chunks = [c async for c in await response.parse()]
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)
    spans = telemetry.spans()
    assert len(spans) == 3
    assert all(span.status.status_code != StatusCode.ERROR for span in spans)
