"""stream_parse().partial_objects() against the local server."""

from __future__ import annotations

import asyncio
import sys
from itertools import pairwise
from typing import Any

import msgspec
import pytest

from anyapi_async import APIConnectionError, AsyncClient, ChatCompletionMessageParam
from anyapi_async._parsing import ContentValidationError
from anyapi_async.testing import Generated, LocalServer, SSEResponse

from ._grow import grows, strings_in

MODEL = "gpt-test"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Describe Ada."}]


class Address(msgspec.Struct):
    city: str
    country: str


class Profile(msgspec.Struct):
    name: str
    age: int
    bio: str
    tags: list[str]
    address: Address
    score: float


#: A reply with escapes (\u, surrogate pair, quotes, backslash, newline) and raw non-ASCII.
REPLY = (
    '{"name": "Ad\\u00e9 \\"Ada\\" Lovelace", "age": 36, '
    '"bio": "Mathematician \\ud83e\\uddee and writer; \\u00ab notes \\u00bb on the Engine, '
    'río \\\\ back\\nslash, ünïcödé and 数学", '
    '"tags": ["math", "poetry", "\\u2603"], '
    '"address": {"city": "London", "country": "UK"}, "score": 9.75}'
)
#: REPLY cut into small fragments, several of them inside strings and inside escapes.
PIECES = [
    '{"na', 'me": "A', "d\\", "u00", "e9 \\", '"Ada\\"', " Love", 'lace", "a', 'ge": 3', "6, ",
    '"bio": "Mathe', "matician \\ud83e", "\\udd", "ee and wr", "iter; \\u00", "ab notes \\u00bb",
    " on the Engine, r", "ío \\", "\\ back\\", "nslash, ün", "ïcödé and 数", '学", ',
    '"tags": ["ma', 'th", "poetry", "\\u26', '03"], ', '"address": {"city": "Lon', 'don", ',
    '"country": "UK"}, "score": 9.', "75}",
]  # fmt: skip


def content_stream(pieces: list[str], **faults: Any) -> SSEResponse:
    """A stream whose content deltas are exactly ``pieces``."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-partial",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in pieces]
    events.append(chunk({}, "stop"))
    return SSEResponse(events, **faults)


def assert_grow(snapshots: list[Any]) -> None:
    assert snapshots
    for old, new in pairwise(snapshots):
        assert grows(old, new), (old, new)
        assert old != new  # no repeats


def test_pieces_are_the_reply() -> None:
    """The fixture is what it claims: the pieces make the reply, which is valid JSON."""
    assert "".join(PIECES) == REPLY
    msgspec.json.decode(REPLY, type=Profile)


async def test_snapshots_grow_to_the_validated_object(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """Fragments split mid-string and mid-escape give growing snapshots ending in the object."""
    anyapi_server.queue(content_stream(PIECES, chunk_size=7))
    async with anyapi_client.chat.completions.stream_parse(
        model=MODEL, messages=MESSAGES, response_format=Profile
    ) as stream:
        snapshots = [s async for s in stream.partial_objects()]
        parsed = await stream.get_final_parsed()
    assert_grow(snapshots)
    assert isinstance(parsed, Profile)
    assert snapshots[-1] == msgspec.json.decode(REPLY) == msgspec.to_builtins(parsed)
    assert parsed.name == 'Adé "Ada" Lovelace' and parsed.tags[2] == "☃"
    assert parsed.bio.startswith("Mathematician 🧮 and writer; « notes » on the Engine, río \\")
    # Strings were seen partly filled: a non-empty, strict prefix of the final value.
    final_strings = strings_in(snapshots[-1])
    partial = [
        s
        for snap in snapshots
        for s in strings_in(snap)
        if s and s not in final_strings and any(f.startswith(s) for f in final_strings)
    ]
    assert "Adé " in partial and "Mathe" in partial
    assert "Mathematician 🧮 and wr" in partial and "ma" in partial  # a list item too
    # The key "age" appeared only with its whole number (never 3).
    assert {snap.get("age") for snap in snapshots} <= {None, 36}


async def test_the_servers_schema_reply(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """The local server's own json_schema reply, byte-split, streams to the parsed object."""
    anyapi_server.queue(Generated(split_seed=3))
    async with anyapi_client.chat.completions.stream_parse(
        model=MODEL, messages=MESSAGES, response_format=Profile
    ) as stream:
        snapshots = [s async for s in stream.partial_objects()]
        parsed = await stream.get_final_parsed()
    assert len(snapshots) > 3
    assert_grow(snapshots)
    assert snapshots[-1] == msgspec.to_builtins(parsed)
    body = anyapi_server.requests_for("/chat/completions")[-1].json
    assert body["response_format"]["json_schema"]["name"] == "Profile"


