"""Static checks of parse(), stream_parse(), function_tool and run_tools: run by mypy."""

from __future__ import annotations

from typing import Any

import msgspec
from typing_extensions import assert_type

import anyapi_async as aa
from anyapi_async._parsing import ParsedChatCompletion, ParsedChatCompletionStream
from anyapi_async._tools import FunctionTool, ToolRunResult, function_tool

MSGS: list[Any] = [{"role": "user", "content": "hi"}]


class Person(msgspec.Struct):
    name: str
    age: int


async def parsing(client: aa.AsyncClient) -> None:
    c = await client.chat.completions.parse(model="m", messages=MSGS, response_format=Person)
    assert_type(c, ParsedChatCompletion[Person])
    assert_type(c.choices[0].message.parsed, Person | None)
    assert_type(c.choices[0].message.refusal, str | None)
    assert_type(c.usage, aa.CompletionUsage | None)
    async with client.chat.completions.stream_parse(
        model="m", messages=MSGS, response_format=Person, max_tokens=10
    ) as s:
        assert_type(s, ParsedChatCompletionStream[Person])
        async for text in s.text_deltas():
            assert_type(text, str)
        assert_type(await s.get_final_parsed(), Person | None)
        assert_type(await s.get_final_completion(), ParsedChatCompletion[Person])


@function_tool
async def lookup(city: str, days: int = 1) -> dict[str, float]:
    """Look a city up."""
    return {}


@function_tool(name="add_numbers", strict=True)
def add(a: int, b: int) -> int:
    """Add."""
    return a + b


async def tools(client: aa.AsyncClient) -> None:
    # Decorating keeps the function's own signature: calling the tool calls the function.
    assert_type(await lookup("Oslo", days=2), dict[str, float])
    assert isinstance(lookup, FunctionTool)
    assert_type(add(1, 2), int)
    result = await client.chat.completions.run_tools(
        model="m", messages=MSGS, tools=[lookup, add], max_rounds=3, temperature=0
    )
    assert_type(result, ToolRunResult)
    assert_type(result.content, str | None)


async def live_forms(client: aa.AsyncClient) -> None:
    async with client.chat.completions.stream_parse(
        model="m", messages=MSGS, response_format=Person
    ) as s:
        async for snapshot in s.partial_objects():
            assert_type(snapshot, Any)
    async with client.chat.completions.stream_tools(
        model="m", messages=MSGS, tools=[lookup], max_rounds=3, temperature=0
    ) as run:
        assert_type(run, aa.ToolRunStream)
        async for event in run:
            assert_type(event, aa.ToolRunEvent)
            if event.type == "text.delta":
                assert_type(event, aa.ToolRunTextDeltaEvent)
                assert_type(event.delta, str)
            elif event.type == "tool_call.start":
                assert_type(event.arguments, str)
            elif event.type == "tool_call.error":
                assert_type(event.result.error, str | None)
            elif event.type == "run.done":
                assert_type(event.result, ToolRunResult)
        assert_type(await run.get_final_result(), ToolRunResult)
