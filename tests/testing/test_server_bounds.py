"""What a long-lived LocalServer holds is bounded: records, recorded bodies, generated replies;
and another process can reset it over HTTP."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import tracemalloc
from typing import Any

import aiohttp
import pytest

from anyapi_async import AsyncClient, BadRequestError
from anyapi_async.testing import ANY_MODEL, RESET_PATH, ErrorResponse, LocalServer

from .conftest import USER, chat

STARTUP_TIMEOUT = 20.0
MiB = 1024 * 1024


async def post_many(
    http: aiohttp.ClientSession, server: LocalServer, count: int, **body: Any
) -> None:
    for _ in range(count):
        status, _ = await chat(http, server, **body)
        assert status == 200


# --- records --------------------------------------------------------------------------------


def test_defaults() -> None:
    """By default 1,000 records of at most 64 KiB of body each, 100,000 generated tokens."""
    server = LocalServer()
    assert (server.max_records, server.max_record_body, server.max_generation) == (
        1_000,
        64 * 1024,
        100_000,
    )


async def test_record_count_stays_at_the_cap(http: aiohttp.ClientSession) -> None:
    """Past max_records the oldest records go; the newest are kept in order and counted."""
    async with LocalServer(models=ANY_MODEL, max_records=5) as server:
        for i in range(12):
            status, _ = await chat(http, server, seed=i)
            assert status == 200
            assert len(server.requests) == min(i + 1, 5)
        assert [r.json["seed"] for r in server.requests] == [7, 8, 9, 10, 11]
        assert server.dropped_requests == 7
        assert server.requests[-1].json["seed"] == 11
        server.reset()
        assert (server.requests, server.dropped_requests) == ([], 0)


async def test_max_records_zero_and_none(http: aiohttp.ClientSession) -> None:
    """0 keeps no record (the server still answers); None keeps them all."""
    async with LocalServer(models=ANY_MODEL, max_records=0) as server:
        await post_many(http, server, 3)
        assert server.requests == [] and server.dropped_requests == 3
    async with LocalServer(models=ANY_MODEL, max_records=None) as server:
        await post_many(http, server, 3)
        assert len(server.requests) == 3 and server.dropped_requests == 0


async def test_record_memory_is_bounded(http: aiohttp.ClientSession) -> None:
    """Memory held by the records stops growing at the cap (measured, not timed).

    Each request carries 16 KB: without the bound, 600 more requests would keep ~10 MB.
    """
    content = "x" * 16_000
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 1}
    async with LocalServer(models=ANY_MODEL, max_records=20) as server:
        await post_many(http, server, 30, **body)  # fill the ring, warm up every path
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await post_many(http, server, 600, **body)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert len(server.requests) == 20 and server.dropped_requests == 610
    assert grown < 2 * MiB


async def test_big_body_is_truncated_in_its_record(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """A body over 64 KiB is answered from all of it, but only its start is recorded."""
    long = "word " * 40_000  # 200 KB
    status, reply = await chat(http, anyapi_server, messages=[{"role": "user", "content": long}])
    assert status == 200 and reply["usage"]["prompt_tokens"] > 40_000  # the whole body counted
    seen = anyapi_server.requests[-1]
    sent = json.dumps({"messages": [{"role": "user", "content": long}], "model": "m"}).encode()
    assert seen.size == len(sent) > 64 * 1024
    assert len(seen.body) == 64 * 1024 and seen.body == sent[: 64 * 1024]
    assert seen.truncated and seen.json is None
    assert f"truncated from {seen.size} bytes" in repr(seen)
    status, _ = await chat(http, anyapi_server)
    small = anyapi_server.requests[-1]
    assert not small.truncated and small.size == len(small.body)
    assert small.json["messages"] == USER


async def test_record_body_cap_is_configurable(http: aiohttp.ClientSession) -> None:
    """max_record_body=N keeps N bytes; None keeps every byte."""
    async with LocalServer(models=ANY_MODEL, max_record_body=10) as server:
        await post_many(http, server, 1)
        assert len(server.requests[0].body) == 10 and server.requests[0].truncated
    async with LocalServer(models=ANY_MODEL, max_record_body=None) as server:
        await post_many(http, server, 1, messages=[{"role": "user", "content": "y" * 100_000}])
        seen = server.requests[0]
        assert not seen.truncated and seen.json["messages"][0]["content"] == "y" * 100_000


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"max_records": -1}, ValueError, "max_records must be >= 0"),
        ({"max_records": "10"}, TypeError, "max_records must be an int"),
        ({"max_record_body": -5}, ValueError, "max_record_body must be >= 0"),
        ({"max_generation": 0}, ValueError, "max_generation must be >= 1"),
        ({"max_generation": True}, TypeError, "max_generation must be an int"),
    ],
)
def test_bad_bounds_are_refused(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Negative or non-integer bounds raise at construction, naming the argument."""
    with pytest.raises(error, match=match):
        LocalServer(**options)


# --- reset over HTTP ------------------------------------------------------------------------

