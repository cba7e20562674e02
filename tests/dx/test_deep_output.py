"""Model output nested deeper than a parser goes: always a ContentValidationError, never a
RecursionError or a bare ValueError; partial_objects() accepts whatever parse() accepts."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from anyapi_async import AsyncClient, ChatCompletionMessageParam
from anyapi_async._parsing import ContentValidationError
from anyapi_async._partial import MAX_DEPTH
from anyapi_async.testing import Generated, LocalServer

MODEL = "gpt-test"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Nest."}]
#: Deeper than the partial parser reads, but within what msgspec (and parse()) read.
READABLE = 300
#: Deeper than msgspec reads within Python's recursion limit.
TOO_DEEP = 10_000


class Deep(msgspec.Struct):
    name: str
    x: Any


def nested(depth: int) -> str:
    return '{"name":"A","x":' + "[" * depth + "]" * depth + "}"


def depth_of(value: Any) -> int:
    depth = 0
    while isinstance(value, list):
        depth += 1
        value = value[0] if value else None
    return depth


def test_the_readable_depth_is_past_the_partial_parser() -> None:
    """The fixture tests what it claims: deeper than jiter goes."""
    assert READABLE > MAX_DEPTH


async def test_parse_reads_a_deep_reply(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    anyapi_server.queue(Generated(text=nested(READABLE)))
    c = await anyapi_client.chat.completions.parse(
        model=MODEL, messages=MESSAGES, response_format=Deep
    )
    parsed = c.choices[0].message.parsed
    assert isinstance(parsed, Deep) and depth_of(parsed.x) == READABLE


async def test_parse_refuses_a_too_deep_reply(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    anyapi_server.queue(Generated(text=nested(TOO_DEEP)))
    with pytest.raises(ContentValidationError, match="nested too deeply") as info:
        await anyapi_client.chat.completions.parse(
            model=MODEL, messages=MESSAGES, response_format=Deep
        )
    assert info.value.content == nested(TOO_DEEP) and info.value.choice_index == 0


@pytest.mark.parametrize("depth", [READABLE, TOO_DEEP])
async def test_stream_parse_final_parsed(
    anyapi_client: AsyncClient, anyapi_server: LocalServer, depth: int
) -> None:
    anyapi_server.queue(Generated(text=nested(depth)))
    async with anyapi_client.chat.completions.stream_parse(
        model=MODEL, messages=MESSAGES, response_format=Deep
    ) as stream:
        if depth == TOO_DEEP:
            with pytest.raises(ContentValidationError, match="nested too deeply"):
                await stream.get_final_parsed()
            return
        parsed = await stream.get_final_parsed()
    assert isinstance(parsed, Deep) and depth_of(parsed.x) == depth


async def test_partial_objects_end_with_a_deep_reply(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """Snapshots stop past the partial parser's depth; the final data still comes."""
    anyapi_server.queue(Generated(text=nested(READABLE)))
    async with anyapi_client.chat.completions.stream_parse(
        model=MODEL, messages=MESSAGES, response_format=Deep
    ) as stream:
        snapshots = [s async for s in stream.partial_objects()]
        parsed = await stream.get_final_parsed()
    assert isinstance(parsed, Deep)
    assert snapshots and snapshots[-1] == msgspec.json.decode(nested(READABLE))
    assert all(depth_of(s["x"]) <= MAX_DEPTH for s in snapshots[:-1] if "x" in s)


async def test_partial_objects_refuse_a_too_deep_reply(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    anyapi_server.queue(Generated(text=nested(TOO_DEEP)))
    snapshots: list[Any] = []
    async with anyapi_client.chat.completions.stream_parse(
        model=MODEL, messages=MESSAGES, response_format=Deep
    ) as stream:
        with pytest.raises(ContentValidationError, match="nested too deeply"):
            async for snapshot in stream.partial_objects():
                snapshots.append(snapshot)
    assert all(depth_of(s.get("x")) <= MAX_DEPTH for s in snapshots)
