"""parse() and stream_parse() against the local server: the request, parsed, and errors."""

from __future__ import annotations

from typing import Literal

import msgspec
import pytest

from anyapi_async import AsyncClient, ChatCompletionMessageParam
from anyapi_async._parsing import (
    ContentValidationError,
    ParsedChatCompletion,
    ParsedChatCompletionStream,
)
from anyapi_async.testing import Generated, JSONResponse, LocalServer

MODEL = "gpt-test"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Extract the people."}]


class Address(msgspec.Struct):
    city: str
    country: str


class Person(msgspec.Struct):
    name: str
    age: int
    role: Literal["engineer", "manager", "artist"]
    address: Address
    nicknames: list[str]


class Node(msgspec.Struct):
    label: str
    children: list[Node]


class People(msgspec.Struct):
    people: list[Person]
    root: Node


async def test_parse_sends_the_schema_and_decodes(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """The request carries a strict json_schema; every choice's object is decoded."""
    c = await anyapi_client.chat.completions.parse(
        model=MODEL, messages=MESSAGES, response_format=People, n=2, temperature=0
    )
    assert isinstance(c, ParsedChatCompletion)
    assert len(c.choices) == 2
    for choice in c.choices:
        parsed = choice.message.parsed
        assert isinstance(parsed, People)
        assert all(isinstance(p.address, Address) for p in parsed.people)
        assert msgspec.json.decode(choice.message.content or "", type=People) == parsed
    assert c.http is not None and c.http.status_code == 200
    body = anyapi_server.requests_for("/chat/completions")[-1].json
    assert body["temperature"] == 0 and body["n"] == 2
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "People"
    assert fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert list(schema["$defs"]) == ["Node"]  # recursive: kept; Person inlined
    role = schema["properties"]["people"]["items"]["properties"]["role"]
    assert role == {"enum": ["artist", "engineer", "manager"], "type": "string"}


async def test_parse_non_object_type(anyapi_client: AsyncClient) -> None:
    """A list type works (not strict), decoded into a list of Structs."""
    c = await anyapi_client.chat.completions.parse(
        model=MODEL, messages=MESSAGES, response_format=list[Address]
    )
    parsed = c.choices[0].message.parsed
    assert isinstance(parsed, list) and all(isinstance(a, Address) for a in parsed)


async def test_reply_that_does_not_validate(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """A reply of the wrong shape raises ContentValidationError naming the field."""
    anyapi_server.queue(Generated(text='{"city": "Oslo", "country": 47}'))
    with pytest.raises(ContentValidationError, match=r"does not match Address.*\$\.country") as e:
        await anyapi_client.chat.completions.parse(
            model=MODEL, messages=MESSAGES, response_format=Address
        )
    assert e.value.content == '{"city": "Oslo", "country": 47}'
    assert e.value.status_code == 200
    assert e.value.completion.usage is not None


async def test_reply_cut_by_max_tokens(anyapi_client: AsyncClient) -> None:
    """JSON cut by max_tokens is reported as such."""
    with pytest.raises(ContentValidationError, match="cut at the token limit") as e:
        await anyapi_client.chat.completions.parse(
            model=MODEL, messages=MESSAGES, response_format=People, max_tokens=5
        )
    assert e.value.finish_reason == "length"


async def test_refusal_is_not_parsed(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """A refusal comes back in message.refusal with parsed None, and no error."""
    anyapi_server.queue(
        JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1,
                "model": MODEL,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "refusal": "I can't share that.",
                        },
                        "finish_reason": "stop",
                    }
                ],
            }
        )
    )
    c = await anyapi_client.chat.completions.parse(
        model=MODEL, messages=MESSAGES, response_format=Address
    )
    assert c.choices[0].message.refusal == "I can't share that."
    assert c.choices[0].message.parsed is None


async def test_bad_response_format_fails_before_io(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """A type msgspec cannot describe raises TypeError and sends nothing."""
    with pytest.raises(TypeError, match="Cannot build a JSON schema"):
        await anyapi_client.chat.completions.parse(
            model=MODEL, messages=MESSAGES, response_format=object
        )
    assert anyapi_server.requests_for("/chat/completions") == []


async def test_stream_parse_gives_text_then_the_object(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """Partial JSON arrives in pieces; the final completion carries the parsed object."""
    async with anyapi_client.chat.completions.stream_parse(
        model=MODEL, messages=MESSAGES, response_format=People
    ) as stream:
        assert isinstance(stream, ParsedChatCompletionStream)
        pieces = [text async for text in stream.text_deltas()]
        parsed = await stream.get_final_parsed()
        final = await stream.get_final_completion()
    assert len(pieces) > 1
    assert isinstance(parsed, People)
    assert msgspec.json.decode("".join(pieces), type=People) == parsed
    assert final.choices[0].message.parsed is parsed
    body = anyapi_server.requests_for("/chat/completions")[-1].json
    assert body["stream"] is True
    assert body["response_format"]["json_schema"]["name"] == "People"


async def test_stream_parse_invalid_reply(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """A streamed reply that does not validate raises when the final completion is built."""
    anyapi_server.queue(Generated(text="Sorry, here is prose instead."))
    async with anyapi_client.chat.completions.stream_parse(
        model=MODEL, messages=MESSAGES, response_format=Address
    ) as stream:
        text = "".join([t async for t in stream.text_deltas()])
        with pytest.raises(ContentValidationError, match="is not valid JSON"):
            await stream.get_final_completion()
    assert text == "Sorry, here is prose instead."
