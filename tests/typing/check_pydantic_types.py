"""Static checks of parse(), stream_parse() and function_tool with pydantic models: run by mypy."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from typing_extensions import assert_type

import anyapi_async as aa
from anyapi_async._parsing import ParsedChatCompletion, ParsedChatCompletionStream
from anyapi_async._tools import FunctionTool, function_tool

MSGS: list[Any] = [{"role": "user", "content": "hi"}]


class Address(BaseModel):
    city: str


class Person(BaseModel):
    name: str
    address: Address
    nickname: str | None = None


async def parsing(client: aa.AsyncClient) -> None:
    c = await client.chat.completions.parse(model="m", messages=MSGS, response_format=Person)
    assert_type(c, ParsedChatCompletion[Person])
    assert_type(c.choices[0].message.parsed, Person | None)
    async with client.chat.completions.stream_parse(
        model="m", messages=MSGS, response_format=Person
    ) as s:
        assert_type(s, ParsedChatCompletionStream[Person])
        assert_type(await s.get_final_parsed(), Person | None)
        assert_type(await s.get_final_completion(), ParsedChatCompletion[Person])
    assert_type(aa.response_schema(Person), aa.ResponseSchema[Person])
    assert_type(aa.response_schema(Person).decode("{}"), Person)


@function_tool
async def move(person: Person, to: Address) -> Person:
    """Move a person."""
    return person


async def tools(client: aa.AsyncClient) -> None:
    assert isinstance(move, FunctionTool)
    assert_type(await move(Person(name="a", address=Address(city="b")), Address(city="c")), Person)
    result = await client.chat.completions.run_tools(model="m", messages=MSGS, tools=[move])
    assert_type(result.content, str | None)