async def test_prose_reply_raises_at_the_end(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """A reply that is not JSON yields nothing and raises ContentValidationError."""
    anyapi_server.queue(content_stream(["Sorry, ", "I cannot ", "do that."]))
    snapshots: list[Any] = []
    async with anyapi_client.chat.completions.stream_parse(
        model=MODEL, messages=MESSAGES, response_format=Profile
    ) as stream:
        with pytest.raises(ContentValidationError, match="is not valid JSON"):
            async for snapshot in stream.partial_objects():
                snapshots.append(snapshot)
    assert snapshots == []


async def test_reply_that_does_not_validate_raises_after_its_snapshots(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """Valid JSON of the wrong shape: snapshots as it came, then ContentValidationError."""
    anyapi_server.queue(content_stream(['{"name": "Ada", ', '"age": "old"}']))
    snapshots: list[Any] = []
    async with anyapi_client.chat.completions.stream_parse(
        model=MODEL, messages=MESSAGES, response_format=Profile
    ) as stream:
        with pytest.raises(ContentValidationError, match="does not match Profile"):
            async for snapshot in stream.partial_objects():
                snapshots.append(snapshot)
    assert snapshots[0] == {"name": "Ada"}


async def test_cut_stream_raises(anyapi_client: AsyncClient, anyapi_server: LocalServer) -> None:
    """A stream broken mid-object raises instead of ending on a partial snapshot."""
    anyapi_server.queue(content_stream(PIECES, cut_after=10))
    async with anyapi_client.chat.completions.stream_parse(
        model=MODEL, messages=MESSAGES, response_format=Profile
    ) as stream:
        with pytest.raises(APIConnectionError):
            async for _ in stream.partial_objects():
                pass


async def test_break_releases_the_connection(anyapi_server: LocalServer) -> None:
    """Leaving the block after a break frees the only pooled connection at once."""
    anyapi_server.queue(content_stream(PIECES, stall_after=8))
    async with AsyncClient(
        api_key="sk-test", base_url=anyapi_server.base_url, max_connections=1
    ) as client:
        async with client.chat.completions.stream_parse(
            model=MODEL, messages=MESSAGES, response_format=Profile
        ) as stream:
            async for snapshot in stream.partial_objects():
                if "name" in snapshot:
                    break
        ok = await asyncio.wait_for(
            client.chat.completions.create(model=MODEL, messages=MESSAGES), 5
        )
    assert ok.choices


async def test_missing_jiter_fails_at_the_call(
    anyapi_client: AsyncClient, anyapi_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without jiter, partial_objects() raises ImportError naming the extra."""
    monkeypatch.setitem(sys.modules, "jiter", None)
    async with anyapi_client.chat.completions.stream_parse(
        model=MODEL, messages=MESSAGES, response_format=Profile
    ) as stream:
        with pytest.raises(ImportError, match=r"anyapi-async\[partial\]"):
            stream.partial_objects()
        parsed = await stream.get_final_parsed()  # the stream itself still works
    assert isinstance(parsed, Profile)


async def test_cancel_releases_the_connection(anyapi_server: LocalServer) -> None:
    """Cancelling the task iterating partial_objects() frees the only pooled connection."""
    anyapi_server.queue(content_stream(PIECES, stall_after=8))
    first = asyncio.Event()
    async with AsyncClient(
        api_key="sk-test", base_url=anyapi_server.base_url, max_connections=1
    ) as client:

        async def consume() -> None:
            async with client.chat.completions.stream_parse(
                model=MODEL, messages=MESSAGES, response_format=Profile
            ) as stream:
                async for _ in stream.partial_objects():
                    first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        ok = await asyncio.wait_for(
            client.chat.completions.create(model=MODEL, messages=MESSAGES), 5
        )
    assert ok.choices
