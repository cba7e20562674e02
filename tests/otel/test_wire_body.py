"""Instrumenting never changes the bytes sent, unless asked to (``include_usage=True``).

A strict local server records every request body byte for byte and answers 400 to any
field it does not know, as some OpenAI-compatible servers do.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

import anyapi_async as aa
from anyapi_async import otel

from ..conftest import API_KEY, chunk_body
from .conftest import Telemetry, attrs_of

MSGS: list[Any] = [{"role": "user", "content": "hello"}]
USAGE = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}


class StrictServer:
    """Chat completions that refuse unknown fields; ``stream_options`` only when allowed."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.allow_stream_options = False
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.bodies.append(raw)
        body = json.loads(raw)
        known = {"model", "messages", "stream", "max_tokens"}
        if self.allow_stream_options:
            known.add("stream_options")
        unknown = sorted(set(body) - known)
        if unknown:
            error = {"message": f"unknown field(s): {unknown}", "type": "invalid_request_error"}
            return web.json_response({"error": error}, status=400)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        events = [chunk_body("hi"), chunk_body(finish="stop")]
        if body.get("stream_options", {}).get("include_usage"):
            events.append({**chunk_body(), "choices": [], "usage": USAGE})
        for event in events:
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response


@pytest.fixture
async def strict() -> AsyncIterator[StrictServer]:
    state = StrictServer()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.base_url = f"http://127.0.0.1:{port}/v1"
    yield state
    await runner.cleanup()


async def _stream_both_ways(client: aa.AsyncClient) -> list[aa.ChatCompletionChunk]:
    """One streamed create() and one streamed post() of raw bytes; their chunks."""
    chunks: list[aa.ChatCompletionChunk] = []
    stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True)
    async with stream:
        chunks += [chunk async for chunk in stream]
    raw = json.dumps({"model": "m", "messages": MSGS, "stream": True}).encode()
    posted = await client.post(
        "/chat/completions", body=raw, cast_to=aa.ChatCompletionChunk, stream=True
    )
    async with posted:
        chunks += [chunk async for chunk in posted]
    return chunks


async def test_instrumented_client_sends_the_same_bytes(
    strict: StrictServer, telemetry: Telemetry
) -> None:
    """By default the wire bodies are byte-identical with and without instrumentation."""
    async with aa.AsyncClient(api_key=API_KEY, base_url=strict.base_url) as c:
        await _stream_both_ways(c)
        plain = list(strict.bodies)
        otel.instrument(c, **telemetry.providers())
        chunks = await _stream_both_ways(c)
    assert len(plain) == 2
    assert strict.bodies[2:] == plain  # the strict server accepted both: no 400
    assert all(b"stream_options" not in body for body in strict.bodies)
    assert all(chunk.usage is None for chunk in chunks)
    spans = telemetry.spans()
    assert len(spans) == 2
    # The trade-off: without usage chunks, streamed spans have no token usage.
    assert all("gen_ai.usage.input_tokens" not in attrs_of(span) for span in spans)
    assert all(attrs_of(span)["anyapi.stream.end"] == "complete" for span in spans)


async def test_include_usage_asks_for_usage_and_records_it(
    strict: StrictServer, telemetry: Telemetry
) -> None:
    """include_usage=True makes the chat body builder ask create()'s streams for usage, and
    their spans get it; bytes given to post() are sent as they are (nothing patches them)."""
    strict.allow_stream_options = True
    async with aa.AsyncClient(api_key=API_KEY, base_url=strict.base_url) as c:
        otel.instrument(c, **telemetry.providers(), include_usage=True)
        chunks = await _stream_both_ways(c)
    raw = json.dumps({"model": "m", "messages": MSGS, "stream": True}).encode()
    assert json.loads(strict.bodies[0])["stream_options"] == {"include_usage": True}
    assert strict.bodies[1] == raw
    assert [chunk.usage for chunk in chunks if chunk.usage is not None] != []
    spans = telemetry.spans()
    assert len(spans) == 2
    with_usage = [attrs_of(span) for span in spans if "gen_ai.usage.input_tokens" in attrs_of(span)]
    assert len(with_usage) == 1
    assert with_usage[0]["gen_ai.usage.input_tokens"] == USAGE["prompt_tokens"]
    assert with_usage[0]["gen_ai.usage.output_tokens"] == USAGE["completion_tokens"]
    tokens = telemetry.histogram("gen_ai.client.token.usage")
    assert sum(p.sum for p in tokens) == USAGE["prompt_tokens"] + USAGE["completion_tokens"]


async def test_include_usage_is_refused_by_a_strict_server(
    strict: StrictServer, telemetry: Telemetry, no_backoff: list[float]
) -> None:
    """The trade-off of include_usage=True: a server that refuses unknown fields says 400."""
    async with aa.AsyncClient(api_key=API_KEY, base_url=strict.base_url) as c:
        otel.instrument(c, **telemetry.providers(), include_usage=True)
        with pytest.raises(aa.BadRequestError, match="stream_options"):
            await c.chat.completions.create(model="m", messages=MSGS, stream=True)
