"""The client runs over any transport written only against `_transports/base.py`.

`MemoryTransport` below knows nothing of aiohttp or of the library's internals: it answers
from a script of canned responses, the way a test double or another HTTP library would.
mypy checks it against the `Transport` and `Response` protocols; the tests drive the whole
public surface (completions, streams, helpers, raw responses, retries) through it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

import anyapi_async as aa
from anyapi_async._transports.base import (
    DEFAULT_MAX_RESPONSE_SIZE,
    Request,
    Response,
    Transport,
)
from anyapi_async.testing import instant_retries

MSGS: list[Any] = [{"role": "user", "content": "hi"}]

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def _chunk(content: str | None, finish: str | None = None) -> dict[str, Any]:
    delta = {"content": content} if content is not None else {}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def sse(*events: dict[str, Any], done: bool = True) -> bytes:
    body = b"".join(b"data: " + msgspec.json.encode(e) + b"\n\n" for e in events)
    return body + (b"data: [DONE]\n\n" if done else b"")


class MemoryResponse:
    """A `Response` over bytes held in memory, split into the given pieces."""

    def __init__(self, status: int, content_type: str, pieces: list[bytes]) -> None:
        self.status = status
        self.headers: Mapping[str, str] = CIMultiDictProxy(
            CIMultiDict({"content-type": content_type, "x-request-id": "req-mem"})
        )
        self.url = "memory://"
        self.content_type = content_type
        self._pieces = list(pieces)
        self.released = False
        self.closed = False

    async def read(self, limit: int = DEFAULT_MAX_RESPONSE_SIZE) -> bytes:
        body = b"".join(self._pieces)
        self._pieces.clear()
        if len(body) > limit:
            raise aa.ResponseTooLargeError("too large")
        self.release()
        return body

    def chunks(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while self._pieces:
            yield self._pieces.pop(0)

    def at_eof(self) -> bool:
        return not self._pieces

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True

    def abort(self, exc: BaseException) -> None:
        self.close()


class MemoryTransport:
    """A `Transport` answering from a script; it records every request it was sent."""

    def __init__(self, *responses: MemoryResponse) -> None:
        self.script = list(responses)
        self.sent: list[tuple[str, str, dict[str, str], bytes | None]] = []
        self.closed = False

    async def send(self, request: Request) -> Response:
        self.sent.append((request.method, request.url, dict(request.headers), request.body))
        return self.script.pop(0)

    async def aclose(self) -> None:
        self.closed = True


def _client(transport: Transport) -> aa.AsyncClient:
    return aa.AsyncClient(api_key="sk-mem", base_url="https://api.example.test/v1",
                          transport=transport)


def ok(body: dict[str, Any]) -> MemoryResponse:
    return MemoryResponse(200, "application/json", [msgspec.json.encode(body)])


async def test_a_completion_through_a_memory_transport() -> None:
    """create() sends one request (auth, JSON body) and decodes the answer."""
    transport = MemoryTransport(ok(COMPLETION))
    async with _client(transport) as client:
        completion = await client.chat.completions.create(model="m", messages=MSGS)
    assert completion.choices[0].message.content == "Hello"
    assert completion.http is not None and completion.http.request_id == "req-mem"
    method, url, headers, body = transport.sent[0]
    assert (method, url) == ("POST", "https://api.example.test/v1/chat/completions")
    assert headers["Authorization"] == "Bearer sk-mem"
    assert msgspec.json.decode(body or b"") == {"model": "m", "messages": MSGS}
    assert transport.closed  # the client closes the transport it was given


async def test_a_stream_split_at_awkward_places() -> None:
    """A stream's bytes may arrive in any pieces; the helpers rebuild the text."""
    body = sse(_chunk("Hel"), _chunk("lo"), _chunk(None, "stop"))
    pieces = [body[i : i + 7] for i in range(0, len(body), 7)]
    transport = MemoryTransport(MemoryResponse(200, "text/event-stream", pieces))
    async with _client(transport) as client, client.chat.completions.stream(
        model="m", messages=MSGS
    ) as s:
        text = [t async for t in s.text_deltas()]
        final = await s.get_final_completion()
    assert "".join(text) == "Hello"
    assert final.choices[0].finish_reason == "stop"


async def test_a_cut_stream_raises_through_any_transport() -> None:
    """A stream whose bytes end without [DONE] or a finish_reason is an error, not an end."""
    transport = MemoryTransport(
        MemoryResponse(200, "text/event-stream", [sse(_chunk("Hel"), done=False)])
    )
    async with _client(transport) as client:
        stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True)
        with pytest.raises(aa.APIConnectionError, match="ended early"):
            async with stream:
                async for _ in stream:
                    pass


async def test_retries_and_raw_responses_through_a_memory_transport() -> None:
    """A 503 is retried (with X-Retry-Count) and the raw response keeps status and headers."""
    error = MemoryResponse(503, "application/json", [b'{"error": {"message": "busy"}}'])
    transport = MemoryTransport(error, ok(COMPLETION))
    async with _client(transport) as client:
        with instant_retries():
            raw = await client.chat.completions.with_raw_response.create(model="m", messages=MSGS)
    assert raw.status_code == 200
    assert raw.parse().choices[0].message.content == "Hello"
    assert raw.http.attempts == 2
    assert [h.get("X-Retry-Count") for _, _, h, _ in transport.sent] == [None, "1"]
    assert error.released  # the error body was read and let go
