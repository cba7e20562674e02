"""Scripted responses and faults, observed on the wire with a raw aiohttp client."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from anyapi_async.testing import (
    ANY_MODEL,
    ErrorResponse,
    Faults,
    Generated,
    Hang,
    JSONResponse,
    LocalServer,
    RawResponse,
    Redirect,
    SSEResponse,
)

from .conftest import USER, chat, chunks_of, stream_events, until

BODY = {"model": "m", "messages": USER}
STREAM = {**BODY, "stream": True}


def post(http: aiohttp.ClientSession, server: LocalServer, body: dict[str, Any] = BODY) -> Any:
    return http.post(server.base_url + "/chat/completions", json=body)


async def read_events(resp: aiohttp.ClientResponse, count: int) -> list[bytes]:
    """Read exactly ``count`` SSE events (comments included) from a live response."""
    buffer = b""
    while buffer.count(b"\n\n") < count:
        buffer += await resp.content.readany()
    return buffer.split(b"\n\n")[:count]


async def test_queue_is_fifo_then_default(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """Queued responses answer one request each, in order; then the generator answers."""
    anyapi_server.queue(JSONResponse({"n": 1}), JSONResponse({"n": 2}, status=201))
    assert anyapi_server.queued == 2
    assert await chat(http, anyapi_server) == (200, {"n": 1})
    assert await chat(http, anyapi_server) == (201, {"n": 2})
    status, reply = await chat(http, anyapi_server)
    assert status == 200 and reply["object"] == "chat.completion"
    with pytest.raises(TypeError, match="scripted response"):
        anyapi_server.queue({"n": 3})  # type: ignore[arg-type]


async def test_set_default_and_reset(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """set_default answers whenever the queue is empty; reset clears the queue."""
    anyapi_server.set_default(ErrorResponse(503))
    assert (await chat(http, anyapi_server))[0] == 503
    assert (await chat(http, anyapi_server))[0] == 503
    anyapi_server.set_default(None)
    anyapi_server.queue(ErrorResponse(500))
    anyapi_server.reset()
    assert anyapi_server.queued == 0 and (await chat(http, anyapi_server))[0] == 200


async def test_error_response_defaults_and_headers(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """ErrorResponse builds an OpenAI error; headers such as Retry-After are sent as given."""
    anyapi_server.queue(
        ErrorResponse(429, headers={"Retry-After": "1", "x-ratelimit-remaining-requests": "0"}),
        ErrorResponse(400, "bad thing", type="invalid_request_error", code="x", param="n"),
        ErrorResponse(502, body={"detail": "upstream"}),
    )
    async with post(http, anyapi_server) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "1"
        assert resp.headers.getall("x-ratelimit-remaining-requests") == ["0"]
        error = (await resp.json())["error"]
    assert error["code"] == "rate_limit_exceeded" and error["message"]
    assert await chat(http, anyapi_server) == (
        400,
        {
            "error": {
                "message": "bad thing",
                "type": "invalid_request_error",
                "param": "n",
                "code": "x",
            }
        },
    )
    assert await chat(http, anyapi_server) == (502, {"detail": "upstream"})


async def test_raw_json_redirect_and_text_bodies(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """Raw bodies are sent verbatim with their content type; Redirect sets Location."""
    anyapi_server.queue(
        RawResponse("<html>Bad Gateway</html>", status=502),
        JSONResponse('{"truncated": ', status=200),
        Redirect("/v1/chat/completions", status=307),
        Generated(text="Fixed reply, ça va?"),
    )
    async with post(http, anyapi_server) as resp:
        assert (resp.status, resp.content_type) == (502, "text/html")
        assert await resp.text() == "<html>Bad Gateway</html>"
    async with post(http, anyapi_server) as resp:
        assert await resp.read() == b'{"truncated": '
    async with post(http, anyapi_server) as resp:
        # aiohttp follows the 307 to the same URL, where the next answer is queued.
        assert len(resp.history) == 1 and resp.history[0].status == 307
        assert resp.history[0].headers["Location"] == "/v1/chat/completions"
        reply = await resp.json()
    assert reply["choices"][0]["message"]["content"] == "Fixed reply, ça va?"


async def test_sse_response_events_verbatim(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """dicts and strs become data events, bytes go as they are, done adds [DONE]."""
    anyapi_server.queue(
        SSEResponse([b": comment\r\n\r\n", {"a": 1}, "raw text"]),
        SSEResponse([{"b": 2}], done=False),
    )
    async with post(http, anyapi_server, STREAM) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        body = await resp.read()
    assert body == b': comment\r\n\r\ndata: {"a":1}\n\ndata: raw text\n\ndata: [DONE]\n\n'
    async with post(http, anyapi_server, STREAM) as resp:
        assert await resp.read() == b'data: {"b":2}\n\n'


async def test_cut_after_breaks_the_transfer(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """cut_after=N delivers N events, then the client sees an incomplete payload."""
    anyapi_server.queue(Generated(cut_after=3), JSONResponse({"x": "y" * 100}, cut_after=0))
    async with post(http, anyapi_server, STREAM) as resp:
        events = await read_events(resp, 3)
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert all(e.startswith(b"data: {") for e in events)
    async with post(http, anyapi_server) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


async def test_error_after_sends_an_error_event(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """error_after=N sends N events, then the error event, then ends without [DONE]."""
    error = {"message": "overloaded", "code": 503}
    anyapi_server.queue(Generated(error_after=2, error=error), Generated(error_after=0))
    events = await stream_events(http, anyapi_server)
    assert len(events) == 3
    assert json.loads(events[2][len(b"data: ") :]) == {"error": error}
    (only,) = await stream_events(http, anyapi_server)
    assert json.loads(only[len(b"data: ") :])["error"]["type"] == "server_error"


async def test_stall_after_goes_quiet(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """stall_after=N sends N events and then nothing, holding the connection open."""
    anyapi_server.queue(Generated(stall_after=2))
    async with post(http, anyapi_server, STREAM) as resp:
        events = await read_events(resp, 2)
        assert len(events) == 2
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(resp.content.readany(), 0.2)
        assert anyapi_server.in_flight == 1
    await until(lambda: anyapi_server.in_flight == 0)  # leaving released the handler


async def test_keepalive_comments_while_stalled(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """While stalled, keepalive comments keep arriving (the stream is idle, not silent)."""
    anyapi_server.queue(Generated(stall_after=1, keepalive=": PROCESSING", keepalive_interval=0.01))
    async with post(http, anyapi_server, STREAM) as resp:
        events = await read_events(resp, 4)
    assert events[0].startswith(b"data: {")
    assert events[1:] == [b": PROCESSING"] * 3


async def test_chunk_size_one_sends_byte_by_byte(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """chunk_size=1 writes every byte as its own HTTP chunk."""
    anyapi_server.queue(Generated(chunk_size=1))
    pieces: list[bytes] = []
    async with post(http, anyapi_server, {**STREAM, "max_tokens": 3}) as resp:
        async for data, end_of_chunk in resp.content.iter_chunks():
            assert end_of_chunk
            if data:  # the terminating zero-length chunk reads as b""
                pieces.append(data)
    assert {len(p) for p in pieces} == {1}
    chunks = chunks_of(b"".join(pieces)[:-2].split(b"\n\n"))
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("faults", [{"split_seed": 7}, {"chunk_size": 5}])
async def test_split_writes_keep_the_bytes(
    anyapi_server: LocalServer, http: aiohttp.ClientSession, faults: dict[str, int]
) -> None:
    """Split writes land at seeded (or fixed) boundaries and reassemble to the same body."""
    expected = without_ids(chunks_of(await stream_events(http, anyapi_server)))
    sizes: list[list[int]] = []
    for _ in range(2):
        anyapi_server.queue(Generated(**faults))  # type: ignore[arg-type]
        pieces = []
        async with post(http, anyapi_server, STREAM) as resp:
            async for data, _ in resp.content.iter_chunks():
                if data:
                    pieces.append(data)
        body = b"".join(pieces)
        assert without_ids(chunks_of(body[:-2].split(b"\n\n"))) == expected
        sizes.append([len(p) for p in pieces])
    assert sizes[0] == sizes[1] and len(sizes[0]) > 20
    assert max(sizes[0]) <= 16


def without_ids(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks without the fields that differ between two answers to one request."""
    return [{k: v for k, v in c.items() if k not in ("id", "created")} for c in chunks]


