"""Decoding replies into the requested type: parsed, refusals, and clear errors (no sockets)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from anyapi_async import APIResponseValidationError, ChatCompletion
from anyapi_async._parsing import (
    ContentValidationError,
    ParsedChatCompletion,
    parse,
    parse_completion,
)
from anyapi_async._schema import response_schema


class Person(msgspec.Struct):
    name: str
    age: int


PERSON = response_schema(Person)


def completion(*choices: dict[str, object]) -> ChatCompletion:
    body = {"id": "c1", "model": "m", "choices": list(choices), "usage": {"total_tokens": 5}}
    return msgspec.convert(body, ChatCompletion)


def choice(content: str | None, index: int = 0, **extra: object) -> dict[str, object]:
    message: dict[str, object] = {"role": "assistant", "content": content}
    message.update(extra)
    return {"index": index, "message": message, "finish_reason": extra.pop("finish", "stop")}


def test_valid_reply_is_parsed_and_fields_kept() -> None:
    """Each choice's content becomes the type; the rest of the completion is unchanged."""
    c = completion(choice('{"name": "Ada", "age": 36}'), choice('{"name": "Al", "age": 41}', 1))
    c.__dict__["_http"] = "http-info"
    parsed = parse_completion(c, PERSON)
    assert isinstance(parsed, ParsedChatCompletion)
    assert [ch.message.parsed for ch in parsed.choices] == [Person("Ada", 36), Person("Al", 41)]
    assert parsed.choices[0].message.content == '{"name": "Ada", "age": 36}'
    assert parsed.id == "c1" and parsed.usage is not None and parsed.usage.total_tokens == 5
    assert parsed.choices[1].index == 1 and parsed.choices[1].finish_reason == "stop"
    assert parsed.__dict__["_http"] == "http-info"


def test_refusal_is_kept_and_not_parsed() -> None:
    """A refusal leaves parsed as None and raises nothing."""
    c = completion(choice(None, refusal="I can't help with that."))
    message = parse_completion(c, PERSON).choices[0].message
    assert message.parsed is None
    assert message.refusal == "I can't help with that."


def test_tool_calls_without_content() -> None:
    """A message with tool calls and no content has nothing to parse."""
    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    message = parse_completion(completion(choice(None, tool_calls=[call])), PERSON)
    assert message.choices[0].message.parsed is None
    assert message.choices[0].message.tool_calls is not None


def test_markdown_fence_is_tolerated() -> None:
    """JSON wrapped in a ```json fence still decodes."""
    c = completion(choice('```json\n{"name": "Ada", "age": 36}\n```'))
    assert parse_completion(c, PERSON).choices[0].message.parsed == Person("Ada", 36)


def test_wrong_shape_names_the_problem() -> None:
    """A reply of the wrong shape raises ContentValidationError naming type and path."""
    c = completion(choice('{"name": "Ada", "age": "old"}'))
    with pytest.raises(ContentValidationError, match=r"does not match Person.*\$\.age") as info:
        parse_completion(c, PERSON)
    err = info.value
    assert isinstance(err, APIResponseValidationError)
    assert err.content == '{"name": "Ada", "age": "old"}'
    assert err.choice_index == 0 and err.finish_reason == "stop"
    assert err.completion is c
    assert "\n" not in str(err)


def test_not_json() -> None:
    """Prose instead of JSON is reported as such."""
    with pytest.raises(ContentValidationError, match="is not valid JSON"):
        parse_completion(completion(choice("Sure! Ada is 36.")), PERSON)


def test_cut_by_length() -> None:
    """JSON cut by max_tokens says so, with finish_reason available."""
    c = completion(choice('{"name": "Ad', finish="length"))
    with pytest.raises(ContentValidationError, match="cut at the token limit") as info:
        parse_completion(c, PERSON)
    assert info.value.finish_reason == "length"


def test_parsed_completion_encodes() -> None:
    """A parsed completion re-encodes to JSON with its parsed object."""
    parsed = parse_completion(completion(choice('{"name": "Ada", "age": 36}')), PERSON)
    data = msgspec.json.decode(msgspec.json.encode(parsed))
    assert data["choices"][0]["message"]["parsed"] == {"name": "Ada", "age": 36}


async def test_parse_sends_through_the_create_it_is_given() -> None:
    """The helper needs no client: any ``create`` callable will do."""
    sent: list[dict[str, Any]] = []

    async def create(**request: Any) -> ChatCompletion:
        sent.append(request)
        return completion(choice('{"name": "Ada", "age": 36}'))

    c = await parse(create, "m", [{"role": "user", "content": "hi"}], Person, {"seed": 1})
    assert c.choices[0].message.parsed == Person("Ada", 36)
    assert sent[0]["model"] == "m" and sent[0]["seed"] == 1
    assert sent[0]["response_format"]["json_schema"]["name"] == "Person"
