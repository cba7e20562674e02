"""to_dict(): the whole payload as received, fields the Structs do not name included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

import anyapi_async as aa
from anyapi_async.testing import JSONResponse, LocalServer, RawResponse, SSEResponse

from ..conftest import completion_body

MSGS: list[Any] = [{"role": "user", "content": "hi"}]
FIXTURES = Path(__file__).parent.parent / "fixtures"


def _chunk(content: str | None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "provider": "Groq",
        "choices": [
            {
                "index": 0,
                "delta": {"content": content, "annotations": [{"type": "url_citation"}]},
                "finish_reason": finish,
                "native_finish_reason": finish,
            }
        ],
        **extra,
    }


async def test_completion_keeps_unknown_fields_at_every_depth(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """A gateway's provider, reasoning_details, usage.cost_details and nulls all come back."""
    sent = json.loads((FIXTURES / "anyapi_extra_fields.json").read_text())
    server.queue(JSONResponse(sent))
    c = await client.chat.completions.create(model="m", messages=MSGS)
    assert c.to_dict() == sent
    assert c.to_dict()["choices"][0]["message"]["reasoning_details"][0]["text"] == "Let me think."
    changed = c.to_dict()
    changed["provider"] = "other"
    assert c.to_dict()["provider"] == "DeepSeek"  # a new dict on each call
    assert "provider" not in repr(c)  # the kept body is no field
    assert c == msgspec.json.decode(json.dumps(sent), type=aa.ChatCompletion)


async def test_lenient_body_is_returned_as_received(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """A body that needed the tolerant pass (null index, float created) is not normalised."""
    sent = completion_body("x", audio={"id": "a1", "data": "UklG"})
    sent["created"] = 1.7e9
    sent["choices"][0]["index"] = None
    sent["citations"] = ["https://example.org"]
    server.queue(RawResponse(json.dumps(sent, indent=2), content_type="application/json"))
    c = await client.chat.completions.create(model="m", messages=MSGS)
    assert c.created == 1_700_000_000 and c.choices[0].index == 0
    assert c.to_dict() == sent


async def test_chunks_keep_their_events(client: aa.AsyncClient, server: LocalServer) -> None:
    """Each chunk's to_dict() is its event; the folded completion's is the whole body."""
    events = [_chunk("He"), _chunk("llo", "stop", usage={"prompt_tokens": 1, "cost": 0.5})]
    server.queue(SSEResponse([b": comment\n\n", *events]))
    stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True)
    async with stream:
        chunks = [chunk async for chunk in stream]
    assert [chunk.to_dict() for chunk in chunks] == events

    server.queue(SSEResponse(events))
    async with client.chat.completions.stream(model="m", messages=MSGS) as s:
        final = await s.get_final_completion()
    # The body a non-streamed request would have had: every named field, usage as sent,
    # and the gateway's top-level provider (per-chunk choice extras are not kept).
    assert final.to_dict() == {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "cost": 0.5},
        "provider": "Groq",
    }
    assert msgspec.json.decode(msgspec.json.encode(final.to_dict()), type=aa.ChatCompletion) == (
        final
    )


async def test_completion_answering_a_stream_request(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """A server that ignores stream=true: the one chunk's to_dict() is the completion body."""
    sent = {**completion_body("whole"), "provider": "Mistral"}
    server.queue(JSONResponse(sent))
    stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True)
    async with stream:
        chunks = [chunk async for chunk in stream]
    assert len(chunks) == 1 and chunks[0].choices[0].delta.content == "whole"
    assert chunks[0].to_dict() == sent


class Person(msgspec.Struct):
    name: str


async def test_parsed_completions_and_models_keep_their_bodies(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """parse() results, models.retrieve() and models.list() give their bodies back too."""
    sent = {**completion_body('{"name": "Ada"}'), "provider": "X"}
    server.queue(JSONResponse(sent))
    c = await client.chat.completions.parse(model="m", messages=MSGS, response_format=Person)
    assert c.choices[0].message.parsed == Person(name="Ada")
    assert c.to_dict() == sent
    model = await client.models.retrieve("m")
    expected = {"id": "m", "object": "model", "created": 1_700_000_000, "owned_by": "anyapi"}
    assert model.to_dict() == expected
    models = await client.models.list()
    assert models.to_dict() == {"object": "list", "data": [{**expected, "id": server.model}]}


def test_objects_built_by_hand() -> None:
    """With no body to keep, to_dict() is msgspec.to_builtins: the fields set."""
    c = aa.ChatCompletion(id="x", model="m", choices=[aa.Choice(finish_reason="stop")])
    assert c.to_dict() == {
        "id": "x",
        "model": "m",
        "choices": [{"message": {}, "finish_reason": "stop"}],
    }
    assert aa.ChatCompletionChunk(id="y").to_dict() == {"id": "y"}