async def test_first_byte_delay_and_pace(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """first_byte_delay holds the headers back; pace spaces the events out."""
    anyapi_server.queue(Generated(first_byte_delay=0.3), Generated(pace=0.02))
    start = time.monotonic()
    async with post(http, anyapi_server) as resp:
        assert time.monotonic() - start >= 0.29  # timers may fire a hair early
        assert resp.status == 200
    start = time.monotonic()
    events = await stream_events(http, anyapi_server, max_tokens=10)
    assert time.monotonic() - start >= 0.9 * 0.02 * (len(events) - 1)


async def test_hang_never_answers_and_shutdown_is_quick() -> None:
    """A Hang request gets no answer; closing the server ends it (and stalls) at once."""
    server = await LocalServer(models=ANY_MODEL).start()
    server.queue(Hang(), Generated(stall_after=1))
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer k"}) as http:
        hung = asyncio.create_task(chat(http, server))
        await until(lambda: server.in_flight == 1)  # the Hang is taken before the next request
        stalled = await post(http, server, STREAM).__aenter__()
        await read_events(stalled, 1)
        await until(lambda: server.in_flight == 2)
        assert not hung.done()
        # The open requests must not hold the shutdown. A wall-clock bound fails on a loaded
        # machine, so this generous one only keeps a regression from hanging the suite.
        await asyncio.wait_for(server.aclose(), 10)
        with pytest.raises(aiohttp.ClientError):
            await hung
        with pytest.raises(aiohttp.ClientPayloadError):
            await stalled.read()
        stalled.release()


async def test_shutdown_with_an_unread_body_is_quick(http: aiohttp.ClientSession) -> None:
    """A client that stops reading a large body does not hold the server's shutdown."""
    server = await LocalServer(models=ANY_MODEL).start()
    server.queue(JSONResponse(b"[" + b"1," * 8_000_000 + b"1]"))
    async with post(http, server) as resp:
        assert resp.status == 200
        await until(lambda: server.in_flight == 1)
        await asyncio.wait_for(server.aclose(), 10)  # a bound against hanging, not a timing
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


def test_fault_values_are_checked() -> None:
    """Impossible fault options fail at construction, naming the option."""
    with pytest.raises(ValueError, match="chunk_size"):
        Faults(chunk_size=0)
    with pytest.raises(ValueError, match="stall_after"):
        Generated(stall_after=-1)
    with pytest.raises(TypeError):
        Generated(stal_after=1)  # type: ignore[call-arg]
    assert repr(Generated(cut_after=2)) == "Generated(status=200, faults=Faults(cut_after=2))"
