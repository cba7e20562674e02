"""A completion is traced the same however it is made (issue 20, item 3).

``create()``, the raw forms (``with_raw_response``, ``with_streaming_response`` with or
without ``stream``, read through ``parse()``) and ``post("/chat/completions")`` with any
``cast_to`` all give a span with the response's id, model, finish reasons, usage and the
server's request id; a failed one is an error span.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

import anyapi_async as aa
from anyapi_async.testing import LocalServer, SSEResponse

from .conftest import Telemetry, attrs_of

MSGS: list[Any] = [{"role": "user", "content": "Say hello"}]
USAGE: Any = {"include_usage": True}

Way = Callable[[aa.AsyncClient], Awaitable[Any]]


async def _create(c: aa.AsyncClient) -> Any:
    return await c.chat.completions.create(model="m", messages=MSGS)


async def _create_stream(c: aa.AsyncClient) -> Any:
    stream = await c.chat.completions.create(
        model="m", messages=MSGS, stream=True, stream_options=USAGE
    )
    async with stream:
        return [chunk async for chunk in stream]


async def _raw(c: aa.AsyncClient) -> Any:
    raw = await c.chat.completions.with_raw_response.create(model="m", messages=MSGS)
    return raw.parse()


async def _raw_stream(c: aa.AsyncClient) -> Any:
    raw = await c.chat.completions.with_raw_response.create(
        model="m", messages=MSGS, stream=True, stream_options=USAGE
    )
    async with raw.parse() as stream:
        return [chunk async for chunk in stream]


async def _streaming_response(c: aa.AsyncClient) -> Any:
    async with c.chat.completions.with_streaming_response.create(
        model="m", messages=MSGS
    ) as response:
        return await response.parse()


async def _streaming_response_stream(c: aa.AsyncClient) -> Any:
    async with c.chat.completions.with_streaming_response.create(
        model="m", messages=MSGS, stream=True, stream_options=USAGE
    ) as response:
        return [chunk async for chunk in await response.parse()]


async def _post_dict(c: aa.AsyncClient) -> Any:
    return await c.post("/chat/completions", body={"model": "m", "messages": MSGS}, cast_to=dict)


async def _post_bytes(c: aa.AsyncClient) -> Any:
    body = {"model": "m", "messages": MSGS}
    return await c.post("/chat/completions", body=body, cast_to=bytes)


async def _post_completion(c: aa.AsyncClient) -> Any:
    body = {"model": "m", "messages": MSGS}
    return await c.post("/chat/completions", body=body, cast_to=aa.ChatCompletion)


WAYS: dict[str, Way] = {
    "create": _create,
    "create(stream=True)": _create_stream,
    "with_raw_response": _raw,
    "with_raw_response(stream=True)": _raw_stream,
    "with_streaming_response": _streaming_response,
    "with_streaming_response(stream=True)": _streaming_response_stream,
    "post(cast_to=dict)": _post_dict,
    "post(cast_to=bytes)": _post_bytes,
    "post(cast_to=ChatCompletion)": _post_completion,
}


@pytest.mark.parametrize("way", list(WAYS))
async def test_every_way_gives_the_same_span(
    way: str, otel_client: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """The span has the response attributes and the request id, whatever the way."""
    await WAYS[way](otel_client)
    span = telemetry.span()
    attrs = attrs_of(span)
    assert span.status.status_code != StatusCode.ERROR
    assert attrs["gen_ai.response.id"].startswith("chatcmpl-")
    assert attrs["gen_ai.response.model"]
    assert tuple(attrs["gen_ai.response.finish_reasons"]) == ("stop",)
    assert attrs["gen_ai.usage.input_tokens"] > 0
    assert attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["anyapi.request_id"] == server.requests[-1].request_id


async def test_a_cut_streaming_response_stream_is_an_error_span(
    otel_client: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """A with_streaming_response stream cut before its end ends its span as an error."""
    chunk = {
        "id": "chatcmpl-cut",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}],
    }
    server.queue(SSEResponse([chunk], done=False))
    with pytest.raises(aa.APIConnectionError):
        async with otel_client.chat.completions.with_streaming_response.create(
            model="m", messages=MSGS, stream=True
        ) as response:
            async for _ in await response.parse():
                pass
    span = telemetry.span()
    assert span.status.status_code == StatusCode.ERROR
    assert attrs_of(span)["error.type"] == "APIConnectionError"


async def test_a_failed_streaming_response_read_is_an_error_span(
    otel_client: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """A body that is not a completion fails parse(), and the span says so."""
    from anyapi_async.testing import RawResponse

    server.queue(RawResponse(b"not json", content_type="application/json"))
    with pytest.raises(aa.APIResponseValidationError):
        async with otel_client.chat.completions.with_streaming_response.create(
            model="m", messages=MSGS
        ) as response:
            await response.parse()
    span = telemetry.span()
    assert span.status.status_code == StatusCode.ERROR
    assert attrs_of(span)["error.type"] == "APIResponseValidationError"


async def test_a_streaming_response_read_as_lines_ends_its_span(
    otel_client: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """Read as bytes, the response is not decoded; the span still ends, with the request id."""
    async with otel_client.chat.completions.with_streaming_response.create(
        model="m", messages=MSGS
    ) as response:
        lines = [line async for line in response.iter_lines()]
        assert not telemetry.spans()  # the span waits for the block's end
    assert lines
    attrs = attrs_of(telemetry.span())
    assert attrs["anyapi.request_id"] == server.requests[-1].request_id
    assert "gen_ai.response.id" not in attrs
