"""stream_tools() against the local server: event order, errors, the bound, closing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import anyapi_async
from anyapi_async import (
    AsyncClient,
    ChatCompletionMessageParam,
    ToolCallErrorEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
    ToolRoundsExceededError,
    ToolRunDoneEvent,
    ToolRunEvent,
    ToolRunRoundEvent,
    ToolRunTextDeltaEvent,
    function_tool,
)
from anyapi_async.testing import Generated, LocalServer, SSEResponse

MODEL = "gpt-test"
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Plan a trip to Oslo."}]


def chat_bodies(server: LocalServer) -> list[Any]:
    return [r.json for r in server.requests_for("/chat/completions")]


def tool_call_stream(name: str, arguments: str) -> SSEResponse:
    """A streamed answer asking for one call, its arguments in two fragments."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-tools",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    head = {"index": 0, "id": "call_x", "type": "function", "function": {"name": name}}
    half = len(arguments) // 2
    return SSEResponse(
        [
            chunk({"role": "assistant", "content": None, "tool_calls": [head]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[:half]}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]}),
            chunk({}, "tool_calls"),
        ]
    )


def kinds(events: list[ToolRunEvent]) -> list[str]:
    """Event types, with runs of text deltas folded into one entry per round."""
    out: list[str] = []
    for event in events:
        name = f"{event.type}"
        if isinstance(event, ToolRunTextDeltaEvent):
            name = f"text:{event.round}"
            if out and out[-1] == name:
                continue
        elif isinstance(event, ToolRunRoundEvent):
            name = f"round:{event.round}"
        elif isinstance(event, ToolCallStartEvent):
            name = f"start:{event.name}"
        elif isinstance(event, (ToolCallResultEvent, ToolCallErrorEvent)):
            name = f"{event.type.split('.')[1]}:{event.result.name}"
        out.append(name)
    return out


async def test_event_order_with_parallel_calls_and_a_failing_tool(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """Round 1 calls three tools at once; results come as they finish, errors included."""
    fast_done, failing_done = asyncio.Event(), asyncio.Event()

    async def fast(city: str) -> dict[str, str]:
        """Fast lookup."""
        fast_done.set()
        return {"city": city, "sky": "clear"}

    async def failing(city: str) -> str:
        """Fails after fast."""
        await fast_done.wait()
        failing_done.set()
        raise RuntimeError("no trains today")

    async def slow(city: str) -> str:
        """Finishes last."""
        await failing_done.wait()
        return "hotel booked"

    events: list[ToolRunEvent] = []
    async with anyapi_client.chat.completions.stream_tools(
        model=MODEL, messages=USER, tools=[slow, failing, fast], tool_choice="required"
    ) as run:
        async for event in run:
            events.append(event)
        result = await run.get_final_result()

    assert kinds(events) == [
        "round:1",  # a round of tool calls has no text here
        "start:slow", "start:failing", "start:fast",
        "result:fast", "error:failing", "result:slow",
        "text:2", "round:2", "run.done",
    ]  # fmt: skip
    text = "".join(e.delta for e in events if isinstance(e, ToolRunTextDeltaEvent))
    assert text and text == result.content
    done = events[-1]
    assert isinstance(done, ToolRunDoneEvent) and done.result is result is run.result
    error = next(e for e in events if isinstance(e, ToolCallErrorEvent))
    assert error.result.error == "failing raised RuntimeError: no trains today"
    starts = [e for e in events if isinstance(e, ToolCallStartEvent)]
    assert all(s.round == 1 and '"city"' in s.arguments for s in starts)
    # The model gets the results in call order, whatever order they finished in.
    second = chat_bodies(anyapi_server)[1]
    call_ids = [c["id"] for c in second["messages"][1]["tool_calls"]]
    assert [m["tool_call_id"] for m in second["messages"][2:]] == call_ids == [s.id for s in starts]
    assert second["messages"][3]["content"].startswith("Error: failing raised RuntimeError")
    assert second["tool_choice"] == "auto" and second["stream"] is True
    assert result.rounds == 2 and [c.name for c in result.tool_calls] == ["slow", "failing", "fast"]
    assert result.usage.total_tokens > 0  # usage asked for in every stream
    assert second["stream_options"] == {"include_usage": True}


async def test_same_conversation_as_run_tools(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """Streamed or not, the run sends the same requests and ends with the same messages."""

    @function_tool
    def get_weather(city: str) -> str:
        """Weather in a city."""
        return f"sunny in {city}"

    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "What does get_weather say for Oslo?"}
    ]
    plain = await anyapi_client.chat.completions.run_tools(
        model=MODEL, messages=messages, tools=[get_weather]
    )
    async with anyapi_client.chat.completions.stream_tools(
        model=MODEL, messages=messages, tools=[get_weather]
    ) as run:
        streamed = await run.get_final_result()
    assert streamed.messages == plain.messages
    assert streamed.rounds == plain.rounds == 2
    assert streamed.content == plain.content
    bodies = chat_bodies(anyapi_server)
    for a, b in zip(bodies[:2], bodies[2:], strict=True):
        assert {k: v for k, v in b.items() if k not in ("stream", "stream_options")} == a


