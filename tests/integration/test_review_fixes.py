"""Review fixes on the request path: one stream one reader, no wait after [DONE], ..."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from typing import Any

import msgspec
import pytest

import anyapi_async as aa
from anyapi_async.testing import ErrorResponse, JSONResponse, LocalServer, SSEResponse

from ..conftest import chunk_body as ev
from ..conftest import completion_body
from .conftest import run_clean

MSGS: list[Any] = [{"role": "user", "content": "hello"}]
#: A generous bound for things that must happen promptly (never a timing assertion).
BOUND = 10.0


def text_of(chunks: list[aa.ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# --- 1. one stream, one reader -----------------------------------------------------------


async def test_anext_then_loop_gets_the_rest(server: LocalServer) -> None:
    """`await anext(stream)` then `async for`: the loop goes on with the remaining chunks."""
    server.queue(SSEResponse([ev("a"), ev("b"), ev("c", "stop")]))
    async with aa.AsyncClient(api_key="k", base_url=server.base_url) as c:
        stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
        async with stream:
            first = await anext(stream)
            rest = [chunk async for chunk in stream]
    assert text_of([first]) == "a"
    assert text_of(rest) == "bc"


async def test_second_concurrent_loop_raises_and_first_goes_on(server: LocalServer) -> None:
    """A second task looping over a stream being read raises; the first reads everything."""
    server.queue(SSEResponse([ev("a"), ev("b"), ev("c", "stop")]))
    async with aa.AsyncClient(api_key="k", base_url=server.base_url) as c:
        stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
        got_one = asyncio.Event()
        go_on = asyncio.Event()

        async def first_reader() -> list[aa.ChatCompletionChunk]:
            out = []
            async for chunk in stream:
                out.append(chunk)
                if len(out) == 1:
                    got_one.set()
                    await go_on.wait()
            return out

        async def second_reader() -> list[aa.ChatCompletionChunk]:
            await got_one.wait()
            try:
                return [chunk async for chunk in stream]
            finally:
                go_on.set()

        async with stream:
            first, second = await asyncio.wait_for(
                asyncio.gather(first_reader(), second_reader(), return_exceptions=True), BOUND
            )
    assert isinstance(second, RuntimeError) and "already being iterated" in str(second)
    assert isinstance(first, list) and text_of(first) == "abc"


async def test_anext_while_a_loop_runs_raises(server: LocalServer) -> None:
    """`anext()` from another task while a loop reads the stream raises, ending nothing."""
    server.queue(SSEResponse([ev("a"), ev("b", "stop")]))
    async with aa.AsyncClient(api_key="k", base_url=server.base_url) as c:
        stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
        async with stream:
            out = []
            async for chunk in stream:
                out.append(chunk)
                if len(out) == 1:
                    with pytest.raises(RuntimeError, match="already being iterated"):
                        await anext(stream)
        assert text_of(out) == "ab"


# --- 2. nothing waits after [DONE] -------------------------------------------------------


@pytest.mark.parametrize(
    ("timeout", "faults"),
    [
        (aa.Timeout(connect=5, idle=1), {}),
        (aa.Timeout(connect=5, idle=1), {"keepalive": ": ping", "keepalive_interval": 0.05}),
        (None, {}),  # the default limits
    ],
    ids=["held-open", "comments-after-done", "default-timeout"],
)
async def test_stream_ends_at_done_when_the_server_holds_the_connection(
    server: LocalServer, timeout: aa.Timeout | None, faults: dict[str, Any]
) -> None:
    """After [DONE] the server sends nothing (or only comments) and keeps the connection:
    the loop ends at [DONE], complete, and the stream lets the connection go."""
    server.queue(SSEResponse([ev("a"), ev("b", "stop")], stall_after=3, **faults))
    kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, max_retries=0, **kwargs) as c:
        stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)

        async def read_all() -> list[aa.ChatCompletionChunk]:
            return [chunk async for chunk in stream]

        chunks = await asyncio.wait_for(read_all(), BOUND)
        assert text_of(chunks) == "ab"
        assert stream.closed
        # The next call is not held up by the connection the server kept open.
        done = await asyncio.wait_for(c.chat.completions.create(model="m", messages=MSGS), BOUND)
        assert done.choices


# --- 3. the max_concurrency slots belong to the pool's loop -------------------------------

TWO_RUNS_CAPPED = textwrap.dedent(
    """
    import asyncio, sys
    import anyapi_async as aa

    client = aa.AsyncClient(api_key="k", base_url=sys.argv[1], max_concurrency=2)
    copy = client.with_options(timeout=30)
    MSGS = [{"role": "user", "content": "hi"}]
    held = []

    async def contended():
        calls = [c.chat.completions.create(model="m", messages=MSGS, max_tokens=5)
                 for c in (client, copy, client, copy, client, copy)]
        done = await asyncio.wait_for(asyncio.gather(*calls), 30)
        return len(done)

    async def first():
        n = await contended()   # waits on the semaphore in this loop
        for c in (client, copy):   # both slots held by streams left open at shutdown
            held.append(await c.chat.completions.create(model="m", messages=MSGS, stream=True))
        return n

    async def close_held():
        for s in held:
            await s.close()

    print(asyncio.run(first()), asyncio.run(contended()), asyncio.run(contended()))
    asyncio.run(close_held())
    asyncio.run(client.aclose())
    """
)


def test_max_concurrency_across_two_asyncio_runs(server_url: str) -> None:
    """A capped client (and its with_options copy) works contended from a second and a
    third asyncio.run(), though loop 1 ended with both slots held by open streams."""
    out = run_clean(TWO_RUNS_CAPPED, server_url, timeout=120)
    assert out.split() == ["6", "6", "6"], out


# --- 4. hooks get usage only when it is a CompletionUsage ---------------------------------


class Recorder(aa.Hooks):
    def __init__(self) -> None:
        self.usages: list[Any] = []

    def on_complete(self, info: Any, usage: aa.CompletionUsage | None) -> None:
        self.usages.append(usage)


class Odd(msgspec.Struct):
    usage: str


async def test_post_with_a_non_completion_usage_field(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    """`post(cast_to=E)` whose `usage` is no CompletionUsage: the hooks (and the debug log
    line) get None, and the call returns its result."""
    caplog.set_level(logging.DEBUG, logger="anyapi_async")
    server.queue(JSONResponse({"usage": "lots"}))
    rec = Recorder()
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, hooks=[rec]) as c:
        got = await c.post("/chat/completions", body={"model": "m"}, cast_to=Odd)
    assert got.usage == "lots"
    assert rec.usages == [None]
    assert any("complete" in r.getMessage() for r in caplog.records)


async def test_raw_response_gives_the_hooks_its_usage(server: LocalServer) -> None:
    """A raw create() hands the hooks the usage of the completion it parsed."""
    rec = Recorder()
    async with aa.AsyncClient(api_key="k", base_url=server.base_url, hooks=[rec]) as c:
        raw = await c.chat.completions.with_raw_response.create(model="m", messages=MSGS)
        done = raw.parse()
    assert done.usage is not None
    assert rec.usages == [done.usage]


# --- 5. a key in the base URL's query string never shows --------------------------------

SECRET = "sk-in-the-url-123"


def test_repr_redacts_a_key_in_the_base_url() -> None:
    client = aa.AsyncClient(api_key="k", base_url=f"https://gw.example/v1?api_key={SECRET}")
    assert SECRET not in repr(client)
    assert "api_key=***" in repr(client)


def test_base_url_error_redacts_the_key() -> None:
    with pytest.raises(ValueError, match="base_url") as info:
        aa.AsyncClient(api_key="k", base_url=f"ftp://gw.example/v1?key={SECRET}")
    assert SECRET not in str(info.value)


def test_plain_http_warning_redacts_the_key() -> None:
    with pytest.warns(UserWarning, match="plain HTTP") as caught:
        aa.AsyncClient(api_key="k", base_url=f"http://gw.example/v1?token={SECRET}")
    assert all(SECRET not in str(w.message) for w in caught)


async def test_not_retrying_log_line_redacts_the_key(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    """429 with a Retry-After longer than max_retry_after: the INFO line hides the key."""
    caplog.set_level(logging.INFO, logger="anyapi_async")
    server.queue(ErrorResponse(429, headers={"Retry-After": "3600"}))
    base_url = f"{server.base_url}?api_key={SECRET}"
    async with aa.AsyncClient(api_key="k", base_url=base_url) as c:
        with pytest.raises(aa.RateLimitError):
            await c.chat.completions.create(model="m", messages=MSGS)
    lines = [r.getMessage() for r in caplog.records]
    assert any("Not retrying" in line for line in lines), lines
    assert all(SECRET not in line for line in lines), lines


# --- 6. with_streaming_response and JSON-for-a-stream keep the client's bounds -------------


async def test_streamed_response_read_keeps_max_response_size(server: LocalServer) -> None:
    server.queue(JSONResponse(completion_body("x" * 2000)))
    async with (
        aa.AsyncClient(
            api_key="k", base_url=server.base_url, max_response_size=500, max_retries=0
        ) as c,
        c.chat.completions.with_streaming_response.create(model="m", messages=MSGS) as resp,
    ):
        with pytest.raises(aa.ResponseTooLargeError):
            await resp.read()


async def test_streamed_response_read_is_bounded_as_a_whole(server: LocalServer) -> None:
    """A trickled body: read() must have all of it within the read limit."""
    server.queue(JSONResponse(completion_body("x" * 200), trickle=0.05))
    async with (
        aa.AsyncClient(api_key="k", base_url=server.base_url, timeout=0.5, max_retries=0) as c,
        c.chat.completions.with_streaming_response.create(model="m", messages=MSGS) as resp,
    ):
        with pytest.raises(aa.APITimeoutError) as info:
            await asyncio.wait_for(resp.read(), BOUND)
    assert info.value.limit == "read"


async def test_streamed_response_manager_releases_when_aclose_fails(
    server: LocalServer,
) -> None:
    """The block's end gives the slot back even when closing what parse() opened fails."""

    class Failing:
        async def aclose(self) -> None:
            raise LookupError("aclose failed")

    async with aa.AsyncClient(api_key="k", base_url=server.base_url, max_concurrency=1) as c:
        with pytest.raises(LookupError):
            async with c.chat.completions.with_streaming_response.create(
                model="m", messages=MSGS
            ) as resp:
                resp._parsed.append(Failing())  # type: ignore[arg-type]
        done = await asyncio.wait_for(c.chat.completions.create(model="m", messages=MSGS), BOUND)
        assert done.choices


