"""run_tools() against the local server: rounds, parallel calls, errors and the bound."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import pytest

from anyapi_async import AsyncClient, ChatCompletion, ChatCompletionMessageParam
from anyapi_async._tools import (
    ToolCallResult,
    ToolRoundsExceededError,
    function_tool,
)
from anyapi_async.testing import JSONResponse, LocalServer

MODEL = "gpt-test"


def tool_call_reply(*calls: tuple[str, str], with_ids: bool = True) -> JSONResponse:
    """A completion asking for ``calls`` (name, JSON arguments)."""
    return JSONResponse(
        {
            "id": "chatcmpl-tools",
            "object": "chat.completion",
            "created": 1,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": f"call_{i}" if with_ids else "",
                                "type": "function",
                                "function": {"name": name, "arguments": arguments},
                            }
                            for i, (name, arguments) in enumerate(calls)
                        ],
                    },
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
    )


def chat_bodies(server: LocalServer) -> list[Any]:
    return [r.json for r in server.requests_for("/chat/completions")]


@function_tool
async def get_weather(city: str, unit: Literal["C", "F"] = "C") -> dict[str, Any]:
    """Current weather in a city.

    Args:
        city: the city name.
    """
    return {"city": city, "temperature": 21, "unit": unit}


async def test_required_first_round_then_answer(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """Round 1 calls the tools (tool_choice kept), round 2 uses auto and gets the answer."""

    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Weather in Oslo, and 2 + 3?"}
    ]
    seen: list[ToolCallResult] = []
    result = await anyapi_client.chat.completions.run_tools(
        model=MODEL,
        messages=messages,
        tools=[get_weather, add],
        tool_choice="required",
        on_tool_result=seen.append,
        temperature=0,
    )
    assert result.rounds == 2
    assert [c.name for c in result.tool_calls] == ["get_weather", "add"]
    assert all(c.ok and c.round == 1 for c in result.tool_calls)
    assert seen == result.tool_calls
    assert isinstance(result.completion, ChatCompletion)
    assert result.content and result.content == result.completion.choices[0].message.content
    # The conversation: user, assistant asking, two tool results, the answer.
    roles = [m["role"] for m in result.messages]
    assert roles == ["user", "assistant", "tool", "tool", "assistant"]
    assert messages == [{"role": "user", "content": "Weather in Oslo, and 2 + 3?"}]
    first, second = chat_bodies(anyapi_server)
    assert first["tool_choice"] == "required" and second["tool_choice"] == "auto"
    assert first["temperature"] == 0 == second["temperature"]
    assert [t["function"]["name"] for t in first["tools"]] == ["get_weather", "add"]
    asked = second["messages"][1]["tool_calls"]
    answers = second["messages"][2:]
    assert [a["tool_call_id"] for a in answers] == [c["id"] for c in asked]
    sum_args = json.loads(result.tool_calls[1].arguments)
    assert answers[1]["content"] == str(sum_args["a"] + sum_args["b"])


async def test_calls_of_a_round_run_concurrently(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """Two tools that each wait for the other finish: they run at the same time."""
    ping_seen, pong_seen = asyncio.Event(), asyncio.Event()

    async def ping() -> str:
        ping_seen.set()
        await pong_seen.wait()
        return "ping done"

    async def pong() -> str:
        pong_seen.set()
        await ping_seen.wait()
        return "pong done"

    anyapi_server.queue(tool_call_reply(("ping", "{}"), ("pong", "{}")))
    result = await anyapi_client.chat.completions.run_tools(
        model=MODEL,
        messages=[{"role": "user", "content": "go"}],
        tools=[ping, pong],
        tool_timeout=10,  # sequential execution would time out here instead of hanging
    )
    assert [c.output for c in result.tool_calls] == ["ping done", "pong done"]
    # Usage is summed over both requests (the scripted one counts 15 tokens).
    final = result.completion.usage
    assert final is not None and result.usage.total_tokens == 15 + final.total_tokens


async def test_bad_arguments_and_failures_go_back_to_the_model(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """Invalid arguments, a raising tool and an unknown name become tool error messages."""
    ran: list[str] = []

    def divide(a: float, b: float) -> float:
        """Divide a by b."""
        ran.append(f"{a}/{b}")
        return a / b

    anyapi_server.queue(
        tool_call_reply(
            ("divide", '{"a": "ten", "b": 2}'),
            ("divide", '{"a": 1, "b": 0}'),
            ("search", '{"q": "x"}'),
            ("divide", "{not json"),
        )
    )
    result = await anyapi_client.chat.completions.run_tools(
        model=MODEL, messages=[{"role": "user", "content": "divide"}], tools=[divide]
    )
    assert ran == ["1.0/0.0"]  # only the valid call reached the function
    outputs = [m["content"] for m in chat_bodies(anyapi_server)[1]["messages"][2:]]
    assert outputs[0].startswith("Error: invalid arguments for divide: Expected `float`")
    assert "`$.a`" in outputs[0]
    assert outputs[1] == "Error: divide raised ZeroDivisionError: float division by zero"
    assert outputs[2] == "Error: unknown tool 'search'; available tools: divide"
    assert outputs[3].startswith("Error: invalid arguments for divide: JSON is malformed")
    assert [c.ok for c in result.tool_calls] == [False, False, False, False]
    assert result.rounds == 2 and result.content


async def test_rounds_are_bounded(anyapi_client: AsyncClient, anyapi_server: LocalServer) -> None:
    """A model that keeps asking for tools ends in ToolRoundsExceededError."""
    anyapi_server.queue(*(tool_call_reply(("get_weather", '{"city": "Oslo"}')) for _ in range(3)))
    with pytest.raises(ToolRoundsExceededError, match=r"\(get_weather\) after 3 requests") as e:
        await anyapi_client.chat.completions.run_tools(
            model=MODEL,
            messages=[{"role": "user", "content": "loop"}],
            tools=[get_weather],
            max_rounds=3,
        )
    assert len(chat_bodies(anyapi_server)) == 3
    # The calls of the last answer were not run.
    assert [c.round for c in e.value.tool_calls] == [1, 2]
    assert e.value.completion.choices[0].finish_reason == "tool_calls"
    assert [m["role"] for m in e.value.messages].count("tool") == 2


async def test_missing_ids_are_filled_in(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """A provider that sends no call ids still gets results matched to calls."""
    anyapi_server.queue(tool_call_reply(("get_weather", '{"city": "Rome"}'), with_ids=False))
    await anyapi_client.chat.completions.run_tools(
        model=MODEL, messages=[{"role": "user", "content": "rome"}], tools=[get_weather]
    )
    second = chat_bodies(anyapi_server)[1]["messages"]
    assert second[1]["tool_calls"][0]["id"] == "call_1_0" == second[2]["tool_call_id"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_rounds": 0}, ValueError, "max_rounds must be an int >= 1"),
        ({"n": 2}, ValueError, "n must be 1"),
        ({"tools": []}, TypeError, "non-empty list"),
        ({"tools": [{"type": "function"}]}, TypeError, "functions or FunctionTool"),
        ({"tools": [get_weather, get_weather]}, ValueError, "Two tools are named"),
    ],
)
async def test_mistakes_fail_before_io(
    anyapi_client: AsyncClient,
    anyapi_server: LocalServer,
    kwargs: dict[str, Any],
    error: type[Exception],
    match: str,
) -> None:
    """Bad runner arguments raise before any request."""
    params: dict[str, Any] = {"tools": [get_weather], **kwargs}
    with pytest.raises(error, match=match):
        await anyapi_client.chat.completions.run_tools(
            model=MODEL, messages=[{"role": "user", "content": "x"}], **params
        )
    assert chat_bodies(anyapi_server) == []


@pytest.mark.parametrize("streamed", [False, True])
async def test_stuck_sync_tools_do_not_starve_the_loops_executor(
    anyapi_client: AsyncClient, anyapi_server: LocalServer, streamed: bool
) -> None:
    """Eight sync tools stuck past tool_timeout hold none of the default executor's threads.

    The loop's default executor gets eight threads (what a small machine has), so tools
    run there would hold all of them: asyncio.to_thread and the DNS lookup of a new
    connection (aiohttp resolves through that executor) would wait for the tools.
    """
    release = threading.Event()
    started: list[str] = []

    def block(n: int) -> str:
        """Wait until released."""
        started.append(threading.current_thread().name)
        release.wait()
        return "released"

    loop = asyncio.get_running_loop()
    default = ThreadPoolExecutor(8)
    loop.set_default_executor(default)
    try:
        calls = [("block", json.dumps({"n": n})) for n in range(8)]
        anyapi_server.queue(tool_call_reply(*calls))
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "go"}]
        if streamed:
            async with anyapi_client.chat.completions.stream_tools(
                model=MODEL, messages=messages, tools=[block], tool_timeout=0.3
            ) as run:
                result = await run.get_final_result()
        else:
            result = await anyapi_client.chat.completions.run_tools(
                model=MODEL, messages=messages, tools=[block], tool_timeout=0.3
            )
        assert [c.error for c in result.tool_calls] == ["block timed out after 0.3 s"] * 8
        assert all(name.startswith("anyapi-tool") for name in started)  # the run's threads
        # Both would wait until release.set() below if the tools held the default executor.
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 30) == "free"
        local = anyapi_server.url.replace("127.0.0.1", "localhost") + "/v1"
        async with AsyncClient(api_key="sk-test", base_url=local, max_retries=0) as fresh:
            models = await asyncio.wait_for(fresh.models.list(), 30)
        assert models.data
    finally:
        release.set()
        default.shutdown(wait=True)
