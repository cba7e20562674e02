"""ChatCompletionStream.events() over recorded streams: every event, in order, with its values."""

from __future__ import annotations

from typing import Any

import pytest

import anyapi_async as aa
from anyapi_async.testing import LocalServer, SSEResponse

MSGS: list[Any] = [{"role": "user", "content": "Go"}]


def chunk(*choices: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-e",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": list(choices),
    }


def choice(index: int = 0, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    return {"index": index, "delta": delta, "finish_reason": finish}


def fragment(
    index: int | None, arguments: str, *, id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    """A tool-call fragment; id, type and name only when given (the first fragment)."""
    function: dict[str, Any] = {"arguments": arguments}
    body: dict[str, Any] = {"function": function}
    if index is not None:
        body["index"] = index
    if id is not None:
        body.update(id=id, type="function")
    if name is not None:
        function["name"] = name
    return body


def describe(event: aa.StreamEvent) -> tuple[Any, ...]:
    """An event as a comparable tuple (the chunk events only by their type)."""
    if isinstance(event, aa.ChunkEvent):
        return ("chunk",)
    if isinstance(event, aa.LogprobsEvent):
        return (event.type, event.choice_index, [e.token for e in event.entries])
    if isinstance(event, aa.ToolCallArgumentsDeltaEvent):
        return (event.type, event.choice_index, event.index, event.name, event.delta)
    if isinstance(event, aa.ToolCallDoneEvent):
        return (event.type, event.choice_index, event.index, event.id, event.name, event.arguments)
    if isinstance(event, aa.ContentDoneEvent):
        return (event.type, event.choice_index, event.content, event.finish_reason)
    return (event.type, event.choice_index, event.delta)


async def events_of(
    client: aa.AsyncClient, server: LocalServer, chunks: list[dict[str, Any]]
) -> tuple[list[tuple[Any, ...]], aa.ChatCompletion]:
    server.queue(SSEResponse(chunks))
    async with client.chat.completions.stream(model="m", messages=MSGS) as s:
        events = [describe(e) async for e in s.events()]
        final = await s.get_final_completion()
    return events, final


async def test_text_reasoning_refusal_and_logprobs_events(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """Two interleaved choices give their deltas, logprobs and a done event with the whole text."""
    logprob = {"token": "Hi", "logprob": -0.1, "bytes": None, "top_logprobs": []}
    events, final = await events_of(
        client,
        server,
        [
            chunk(choice(0, role="assistant", reasoning_content="think"), choice(1, content="")),
            chunk(
                {**choice(0, content="Hi"), "logprobs": {"content": [logprob]}},
                choice(1, refusal="No"),
            ),
            chunk(choice(0, reasoning="more"), choice(1, refusal=".", finish="stop")),
            chunk(choice(0, content=" there", finish="length")),
        ],
    )
    assert events == [
        ("chunk",),
        ("reasoning.delta", 0, "think"),
        ("chunk",),
        ("content.delta", 0, "Hi"),
        ("logprobs.content.delta", 0, ["Hi"]),
        ("refusal.delta", 1, "No"),
        ("chunk",),
        ("reasoning.delta", 0, "more"),
        ("refusal.delta", 1, "."),
        ("content.done", 1, "", "stop"),
        ("chunk",),
        ("content.delta", 0, " there"),
        ("content.done", 0, "Hi there", "length"),
    ]
    assert [c.message.content for c in final.choices] == ["Hi there", ""]
    assert final.choices[1].message.refusal == "No."


async def test_tool_call_events_follow_the_merged_calls(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """Argument deltas name their call (id and name sent once); done events carry the whole call."""
    events, final = await events_of(
        client,
        server,
        [
            chunk(choice(tool_calls=[fragment(0, "", id="a", name="f")])),
            chunk(choice(tool_calls=[fragment(0, '{"x":')])),
            chunk(choice(tool_calls=[fragment(1, "{}", id="b", name="g")])),
            chunk(choice(tool_calls=[fragment(0, "1}")])),
            chunk(choice(finish="tool_calls")),
        ],
    )
    assert [e for e in events if e[0] != "chunk"] == [
        ("tool_calls.function.arguments.delta", 0, 0, "f", '{"x":'),
        ("tool_calls.function.arguments.delta", 0, 1, "g", "{}"),
        ("tool_calls.function.arguments.delta", 0, 0, "f", "1}"),
        ("tool_calls.function.arguments.done", 0, 0, "a", "f", '{"x":1}'),
        ("tool_calls.function.arguments.done", 0, 1, "b", "g", "{}"),
        ("content.done", 0, "", "tool_calls"),
    ]
    calls = final.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("a", "f", '{"x":1}'),
        ("b", "g", "{}"),
    ]


@pytest.mark.parametrize(
    ("index", "call_indexes"), [(None, (0, 1)), (0, (0, 0))], ids=["no index", "all numbered 0"]
)
async def test_several_calls_in_one_delta(
    client: aa.AsyncClient,
    server: LocalServer,
    index: int | None,
    call_indexes: tuple[int, int],
) -> None:
    """Two calls in one delta, told apart only by their ids: each event names its own call."""
    events, final = await events_of(
        client,
        server,
        [
            chunk(
                choice(
                    tool_calls=[
                        fragment(index, "{1}", id="a", name="f"),
                        fragment(index, "{2}", id="b", name="g"),
                    ]
                )
            ),
            chunk(choice(finish="tool_calls")),
        ],
    )
    first, second = call_indexes
    assert [e for e in events if e[0] != "chunk"] == [
        ("tool_calls.function.arguments.delta", 0, first, "f", "{1}"),
        ("tool_calls.function.arguments.delta", 0, second, "g", "{2}"),
        ("tool_calls.function.arguments.done", 0, first, "a", "f", "{1}"),
        ("tool_calls.function.arguments.done", 0, second, "b", "g", "{2}"),
        ("content.done", 0, "", "tool_calls"),
    ]
    calls = final.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("a", "f", "{1}"),
        ("b", "g", "{2}"),
    ]