async def test_rounds_are_bounded(anyapi_client: AsyncClient, anyapi_server: LocalServer) -> None:
    """Past max_rounds: the last round's event, then ToolRoundsExceededError."""
    events: list[ToolRunEvent] = []

    def lookup(city: str) -> str:
        """Look a city up."""
        return city

    anyapi_server.queue(*(tool_call_stream("lookup", '{"city": "Oslo"}') for _ in range(2)))
    with pytest.raises(ToolRoundsExceededError, match=r"\(lookup\) after 2 requests") as e:
        async with anyapi_client.chat.completions.stream_tools(
            model=MODEL, messages=USER, tools=[lookup], max_rounds=2
        ) as run:
            async for event in run:
                events.append(event)
    assert len(chat_bodies(anyapi_server)) == 2
    assert kinds(events) == ["round:1", "start:lookup", "result:lookup", "round:2"]
    assert [c.round for c in e.value.tool_calls] == [1]  # round 2's calls were not run
    assert run.result is None


async def test_break_mid_round_releases_the_connection(anyapi_server: LocalServer) -> None:
    """A break during a round's text closes its stream: a pool of one is free again."""
    anyapi_server.queue(Generated(stall_after=6))  # would hold the connection forever

    def lookup(city: str) -> str:
        """Look a city up."""
        return city

    async with AsyncClient(
        api_key="sk-test", base_url=anyapi_server.base_url, max_connections=1
    ) as client:
        async with client.chat.completions.stream_tools(
            model=MODEL, messages=USER, tools=[lookup]
        ) as run:
            async for event in run:
                assert isinstance(event, ToolRunTextDeltaEvent)
                break
        ok = await asyncio.wait_for(client.chat.completions.create(model=MODEL, messages=USER), 5)
    assert ok.choices and run.result is None


async def test_cancel_mid_stream_releases_the_connection(anyapi_server: LocalServer) -> None:
    """Cancelling the task reading a round's text releases the connection."""
    anyapi_server.queue(Generated(stall_after=6))
    first = asyncio.Event()

    def lookup(city: str) -> str:
        """Look a city up."""
        return city

    async with AsyncClient(
        api_key="sk-test", base_url=anyapi_server.base_url, max_connections=1
    ) as client:

        async def consume() -> None:
            async with client.chat.completions.stream_tools(
                model=MODEL, messages=USER, tools=[lookup]
            ) as run:
                async for _ in run:
                    first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        ok = await asyncio.wait_for(client.chat.completions.create(model=MODEL, messages=USER), 5)
    assert ok.choices


async def test_cancel_during_tools_cancels_them(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """Cancelled while tools run: the tools are cancelled too, and no more requests go out."""
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def wait_forever(city: str) -> str:
        """Never returns."""
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return city  # pragma: no cover

    async def consume() -> None:
        async with anyapi_client.chat.completions.stream_tools(
            model=MODEL, messages=USER, tools=[wait_forever], tool_choice="required"
        ) as run:
            async for _ in run:
                pass

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(cancelled.wait(), 5)
    assert len(chat_bodies(anyapi_server)) == 1


async def test_break_between_results_cancels_the_rest(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """Leaving after the first result cancels the call still running."""
    cancelled = asyncio.Event()

    async def quick(city: str) -> str:
        """Returns at once."""
        return city

    async def stuck(city: str) -> str:
        """Never returns."""
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return city  # pragma: no cover

    async with anyapi_client.chat.completions.stream_tools(
        model=MODEL, messages=USER, tools=[stuck, quick], tool_choice="required"
    ) as run:
        async for event in run:
            if isinstance(event, ToolCallResultEvent):
                assert event.result.name == "quick"
                break
    await asyncio.wait_for(cancelled.wait(), 5)
    assert len(chat_bodies(anyapi_server)) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_rounds": 0}, ValueError, "max_rounds must be an int >= 1"),
        ({"n": 2}, ValueError, "n must be 1"),
        ({"tools": []}, TypeError, "non-empty list"),
        ({"model": ""}, ValueError, "model is required"),
        ({"temprature": 0}, TypeError, r"Unknown parameter\(s\) temprature"),
    ],
)
async def test_mistakes_fail_at_the_call(
    anyapi_client: AsyncClient,
    anyapi_server: LocalServer,
    kwargs: dict[str, Any],
    error: type[Exception],
    match: str,
) -> None:
    """Bad arguments raise from stream_tools() itself, before any request."""

    def lookup(city: str) -> str:
        """Look a city up."""
        return city

    call: dict[str, Any] = {"model": MODEL, "messages": USER, "tools": [lookup], **kwargs}
    with pytest.raises(error, match=match):
        anyapi_client.chat.completions.stream_tools(**call)
    assert chat_bodies(anyapi_server) == []


def test_event_types_are_exported() -> None:
    """The event classes are public names of the package."""
    for name in (
        "ToolRunTextDeltaEvent", "ToolRunRoundEvent", "ToolCallStartEvent",
        "ToolCallResultEvent", "ToolCallErrorEvent", "ToolRunDoneEvent", "ToolRunStream",
    ):  # fmt: skip
        cls = getattr(anyapi_async, name)
        assert cls.__module__ == "anyapi_async" and name in anyapi_async.__all__
