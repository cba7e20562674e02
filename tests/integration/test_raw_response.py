"""with_raw_response and with_streaming_response, as the openai SDK spells them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import anyapi_async as aa
from anyapi_async.testing import ErrorResponse, JSONResponse, LocalServer, RawResponse, SSEResponse

from ..conftest import API_KEY, completion_body

MSGS: list[Any] = [{"role": "user", "content": "hi"}]


def _chunk(content: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }


async def test_raw_response_has_status_headers_content_and_parse(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """status_code, headers, content (bytes as sent), http, and parse() the completion."""
    text = json.dumps({**completion_body("hello"), "provider": "Groq"}, indent=1)
    server.queue(
        RawResponse(
            text, content_type="application/json", headers={"x-ratelimit-remaining-requests": "9"}
        )
    )
    raw = await client.chat.completions.with_raw_response.create(model="m", messages=MSGS)
    assert raw.status_code == 200
    assert raw.headers["x-ratelimit-remaining-requests"] == "9"
    assert raw.content == text.encode()
    assert raw.http.rate_limit.remaining_requests == 9
    completion = raw.parse()
    assert isinstance(completion, aa.ChatCompletion)
    assert completion.choices[0].message.content == "hello"
    assert completion.to_dict()["provider"] == "Groq"
    assert completion.http is raw.http
    assert raw.parse() is completion


async def test_raw_response_raises_status_errors_after_retries(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """A status error raises as from create(), after the same retries."""
    server.queue(ErrorResponse(503), ErrorResponse(400))
    with pytest.raises(aa.BadRequestError):
        await client.chat.completions.with_raw_response.create(model="m", messages=MSGS)
    assert len(server.requests_for("/v1/chat/completions")) == 2


async def test_raw_response_checks_arguments_before_io(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """Argument checks are create()'s, before anything is sent."""
    with pytest.raises(TypeError, match="model is required"):
        await client.chat.completions.with_raw_response.create(model=None, messages=MSGS)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="messages must not be empty"):
        client.chat.completions.with_streaming_response.create(model="m", messages=[])
    assert server.requests_for("/v1/chat/completions") == []


async def test_raw_stream_parse_is_the_stream(client: aa.AsyncClient, server: LocalServer) -> None:
    """For stream=True, parse() is the AsyncStream; content is refused with a pointer."""
    server.queue(SSEResponse([_chunk("He"), _chunk("llo", "stop")]))
    raw = await client.chat.completions.with_raw_response.create(
        model="m", messages=MSGS, stream=True
    )
    assert raw.status_code == 200
    with pytest.raises(TypeError, match="with_streaming_response"):
        _ = raw.content
    stream = raw.parse()
    async with stream:
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "Hello"


async def test_streaming_response_iter_lines(client: aa.AsyncClient, server: LocalServer) -> None:
    """iter_lines() gives the SSE lines as sent, [DONE] included."""
    events = [_chunk("He"), _chunk("llo", "stop")]
    server.queue(SSEResponse(events))
    async with client.chat.completions.with_streaming_response.create(
        model="m", messages=MSGS, stream=True
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.iter_lines()]
    data = [line.removeprefix("data: ") for line in lines if line.startswith("data:")]
    assert [json.loads(d) for d in data[:-1]] == events
    assert data[-1] == "[DONE]"


async def test_streaming_response_iter_bytes_and_parse(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """iter_bytes() gives the body; parse() gives a chat stream or a completion."""
    events = [_chunk("a"), _chunk("b", "stop")]
    server.queue(SSEResponse(events), SSEResponse(events))
    async with client.chat.completions.with_streaming_response.create(
        model="m", messages=MSGS, stream=True
    ) as response:
        body = b"".join([part async for part in response.iter_bytes()])
    assert body.count(b"data: ") == 3 and body.rstrip().endswith(b"data: [DONE]")
    async with client.chat.completions.with_streaming_response.create(
        model="m", messages=MSGS, stream=True
    ) as response:
        stream = await response.parse()
        chunks = [c async for c in stream]
    assert [c.to_dict() for c in chunks] == events
    server.queue(JSONResponse(completion_body("whole")))
    async with client.chat.completions.with_streaming_response.create(
        model="m", messages=MSGS
    ) as plain:
        completion = await plain.parse()
    assert completion.choices[0].message.content == "whole"
    assert completion.http is not None and completion.http.status_code == 200


async def test_streaming_response_status_error_raises_on_enter(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """A status error raises when the block is entered, with its class."""
    server.queue(ErrorResponse(401))
    with pytest.raises(aa.AuthenticationError):
        async with client.chat.completions.with_streaming_response.create(
            model="m", messages=MSGS, stream=True
        ):
            raise AssertionError("not reached")


async def test_streaming_response_holds_the_slot_until_the_block_ends(
    server: LocalServer,
) -> None:
    """With max_concurrency=1 a second call waits until the streaming block is left."""
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url, max_concurrency=1) as c:
        server.queue(SSEResponse([_chunk("a", "stop")]), JSONResponse(completion_body("next")))
        async with c.chat.completions.with_streaming_response.create(
            model="m", messages=MSGS, stream=True
        ) as response:
            waiting = asyncio.ensure_future(c.chat.completions.create(model="m", messages=MSGS))
            await asyncio.sleep(0)
            assert not waiting.done()
            assert response.status_code == 200
        got = await asyncio.wait_for(waiting, 10)
    assert got.choices[0].message.content == "next"


async def test_streaming_response_closes_a_parsed_stream_left_unread(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """Leaving the block closes the stream parse() opened, even if it was not read."""
    server.queue(SSEResponse([_chunk("a"), _chunk("b", "stop")]))
    async with client.chat.completions.with_streaming_response.create(
        model="m", messages=MSGS, stream=True
    ) as response:
        stream = await response.parse()
        assert not stream.closed
    assert stream.closed
    assert [c async for c in stream] == []


async def test_raw_response_retries_an_error_object_sent_with_200(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """An error object with status 200 is retried like create() does, then parse() works."""
    server.queue(
        JSONResponse({"error": {"message": "overloaded", "type": "x", "code": 503}}),
        JSONResponse(completion_body("second")),
    )
    raw = await client.chat.completions.with_raw_response.create(model="m", messages=MSGS)
    assert raw.http.attempts == 2
    assert raw.parse().choices[0].message.content == "second"