_RESET_SCRIPT = """
import sys, urllib.request
request = urllib.request.Request(sys.argv[1], data=b"", method="POST")
with urllib.request.urlopen(request) as resp:
    print(resp.status, resp.read().decode())
"""


async def test_reset_from_another_process(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """POST /_anyapi/reset (no key needed) from a plain-HTTP subprocess does what reset() does."""
    await post_many(http, anyapi_server, 3)
    anyapi_server.queue(ErrorResponse(500), ErrorResponse(500))
    assert len(anyapi_server.requests) == 3 and anyapi_server.connections == 1
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _RESET_SCRIPT,
        anyapi_server.url + RESET_PATH,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), STARTUP_TIMEOUT)
    assert proc.returncode == 0, err.decode()
    code, _, answer = out.decode().strip().partition(" ")
    assert code == "200" and json.loads(answer) == {"object": "anyapi.reset", "reset": True}
    assert anyapi_server.requests == [] and anyapi_server.queued == 0
    assert anyapi_server.connections == 0
    status, _ = await chat(http, anyapi_server)  # the queue is gone: a normal answer
    assert status == 200 and len(anyapi_server.requests) == 1


async def test_reset_needs_the_key_when_one_is_required() -> None:
    """With require_key, a reset without the key is refused and changes nothing."""
    async with (
        LocalServer(require_key="sk-local", models=ANY_MODEL) as server,
        aiohttp.ClientSession() as bare,
    ):
        async with bare.post(server.url + RESET_PATH) as resp:
            assert resp.status == 401
        assert len(server.requests) == 1  # the refused reset, recorded like any request
        headers = {"Authorization": "Bearer sk-local"}
        async with bare.post(server.url + RESET_PATH, headers=headers) as resp:
            assert resp.status == 200
        assert server.requests == []
        async with bare.get(server.url + RESET_PATH) as resp:
            assert resp.status == 404  # POST only


# --- what one request may make the server generate -------------------------------------------


async def test_too_large_generation_is_400_naming_the_limit(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """n=128 with top_logprobs=20 would be ~200,000 generated tokens: refused, stream or not."""
    big = {"n": 128, "logprobs": True, "top_logprobs": 20}
    status, body = await chat(http, anyapi_server, **big)
    assert status == 400
    error = body["error"]
    assert error["code"] == "generation_too_large" and error["type"] == "invalid_request_error"
    assert "max_generation limit of 100,000" in error["message"]
    assert "128 choice(s)" in error["message"] and "top_logprobs 20" in error["message"]
    url = anyapi_server.base_url + "/chat/completions"
    async with http.post(url, json={"model": "m", "messages": USER, "stream": True, **big}) as resp:
        assert resp.status == 400
        assert resp.headers["Content-Type"].startswith("application/json")
        assert (await resp.json())["error"]["code"] == "generation_too_large"
    status, body = await chat(http, anyapi_server, n=128)  # without logprobs it fits
    assert status == 200 and len(body["choices"]) == 128


async def test_generation_cap_is_configurable(http: aiohttp.ClientSession) -> None:
    """max_generation counts n x tokens x (1 + top_logprobs); at the cap is fine, past it 400."""
    async with LocalServer(models=ANY_MODEL, max_generation=60) as server:
        ok = await chat(http, server, n=6, max_tokens=10)
        assert ok[0] == 200 and ok[1]["usage"]["completion_tokens"] == 60
        assert (await chat(http, server, n=7, max_tokens=10))[0] == 400
        ok = await chat(http, server, max_tokens=10, logprobs=True, top_logprobs=5)
        assert ok[0] == 200
        status, body = await chat(http, server, max_tokens=10, logprobs=True, top_logprobs=6)
        assert status == 400 and "70 generated tokens" in body["error"]["message"]
        async with AsyncClient(api_key="k", base_url=server.base_url, max_retries=0) as client:
            with pytest.raises(BadRequestError, match="max_generation limit of 60"):
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}], n=7, max_tokens=10
                )
    async with LocalServer(models=ANY_MODEL, max_generation=None) as server:
        status, body = await chat(http, server, n=64, logprobs=True, top_logprobs=20)
        assert status == 200 and body["usage"]["completion_tokens"] * 21 > 100_000


async def test_slow_reader_of_a_big_stream_holds_little(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """A stream is generated as it is sent: a reader that stops after one event leaves the
    server holding a few chunks, not the whole reply (~50,000 logprobs entries, ~15 MB)."""
    body = {"model": "m", "messages": USER, "stream": True, "n": 32, "logprobs": True}
    body["top_logprobs"] = 20
    url = anyapi_server.base_url + "/chat/completions"
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        async with http.post(url, json=body) as resp:
            assert resp.status == 200
            first = await resp.content.readuntil(b"\n\n")
            assert first.startswith(b"data: {")
            held = tracemalloc.get_traced_memory()[0] - before
            rest = await resp.read()  # then read the rest: the whole reply arrives
    finally:
        tracemalloc.stop()
    events = (first + rest).split(b"\n\n")
    assert events[-2] == b"data: [DONE]"
    assert len(events) > 32 * 40
    assert held < 4 * MiB
