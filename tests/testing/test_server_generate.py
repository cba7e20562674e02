"""The default generator: determinism, usage, logprobs, n, max_tokens, stop, streams."""

from __future__ import annotations

import math
from typing import Any

import aiohttp
import pytest

from anyapi_async.testing import ANY_MODEL, LocalServer

from .conftest import USER, chat, chunks_of, stream_events, streamed_text


async def content(http: aiohttp.ClientSession, server: LocalServer, **body: Any) -> str:
    status, reply = await chat(http, server, **body)
    assert status == 200
    text: str = reply["choices"][0]["message"]["content"]
    return text


async def test_completion_shape(anyapi_server: LocalServer, http: aiohttp.ClientSession) -> None:
    """A non-streaming reply has the chat.completion fields and echoes the model."""
    status, reply = await chat(http, anyapi_server, model="gpt-test")
    assert status == 200
    assert reply["id"].startswith("chatcmpl-") and reply["object"] == "chat.completion"
    assert isinstance(reply["created"], int) and reply["model"] == "gpt-test"
    assert reply["system_fingerprint"] == "fp_local"
    (choice,) = reply["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["logprobs"] is None
    assert choice["message"] == {
        "role": "assistant",
        "content": choice["message"]["content"],
        "refusal": None,
    }
    assert len(choice["message"]["content"]) > 40


async def test_replies_are_deterministic_and_seeded(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """Same request, same reply; the seed, the message and the server seed change it."""
    first = await content(http, anyapi_server)
    assert await content(http, anyapi_server) == first
    assert await content(http, anyapi_server, seed=1) != first
    assert await content(http, anyapi_server, seed=1) == await content(http, anyapi_server, seed=1)
    other = [{"role": "user", "content": "Something else"}]
    assert await content(http, anyapi_server, messages=other) != first
    async with LocalServer(seed=5, models=ANY_MODEL) as seeded:
        assert await content(http, seeded) != first


async def test_usage_adds_up(anyapi_server: LocalServer, http: aiohttp.ClientSession) -> None:
    """completion_tokens counts the tokens sent, total is the sum, prompts count words."""
    _, reply = await chat(http, anyapi_server, logprobs=True)
    usage = reply["usage"]
    entries = reply["choices"][0]["logprobs"]["content"]
    assert usage["completion_tokens"] == len(entries)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    long = [{"role": "user", "content": "word " * 50}]
    _, longer = await chat(http, anyapi_server, messages=long)
    assert longer["usage"]["prompt_tokens"] >= usage["prompt_tokens"] + 45


@pytest.mark.parametrize("top", [0, 3, 20])
async def test_logprobs_entries(
    anyapi_server: LocalServer, http: aiohttp.ClientSession, top: int
) -> None:
    """Each token has logprob <= 0, its UTF-8 bytes, and sorted top_logprobs led by itself."""
    _, reply = await chat(http, anyapi_server, logprobs=True, top_logprobs=top)
    choice = reply["choices"][0]
    entries = choice["logprobs"]["content"]
    assert "".join(e["token"] for e in entries) == choice["message"]["content"]
    assert any(len(e["bytes"]) > len(e["token"]) for e in entries), "no multi-byte token"
    for entry in entries:
        assert entry["logprob"] <= 0
        assert entry["bytes"] == list(entry["token"].encode())
        alternatives = entry["top_logprobs"]
        assert len(alternatives) == top
        if top:
            assert alternatives[0]["token"] == entry["token"]
            assert alternatives[0]["logprob"] == entry["logprob"]
            values = [a["logprob"] for a in alternatives]
            assert values == sorted(values, reverse=True)
            assert len({a["token"] for a in alternatives}) == top
            assert sum(math.exp(v) for v in values) <= 1 + 1e-9
            assert all(a["bytes"] == list(a["token"].encode()) for a in alternatives)


async def test_n_choices_differ(anyapi_server: LocalServer, http: aiohttp.ClientSession) -> None:
    """n=3 gives three different choices; usage counts all of them."""
    _, reply = await chat(http, anyapi_server, n=3, logprobs=True)
    choices = reply["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]
    assert len({c["message"]["content"] for c in choices}) == 3
    total = sum(len(c["logprobs"]["content"]) for c in choices)
    assert reply["usage"]["completion_tokens"] == total


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_max_tokens_cuts_with_length(
    anyapi_server: LocalServer, http: aiohttp.ClientSession, field: str
) -> None:
    """max_tokens limits the tokens and sets finish_reason "length"."""
    full = await content(http, anyapi_server)
    _, reply = await chat(http, anyapi_server, logprobs=True, **{field: 5})
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "length"
    assert len(choice["logprobs"]["content"]) == 5 == reply["usage"]["completion_tokens"]
    assert full.startswith(choice["message"]["content"])


async def test_stop_sequences(anyapi_server: LocalServer, http: aiohttp.ClientSession) -> None:
    """A stop string ends the reply before it (excluded); the earliest of a list wins."""
    full = await content(http, anyapi_server)
    words = full.split()
    late, early = words[12], words[6]
    _, reply = await chat(http, anyapi_server, stop=late)
    cut = reply["choices"][0]
    assert cut["finish_reason"] == "stop"
    assert cut["message"]["content"] == full[: full.index(late)]
    assert await content(http, anyapi_server, stop=[late, early]) == full[: full.index(early)]
    assert await content(http, anyapi_server, stop=["no such text"]) == full
    _, both = await chat(http, anyapi_server, stop=late, max_tokens=3)
    assert both["choices"][0]["finish_reason"] == "length"


async def test_stream_follows_the_sse_rules(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """Role chunk, one token per chunk with its logprobs, finish chunk, usage chunk, [DONE]."""
    _, whole = await chat(http, anyapi_server, logprobs=True, top_logprobs=2)
    events = await stream_events(
        http,
        anyapi_server,
        logprobs=True,
        top_logprobs=2,
        stream_options={"include_usage": True},
    )
    chunks = chunks_of(events)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    first = chunks[0]["choices"][0]
    assert first["delta"]["role"] == "assistant" and first["delta"]["content"] == ""
    tokens = [c["choices"][0] for c in chunks[1:-2]]
    expected = whole["choices"][0]["logprobs"]["content"]
    assert [t["delta"]["content"] for t in tokens] == [e["token"] for e in expected]
    assert [t["logprobs"]["content"] for t in tokens] == [[e] for e in expected]
    assert all(t["finish_reason"] is None for t in tokens)
    finish = chunks[-2]["choices"][0]
    assert finish["delta"] == {} and finish["finish_reason"] == "stop"
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
    assert streamed_text(chunks) == whole["choices"][0]["message"]["content"]


async def test_stream_without_usage_has_no_usage_field(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """Without include_usage no chunk carries usage, and the last JSON chunk finishes."""
    chunks = chunks_of(await stream_events(http, anyapi_server, max_tokens=4))
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert len(chunks) == 1 + 4 + 1


async def test_stream_n_interleaves_choices(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """With n=2 the chunks alternate between choices; each text matches the JSON reply."""
    _, whole = await chat(http, anyapi_server, n=2)
    chunks = chunks_of(await stream_events(http, anyapi_server, n=2))
    order = [c["choices"][0]["index"] for c in chunks[:6]]
    assert order == [0, 1, 0, 1, 0, 1]
    for choice in whole["choices"]:
        assert streamed_text(chunks, choice["index"]) == choice["message"]["content"]
    finishes = [c["choices"][0] for c in chunks if c["choices"][0]["finish_reason"]]
    assert sorted(f["index"] for f in finishes) == [0, 1]


async def test_multimodal_content_parts_are_read(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """A user message given as content parts is answered like its text."""
    parts = [{"role": "user", "content": [{"type": "text", "text": USER[0]["content"]}]}]
    assert await content(http, anyapi_server, messages=parts) == await content(http, anyapi_server)
