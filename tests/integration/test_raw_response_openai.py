"""Raw responses carry what the openai SDK's do (issue 20.14): request_id, url, elapsed,
retries_taken, http_request; with_streaming_response adds text(), json(), iter_text(),
close(); post()/get() take cast_to=str. A manager entered by hand and dropped gives its
slot back when collected (issue 20.4)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

import anyapi_async as aa
from anyapi_async.testing import ErrorResponse, JSONResponse, LocalServer, RawResponse, SSEResponse

from ..conftest import API_KEY, completion_body

MSGS: list[Any] = [{"role": "user", "content": "hi"}]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _chunk(content: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }


@contextlib.asynccontextmanager
async def _app_server(*routes: tuple[str, str, Handler]) -> AsyncIterator[str]:
    """An aiohttp.web app on 127.0.0.1 with ``routes``; yields its ``/v1`` base URL."""
    app = web.Application()
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


def _forget(held: list[Any]) -> None:
    """Drop the last references to ``held`` and collect."""
    held.clear()
    gc.collect()


def _assert_no_key(*values: object) -> None:
    for value in values:
        assert API_KEY not in repr(value) and API_KEY not in str(value)


# --- with_raw_response --------------------------------------------------------------------


async def test_raw_response_has_request_id_url_retries_elapsed_and_request(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """request_id, url, retries_taken (attempts - 1), elapsed and http_request, key masked."""
    server.queue(ErrorResponse(503), JSONResponse(completion_body("hello")))
    raw = await client.chat.completions.with_raw_response.create(model="m", messages=MSGS)
    seen = server.requests_for("/v1/chat/completions")
    assert len(seen) == 2
    assert raw.request_id == seen[-1].request_id == raw.http.request_id
    assert raw.retries_taken == 1 and raw.http.attempts == 2
    assert raw.url == server.base_url + "/chat/completions"
    assert isinstance(raw.elapsed, timedelta) and raw.elapsed >= timedelta(0)
    request = raw.http_request
    assert request is not None
    assert request.method == "POST"
    assert request.url == raw.url
    assert request.headers["Authorization"] == "***"
    assert request.headers["X-Retry-Count"] == "1"  # the attempt that got the response
    _assert_no_key(request, request.headers, raw)
    assert raw.parse().choices[0].message.content == "hello"


async def test_raw_response_first_attempt_took_no_retries(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """retries_taken is 0 when the first attempt got the response."""
    server.queue(JSONResponse(completion_body("hello")))
    raw = await client.chat.completions.with_raw_response.create(model="m", messages=MSGS)
    assert raw.retries_taken == 0
    assert raw.http_request is not None and "X-Retry-Count" not in raw.http_request.headers


async def test_raw_stream_response_has_the_same_and_elapsed_after_the_end(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """For stream=True: the same facts; elapsed is known once the stream has ended."""
    server.queue(ErrorResponse(500), SSEResponse([_chunk("He"), _chunk("llo", "stop")]))
    raw = await client.chat.completions.with_raw_response.create(
        model="m", messages=MSGS, stream=True
    )
    seen = server.requests_for("/v1/chat/completions")
    assert raw.request_id == seen[-1].request_id
    assert raw.retries_taken == 1
    assert raw.url == server.base_url + "/chat/completions"
    assert raw.http_request is not None and raw.http_request.method == "POST"
    assert raw.http_request.headers["Accept"] == "text/event-stream"
    assert raw.http_request.headers["Authorization"] == "***"
    with pytest.raises(RuntimeError, match="read or closed"):
        _ = raw.elapsed
    async with raw.parse() as stream:
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "Hello"
    assert raw.elapsed >= timedelta(0)


async def test_key_like_query_values_are_masked_in_url_and_request(server: LocalServer) -> None:
    """A key sent in the query string is masked in url and http_request.url."""
    secret = "query-SECRET-value"
    async with aa.AsyncClient(
        api_key=API_KEY, base_url=server.base_url, default_query={"api-key": secret, "v": "1"}
    ) as c:
        server.queue(JSONResponse(completion_body("x")))
        raw = await c.chat.completions.with_raw_response.create(model="m", messages=MSGS)
        async with c.chat.completions.with_streaming_response.create(
            model="m", messages=MSGS
        ) as streamed:
            await streamed.read()
    assert server.requests_for("/v1/chat/completions")[0].query["api-key"] == secret
    for response in (raw, streamed):
        assert response.url is not None and "v=1" in response.url
        assert response.http_request is not None
        for value in (response.url, response.http_request, response.http_request.url):
            assert secret not in repr(value) and secret not in str(value)


# --- with_streaming_response --------------------------------------------------------------


async def test_streaming_response_has_request_id_url_retries_and_request(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """with_streaming_response has request_id, url, retries_taken, http_request; elapsed
    once the body is read."""
    server.queue(ErrorResponse(502), JSONResponse(completion_body("whole")))
    async with client.chat.completions.with_streaming_response.create(
        model="m", messages=MSGS
    ) as response:
        assert response.request_id == server.requests_for("/v1/chat/completions")[-1].request_id
        assert response.retries_taken == 1
        assert response.url == server.base_url + "/chat/completions"
        assert response.http_request is not None
        assert response.http_request.headers["Authorization"] == "***"
        _assert_no_key(response.http_request, response)
        with pytest.raises(RuntimeError, match="read or closed"):
            _ = response.elapsed
        body = await response.json()
        assert isinstance(response.elapsed, timedelta)
    assert body["choices"][0]["message"]["content"] == "whole"


async def test_streaming_response_elapsed_once_parse_or_close_ends_it(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """elapsed is known after parse() read the completion, or after close() of an unread
    body; the request info is the exported RequestInfo."""
    server.queue(JSONResponse(completion_body("a")), SSEResponse([_chunk("a", "stop")]))
    async with client.chat.completions.with_streaming_response.create(
        model="m", messages=MSGS
    ) as response:
        assert (await response.parse()).choices[0].message.content == "a"
        assert response.elapsed >= timedelta(0)
        assert isinstance(response.http_request, aa.RequestInfo)
    async with client.chat.completions.with_streaming_response.create(
        model="m", messages=MSGS, stream=True
    ) as streamed:
        with pytest.raises(RuntimeError, match="read or closed"):
            _ = streamed.elapsed
        await streamed.close()
        assert streamed.elapsed >= timedelta(0)


async def test_streaming_response_text_and_iter_text(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """text() reads the body as UTF-8; iter_text() gives the same text as it arrives."""
    events = [_chunk("héllo "), _chunk("wörld ✓", "stop")]
    server.queue(SSEResponse(events), SSEResponse(events))
    async with client.chat.completions.with_streaming_response.create(
        model="m", messages=MSGS, stream=True
    ) as response:
        whole = await response.text()
    async with client.chat.completions.with_streaming_response.create(
        model="m", messages=MSGS, stream=True
    ) as response:
        pieces = [piece async for piece in response.iter_text()]
    assert "".join(pieces) == whole
    data = [line[6:] for line in whole.splitlines() if line.startswith("data: ")]
    assert [json.loads(d) for d in data[:-1]] == events


async def test_streaming_response_iter_text_joins_a_character_split_between_reads(
    server: LocalServer,
) -> None:
    """A UTF-8 character cut between two reads comes whole, never as replacement marks."""
    text = "ab✓cd"
    raw = text.encode()
    cut = raw.index("✓".encode()) + 1  # inside the three bytes of the check mark
    sent = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        reply = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await reply.prepare(request)
        await reply.write(raw[:cut])
        await sent.wait()
        await reply.write(raw[cut:])
        await reply.write_eof()
        return reply

    async with (
        _app_server(("POST", "/v1/chat/completions", handler)) as base_url,
        aa.AsyncClient(api_key=API_KEY, base_url=base_url) as c,
        c.chat.completions.with_streaming_response.create(model="m", messages=MSGS) as response,
    ):
        pieces = []
        async for piece in response.iter_text():
            pieces.append(piece)
            sent.set()
    assert "".join(pieces) == text
    assert pieces[0] == "ab" and "\ufffd" not in "".join(pieces)


async def test_streaming_response_json_refuses_a_body_that_is_not_json(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """json() on a body that is not JSON raises APIResponseValidationError showing its start."""
    server.queue(RawResponse("<html>hi</html>"))
    async with client.chat.completions.with_streaming_response.create(
        model="m", messages=MSGS
    ) as response:
        with pytest.raises(aa.APIResponseValidationError, match="not valid JSON") as caught:
            await response.json()
    assert "<html>hi</html>" in caught.value.body_snippet


async def test_streaming_response_close_releases_the_slot(server: LocalServer) -> None:
    """close() gives the max_concurrency slot back before the block ends; idempotent."""
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url, max_concurrency=1) as c:
        server.queue(SSEResponse([_chunk("a", "stop")]), JSONResponse(completion_body("next")))
        async with c.chat.completions.with_streaming_response.create(
            model="m", messages=MSGS, stream=True
        ) as response:
            stream = await response.parse()
            await response.close()
            assert stream.closed
            got = await asyncio.wait_for(c.chat.completions.create(model="m", messages=MSGS), 10)
            await response.close()
    assert got.choices[0].message.content == "next"


async def test_streaming_response_entered_by_hand_and_closed_does_not_warn(
    server: LocalServer,
) -> None:
    """A manager entered by hand whose response is closed frees the slot, with no warning."""
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url, max_concurrency=1) as c:
        server.queue(JSONResponse(completion_body("a")), JSONResponse(completion_body("next")))
        manager = c.chat.completions.with_streaming_response.create(model="m", messages=MSGS)
        response = await manager.__aenter__()
        await response.close()
        del manager, response
        gc.collect()  # warnings are errors: a ResourceWarning here would fail the test
        got = await asyncio.wait_for(c.chat.completions.create(model="m", messages=MSGS), 10)
    assert got.choices[0].message.content == "next"


@pytest.mark.parametrize("parsed", [False, True])
async def test_dropped_streaming_response_releases_its_slot(
    server: LocalServer, parsed: bool
) -> None:
    """A manager entered by hand and dropped gives back its max_concurrency slot and its
    connection when collected, with a ResourceWarning (a stream parse() opened too)."""
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url, max_concurrency=1) as c:
        server.queue(
            SSEResponse([_chunk("a"), _chunk("b", "stop")]), JSONResponse(completion_body("next"))
        )
        manager = c.chat.completions.with_streaming_response.create(
            model="m", messages=MSGS, stream=True
        )
        response = await manager.__aenter__()
        assert response.status_code == 200
        if parsed:
            await response.parse()
        held = [manager, response]
        del manager, response
        with pytest.warns(ResourceWarning, match="StreamedAPIResponse was garbage-collected"):
            _forget(held)
        got = await asyncio.wait_for(c.chat.completions.create(model="m", messages=MSGS), 10)
    assert got.choices[0].message.content == "next"


# --- post() and get() ---------------------------------------------------------------------


async def test_post_and_get_cast_to_str_give_the_body_as_text() -> None:
    """cast_to=str: the body decoded as UTF-8 text, whatever its content type."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.method)
        if request.method == "POST":
            return web.Response(text="plain text, café ✓", content_type="text/plain")
        return web.Response(body=b'{"a": 1}', content_type="application/json")

    async with (
        _app_server(("*", "/v1/echo", handler)) as base_url,
        aa.AsyncClient(api_key=API_KEY, base_url=base_url) as c,
    ):
        text = await c.post("/echo", body={"x": 1}, cast_to=str)
        got = await c.get("/echo", cast_to=str)
    assert text == "plain text, café ✓"
    assert got == '{"a": 1}'
    assert seen == ["POST", "GET"]
