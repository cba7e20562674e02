"""Tool calls and structured output from the default generator."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import aiohttp
import msgspec
import pytest

from anyapi_async.testing import LocalServer

from .conftest import chat, chunks_of, stream_events

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}


def calls_of(reply: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert all(c["type"] == "function" and c["id"].startswith("call_") for c in calls)
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]


def check_weather(args: dict[str, Any]) -> None:
    assert set(args) <= {"city", "unit", "days"} and {"city", "days"} <= set(args)
    assert isinstance(args["city"], str) and args.get("unit", "celsius") in (
        "celsius",
        "fahrenheit",
    )
    assert isinstance(args["days"], int) and 1 <= args["days"] <= 7


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def test_required_calls_every_tool_in_parallel(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """tool_choice="required" calls each offered tool once, arguments matching the schema."""
    _, reply = await chat(http, anyapi_server, tools=[WEATHER, TIME], tool_choice="required")
    calls = calls_of(reply)
    assert [name for name, _ in calls] == ["get_weather", "get_time"]
    check_weather(calls[0][1])
    assert calls[1][1] == {}
    assert reply["usage"]["completion_tokens"] > 0


async def test_parallel_tool_calls_false_calls_one(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """parallel_tool_calls=false limits the reply to the first tool."""
    _, reply = await chat(
        http,
        anyapi_server,
        tools=[WEATHER, TIME],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    assert [name for name, _ in calls_of(reply)] == ["get_weather"]


async def test_forced_function_is_obeyed(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """A named tool_choice calls exactly that function, whatever the message says."""
    forced = {"type": "function", "function": {"name": "get_time"}}
    _, reply = await chat(
        http,
        anyapi_server,
        messages=ask("use get_weather"),
        tools=[WEATHER, TIME],
        tool_choice=forced,
    )
    assert calls_of(reply) == [("get_time", {})]
    status, error = await chat(
        http,
        anyapi_server,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "missing"}},
    )
    assert status == 400 and error["error"]["param"] == "tool_choice"


@pytest.mark.parametrize(
    ("messages", "choice", "expected"),
    [
        (ask("What does get_weather say for Lisbon?"), None, ["get_weather"]),
        (ask("please get weather and get time"), "auto", ["get_weather", "get_time"]),
        (ask("Just say hello"), "auto", []),
        (ask("use get_weather"), "none", []),
        (
            [
                *ask("use get_weather"),
                {"role": "assistant", "content": None, "tool_calls": []},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            ],
            "auto",
            [],
        ),
    ],
)
async def test_auto_calls_tools_the_user_names(
    anyapi_server: LocalServer,
    http: aiohttp.ClientSession,
    messages: list[dict[str, Any]],
    choice: str | None,
    expected: list[str],
) -> None:
    """ "auto" calls the tools the last user message names; after a tool result it answers."""
    body: dict[str, Any] = {"messages": messages, "tools": [WEATHER, TIME]}
    if choice is not None:
        body["tool_choice"] = choice
    _, reply = await chat(http, anyapi_server, **body)
    if expected:
        assert [name for name, _ in calls_of(reply)] == expected
    else:
        message = reply["choices"][0]["message"]
        assert message["content"] and "tool_calls" not in message
        assert reply["choices"][0]["finish_reason"] == "stop"


async def test_streamed_tool_calls_arrive_in_fragments(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """The first delta of a call has id, type, name and ""; later ones only arguments."""
    body: dict[str, Any] = {"tools": [WEATHER, TIME], "tool_choice": "required"}
    _, whole = await chat(http, anyapi_server, **body)
    chunks = chunks_of(await stream_events(http, anyapi_server, **body))
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls", [])]
    for index, expected in enumerate(whole["choices"][0]["message"]["tool_calls"]):
        mine = [d for d in deltas if d["index"] == index]
        head, rest = mine[0], mine[1:]
        assert head == {
            **expected,
            "index": index,
            "function": {**expected["function"], "arguments": ""},
        }
        assert len(rest) >= 2
        assert all(
            set(d) == {"index", "function"} and set(d["function"]) == {"arguments"} for d in rest
        )
        assert (
            "".join(d["function"]["arguments"] for d in rest) == expected["function"]["arguments"]
        )


async def test_json_object_reply(anyapi_server: LocalServer, http: aiohttp.ClientSession) -> None:
    """response_format json_object gives a JSON object as the content."""
    _, reply = await chat(http, anyapi_server, response_format={"type": "json_object"})
    value = json.loads(reply["choices"][0]["message"]["content"])
    assert isinstance(value, dict) and value


class Address(msgspec.Struct):
    street: str
    city: str
    zip_code: Annotated[str, msgspec.Meta(min_length=5, max_length=5)]


class Person(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    age: Annotated[int, msgspec.Meta(ge=18, le=99)]
    score: Annotated[float, msgspec.Meta(gt=0, lt=1)]
    role: Literal["admin", "user"]
    home: Address
    previous: list[Address]
    nickname: str | None
    manager: Person | None = None
    tags: dict[str, int] = {}
    active: bool = True


async def test_json_schema_reply_decodes_into_the_type(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """A msgspec schema ($ref/$defs, enums, bounds, recursion) gives content that decodes."""
    schema = msgspec.json.schema(Person)
    assert "$defs" in schema and "$ref" in json.dumps(schema)
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": schema, "strict": True},
    }
    for seed in range(5):
        _, reply = await chat(http, anyapi_server, response_format=response_format, seed=seed)
        person = msgspec.json.decode(reply["choices"][0]["message"]["content"], type=Person)
        assert 18 <= person.age <= 99 and person.role in ("admin", "user")
        assert len(person.home.zip_code) == 5


async def test_json_schema_stream_matches(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """A streamed json_schema reply joins into the same JSON text."""
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "addr", "schema": msgspec.json.schema(Address)},
    }
    _, whole = await chat(http, anyapi_server, response_format=response_format)
    chunks = chunks_of(await stream_events(http, anyapi_server, response_format=response_format))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]
    assert msgspec.json.decode(text, type=Address).city


async def test_legacy_functions_answer_with_function_call(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """The deprecated functions/function_call form gets message.function_call, streamed too."""
    legacy: dict[str, Any] = {
        "functions": [WEATHER["function"], TIME["function"]],
        "function_call": {"name": "get_weather"},
    }
    _, reply = await chat(http, anyapi_server, **legacy)
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "function_call" and "tool_calls" not in choice["message"]
    call = choice["message"]["function_call"]
    assert call["name"] == "get_weather"
    check_weather(json.loads(call["arguments"]))
    chunks = chunks_of(await stream_events(http, anyapi_server, **legacy))
    deltas = [c["choices"][0]["delta"].get("function_call") for c in chunks]
    parts = [d for d in deltas if d is not None]
    assert parts[0] == {"name": "get_weather", "arguments": ""}
    assert "".join(p["arguments"] for p in parts[1:]) == call["arguments"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "function_call"
    _, auto = await chat(http, anyapi_server, functions=legacy["functions"])
    assert auto["choices"][0]["message"]["content"]  # "auto" and no function named: text
