"""Streams cut after content, continued on the next route (``continue_streams=True``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import anyapi_async
from anyapi_async import (
    AllRoutesFailedError,
    AttemptInfo,
    ChatCompletionMessageParam,
    Hedge,
    Hooks,
    Route,
    Router,
)
from anyapi_async.otel import instrument
from anyapi_async.testing import ErrorResponse, Generated, SSEResponse

from ..otel.conftest import Telemetry, attrs_of
from .conftest import Clients, HangingServer, Servers

MSGS: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
TEXT = "one two three four five six seven eight"
INSTRUCTION = "Continue exactly where your previous message stopped, without repeating it."


def chats(server: anyapi_async.testing.LocalServer) -> int:
    return len(server.requests_for("/v1/chat/completions"))


def client_tasks() -> set[asyncio.Task[object]]:
    """The loop's tasks but the local servers' connection handlers."""
    return {t for t in asyncio.all_tasks() if "RequestHandler" not in repr(t.get_coro())}


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    t.shutdown()


def router_of(clients: Clients, *, prefill: bool = False, **kwargs: Any) -> Router:
    a, b, c = clients
    return Router(
        [
            Route(a, model="m-a", name="a"),
            Route(b, model="m-b", name="b", prefill=prefill),
            Route(c, name="c"),
        ],
        **kwargs,
    )


async def partial_of(server: anyapi_async.testing.LocalServer, client: Any) -> str:
    """What route A delivers before its cut (the same scripted reply, read to the cut)."""
    server.queue(Generated(text=TEXT, cut_after=3))
    stream = await client.chat.completions.create(model="m-a", messages=MSGS, stream=True)
    text = ""
    with pytest.raises(anyapi_async.APIConnectionError):
        async with stream:
            async for chunk in stream:
                text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    server.reset()
    return text


@pytest.mark.parametrize("prefill", [True, False])
async def test_a_cut_text_stream_is_continued_on_the_next_route(
    servers: Servers, clients: Clients, prefill: bool
) -> None:
    partial = await partial_of(servers[0], clients[0])
    assert partial and TEXT.startswith(partial) and partial != TEXT
    rest = TEXT[len(partial):]
    router = router_of(clients, prefill=prefill, continue_streams=True)
    servers[0].queue(Generated(text=TEXT, cut_after=3))
    servers[1].queue(Generated(text=rest))
    before = client_tasks()
    async with router.chat.completions.stream(model="asked", messages=MSGS) as s:
        text = "".join([t async for t in s.text_deltas()])
        final = await s.get_final_completion()
    assert text == TEXT
    assert final.choices[0].message.content == TEXT
    assert final.choices[0].finish_reason == "stop"
    assert isinstance(s.stream, anyapi_async.AsyncStream)
    assert getattr(s.stream, "continued", None) == 1
    assert final.to_dict()["anyapi_continued"] == 1
    assert s.stream.closed
    # The continuation: the route's model, the caller's messages and the partial reply.
    sent = servers[1].requests[-1].json
    assert sent["model"] == "m-b"
    assert sent["stream"] is True
    if prefill:
        assert sent["messages"] == [
            *MSGS, {"role": "assistant", "content": partial, "prefix": True}
        ]
    else:
        assert sent["messages"] == [
            *MSGS,
            {"role": "assistant", "content": partial},
            {"role": "user", "content": INSTRUCTION},
        ]
    assert (chats(servers[0]), chats(servers[1]), chats(servers[2])) == (1, 1, 0)
    # The cut counted against route a; b's connection went back to its pool (reused).
    assert router.health()["a"].failures == 1
    await clients[1].chat.completions.create(model="x", messages=MSGS)
    assert servers[1].connections == 1
    assert client_tasks() == before


class Seen(Hooks):
    def __init__(self) -> None:
        self.requests: list[str | None] = []

    def on_request(self, info: AttemptInfo) -> None:
        self.requests.append(info.call.route if info.call else None)


async def test_plain_create_stream_is_continued_and_hooks_see_each_route(
    servers: Servers,
) -> None:
    seen = Seen()
    made = [anyapi_async.AsyncClient(base_url=s.base_url, hooks=[seen]) for s in servers]
    try:
        router = router_of((made[0], made[1], made[2]), continue_streams=True)
        servers[0].queue(Generated(text=TEXT, cut_after=3))
        servers[1].queue(ErrorResponse(503))  # the continuation fails over before its start
        servers[2].queue(Generated(text="and the rest"))
        stream = await router.chat.completions.create(model="x", messages=MSGS, stream=True)
        async with stream:
            chunks = [c async for c in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.endswith("and the rest") and len(text) > len("and the rest")
        assert getattr(stream, "continued", None) == 1
        sent = servers[2].requests[-1].json["messages"]
        assert sent[-1] == {"role": "user", "content": INSTRUCTION}
        assert sent[-2]["content"] + "and the rest" == text
        assert seen.requests == ["a", "b", "c"]
    finally:
        for client in made:
            await client.aclose()


async def test_cut_again_continues_again_and_counts(servers: Servers, clients: Clients) -> None:
    router = router_of(clients, continue_streams=True)
    servers[0].queue(Generated(text=TEXT, cut_after=3))
    servers[1].queue(Generated(text=TEXT, cut_after=3))
    servers[2].queue(Generated(text="end"))
    async with router.chat.completions.stream(model="x", messages=MSGS) as s:
        final = await s.get_final_completion()
    assert getattr(s.stream, "continued", None) == 2
    assert final.to_dict()["anyapi_continued"] == 2
    assert final.choices[0].message.content is not None
    assert final.choices[0].message.content.endswith("end")
    # The second continuation carries everything delivered by a and b.
    last = servers[2].requests[-1].json["messages"]
    assert last[-2]["role"] == "assistant"
    assert final.choices[0].message.content == last[-2]["content"] + "end"


async def test_no_route_left_to_continue_raises_all_routes_failed(
    servers: Servers, clients: Clients
) -> None:
    router = Router([Route(clients[0], name="a"), Route(clients[1], name="b")],
                    continue_streams=True)
    servers[0].queue(Generated(text=TEXT, cut_after=3))
    servers[1].queue(Generated(text=TEXT, cut_after=3))
    with pytest.raises(AllRoutesFailedError) as caught:
        async with router.chat.completions.stream(model="x", messages=MSGS) as s:
            await s.get_final_completion()
    assert [name for name, _ in caught.value.errors] == ["a", "b"]
    assert all(isinstance(e, anyapi_async.APIConnectionError) for _, e in caught.value.errors)


TOOL_EVENTS: list[dict[str, Any]] = [
    {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Let me look."}}]},
    {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
     "choices": [{"index": 0, "delta": {"tool_calls": [
         {"index": 0, "id": "call_1", "type": "function",
          "function": {"name": "lookup", "arguments": "{\"q\": "}}]}}]},
]


async def test_never_continued_inside_a_tool_call(servers: Servers, clients: Clients) -> None:
    router = router_of(clients, continue_streams=True)
    servers[0].queue(SSEResponse(TOOL_EVENTS, done=False))  # ends without finishing
    with pytest.raises(anyapi_async.APIConnectionError):
        async with router.chat.completions.stream(model="x", messages=MSGS) as s:
            await s.get_final_completion()
    assert (chats(servers[1]), chats(servers[2])) == (0, 0)


def text_chunk(text: str, index: int = 0, **choice: Any) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": index, "delta": {"content": text}, **choice}]}


@pytest.mark.parametrize(
    "params", [{"n": 2}, {"logprobs": True}, {"logprobs": True, "top_logprobs": 2}]
)
async def test_never_continued_when_n_or_logprobs_were_asked(
    servers: Servers, clients: Clients, params: dict[str, Any]
) -> None:
    router = router_of(clients, continue_streams=True)
    # Plain text chunks (as if the server ignored the parameter), ending without [DONE]:
    # the request alone forbids the continuation.
    servers[0].queue(SSEResponse([text_chunk("one "), text_chunk("two ")], done=False))
    with pytest.raises(anyapi_async.APIConnectionError, match="ended early"):
        async with router.chat.completions.stream(model="x", messages=MSGS, **params) as s:
            await s.get_final_completion()
    assert (chats(servers[1]), chats(servers[2])) == (0, 0)
    # The same stream without those parameters is continued.
    servers[0].queue(SSEResponse([text_chunk("one "), text_chunk("two ")], done=False))
    servers[1].queue(Generated(text="three"))
    async with router.chat.completions.stream(model="x", messages=MSGS) as s:
        assert await s.get_final_text() == "one two three"


@pytest.mark.parametrize(
    "delivered",
    [
        text_chunk("b", index=1),
        text_chunk("b", logprobs={"content": [], "refusal": None}),
        {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {"refusal": "I can't"}}]},
    ],
    ids=["second-choice", "logprobs", "refusal"],
)
async def test_never_continued_after_other_choices_logprobs_or_a_refusal(
    servers: Servers, clients: Clients, delivered: dict[str, Any]
) -> None:
    router = router_of(clients, continue_streams=True)
    servers[0].queue(SSEResponse([text_chunk("a "), delivered], done=False))
    with pytest.raises(anyapi_async.APIConnectionError, match="ended early"):
        async with router.chat.completions.stream(model="x", messages=MSGS) as s:
            await s.get_final_completion()
    assert (chats(servers[1]), chats(servers[2])) == (0, 0)


async def test_without_continue_streams_a_cut_raises(servers: Servers, clients: Clients) -> None:
    router = router_of(clients)
    servers[0].queue(Generated(text=TEXT, cut_after=3))
    with pytest.raises(anyapi_async.APIConnectionError):
        async with router.chat.completions.stream(model="x", messages=MSGS) as s:
            await s.get_final_completion()
    assert chats(servers[1]) == 0
    assert not hasattr(s.stream, "continued")


async def test_a_stream_closed_early_is_released(servers: Servers, clients: Clients) -> None:
    router = router_of(clients, continue_streams=True)
    servers[0].queue(Generated(text=TEXT, cut_after=3))
    servers[1].queue(Generated(text=TEXT))
    before = client_tasks()
    async with router.chat.completions.stream(model="x", messages=MSGS) as s:
        async for _ in s.text_deltas():
            break
    assert s.stream.closed
    with pytest.raises(anyapi_async.APIConnectionError):
        await s.get_final_completion()
    assert chats(servers[1]) == 0
    assert client_tasks() == before


async def test_one_span_for_a_continued_stream(
    servers: Servers, clients: Clients, telemetry: Telemetry
) -> None:
    a, b, _ = clients
    instrument(a, **telemetry.providers())
    instrument(b, **telemetry.providers())
    router = Router([Route(a, name="a"), Route(b, name="b")], continue_streams=True)
    servers[0].queue(Generated(text=TEXT, cut_after=3))
    servers[1].queue(Generated(text="the end"))
    async with router.chat.completions.stream(model="x", messages=MSGS) as s:
        await s.get_final_completion()
    span = telemetry.span()  # ended with the stream: one span for the call
    attrs = attrs_of(span)
    assert attrs["anyapi.stream.end"] == "complete"
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["anyapi.stream.chunks"] > 3  # a's three chunks and b's


async def test_continued_with_hedging_on(servers: Servers, clients: Clients) -> None:
    router = router_of(clients, continue_streams=True, hedge=Hedge(after=30.0))
    servers[0].queue(Generated(text=TEXT, cut_after=3))
    servers[1].queue(Generated(text="rest"))
    async with router.chat.completions.stream(model="x", messages=MSGS) as s:
        text = await s.get_final_text()
    assert text.endswith("rest") and len(text) > len("rest")
    assert getattr(s.stream, "continued", None) == 1
    assert router.hedges == 0


async def test_closed_from_another_task_while_the_continuation_opens(
    servers: Servers, clients: Clients, hanging: HangingServer
) -> None:
    stalled = anyapi_async.AsyncClient(base_url=hanging.base_url)
    try:
        router = Router([Route(clients[0], name="a"), Route(stalled, name="stalled")],
                        continue_streams=True)
        servers[0].queue(Generated(text=TEXT, cut_after=3))
        before = client_tasks()
        async with router.chat.completions.stream(model="x", messages=MSGS) as s:

            async def close_when_stalled() -> None:
                await hanging.arrived.wait()
                await s.stream.close()  # AsyncStream.close: safe from any task

            closer = asyncio.create_task(close_when_stalled())
            text = "".join([t async for t in s.text_deltas()])  # ends quietly on close
            await closer
        assert text and TEXT.startswith(text) and text != TEXT
        await hanging.released.wait()  # the continuation's connection was let go
        assert hanging.requests == 1
        with pytest.raises(anyapi_async.APIConnectionError, match="closed"):
            await s.get_final_completion()
        assert client_tasks() == before
    finally:
        await stalled.aclose()