async def test_json_answer_to_a_stream_keeps_max_response_size(server: LocalServer) -> None:
    """A whole completion sent as JSON to a stream request is bounded by the client's size."""
    server.queue(JSONResponse(completion_body("x" * 2000)))
    async with aa.AsyncClient(
        api_key="k", base_url=server.base_url, max_response_size=500, max_retries=0
    ) as c:
        with pytest.raises(aa.ResponseTooLargeError):
            await c.chat.completions.create(model="m", messages=MSGS, stream=True)


# --- 7. a whole completion sent instead of a stream ----------------------------------------


async def test_completion_sent_for_a_stream_keeps_its_body(server: LocalServer) -> None:
    """One chunk, whose to_dict() is the chat.completion as sent (as documented)."""
    server.queue(JSONResponse(completion_body("whole", provider="p")))
    async with aa.AsyncClient(api_key="k", base_url=server.base_url) as c:
        stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
        chunks = [chunk async for chunk in stream]
    assert len(chunks) == 1 and text_of(chunks) == "whole"
    data = chunks[0].to_dict()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["content"] == "whole"


# --- 8. argument checks ------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, 2.5, "2"])
def test_max_concurrency_must_be_an_int(value: object) -> None:
    with pytest.raises(TypeError, match="max_concurrency must be an int"):
        aa.AsyncClient(api_key="k", base_url="http://127.0.0.1:1/v1", max_concurrency=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"keepalive_timeout": "30"}, TypeError, "keepalive_timeout must be a number"),
        ({"keepalive_timeout": None}, TypeError, "keepalive_timeout must be a number"),
        ({"keepalive_timeout": True}, TypeError, "keepalive_timeout must be a number"),
        ({"keepalive_timeout": float("nan")}, ValueError, "keepalive_timeout must be >= 0"),
        ({"keepalive_timeout": float("inf")}, ValueError, "keepalive_timeout must be >= 0"),
        ({"max_connections": "10"}, ValueError, "max_connections must be an int"),
    ],
)
def test_limits_refuse_non_numbers(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        aa.Limits(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(error, match=match):
        aa.AsyncClient(api_key="k", base_url="http://127.0.0.1:1/v1", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["frequency_penalty", "presence_penalty"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
async def test_penalties_must_be_finite(server: LocalServer, name: str, value: float) -> None:
    """Refused like temperature, before anything is sent."""
    async with aa.AsyncClient(api_key="k", base_url=server.base_url) as c:
        with pytest.raises(ValueError, match=f"{name} must be a finite number"):
            params: dict[str, Any] = {name: value}
            await c.chat.completions.create(model="m", messages=MSGS, **params)
    assert server.requests == []
