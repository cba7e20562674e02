"""client.post / client.get: the one request path, against the local server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

import anyapi_async as aa
from anyapi_async.testing import (
    ErrorResponse,
    Hang,
    JSONResponse,
    LocalServer,
    RawResponse,
    SSEResponse,
)

from ..conftest import API_KEY, completion_body

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


class Reply(msgspec.Struct):
    id: str
    choices: list[dict[str, Any]]


class Event(msgspec.Struct):
    n: int


class Recorder(aa.Hooks):
    def __init__(self) -> None:
        self.completed: list[tuple[int, Any]] = []
        self.retried: list[int] = []

    def on_retry(self, info: aa.AttemptInfo, delay: float, error: aa.APIError) -> None:
        self.retried.append(info.attempt)

    def on_complete(self, info: aa.AttemptInfo, usage: Any) -> None:
        self.completed.append((info.attempt, usage))


async def test_post_casts_to_a_completion(client: aa.AsyncClient, server: LocalServer) -> None:
    """cast_to=ChatCompletion decodes as create() does, with http and to_dict()."""
    sent = completion_body("hello", provider_field=1)
    sent["provider"] = "Groq"
    server.queue(JSONResponse(sent, headers={"x-request-id": "req-1"}))
    c = await client.post("/chat/completions", body=BODY, cast_to=aa.ChatCompletion)
    assert c.choices[0].message.content == "hello"
    assert c.http is not None and c.http.request_id == "req-1" and c.http.attempts == 1
    assert c.to_dict()["provider"] == "Groq"
    seen = server.requests_for("/v1/chat/completions")[-1]
    assert seen.method == "POST" and seen.json == BODY
    assert seen.headers["authorization"] == "Bearer ***"


async def test_post_casts_to_dict_bytes_and_a_struct(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """dict gives the JSON object, bytes the body as sent, a Struct its decoded fields."""
    text = json.dumps(completion_body("x"), indent=2)
    server.queue(*(RawResponse(text, content_type="application/json") for _ in range(3)))
    as_dict = await client.post("/chat/completions", body=BODY, cast_to=dict)
    as_bytes = await client.post("chat/completions", body=BODY, cast_to=bytes)
    as_struct = await client.post("/chat/completions", body=BODY, cast_to=Reply)
    assert as_dict == json.loads(text)
    assert as_bytes == text.encode()
    assert as_struct == Reply(id="c", choices=json.loads(text)["choices"])


async def test_post_sends_bytes_and_structs_as_given(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """A bytes body goes out unchanged; a Struct body is encoded as JSON."""
    raw = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"x":1}'
    server.queue(JSONResponse({}), JSONResponse({}))
    await client.post("/chat/completions", body=raw, cast_to=dict)
    await client.post("/chat/completions", body=Event(n=3), cast_to=bytes)
    seen = server.requests_for("/v1/chat/completions")
    assert seen[-2].body == raw
    assert seen[-1].json == {"n": 3}


async def test_get_lists_models_and_sends_query(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """get() reaches /models with extra_query and extra_headers, as models.list() does."""
    models = await client.get(
        "/models", cast_to=aa.ModelList, extra_query={"a": "1"}, extra_headers={"X-T": "v"}
    )
    assert isinstance(models, aa.ModelList)
    listed = await client.get("/models", cast_to=dict)
    assert listed["object"] == "list"
    assert listed == (await client.models.list()).to_dict()
    seen = server.requests_for("/v1/models")
    assert seen[0].method == "GET" and seen[0].query == {"a": "1"}
    assert seen[0].headers["x-t"] == "v" and seen[0].body == b""


async def test_post_streams_items(client: aa.AsyncClient, server: LocalServer) -> None:
    """stream=True yields one cast_to item per event, ending at [DONE]."""
    events: list[dict[str, Any]] = [{"n": 1}, {"n": 2, "extra": "kept"}]
    server.queue(SSEResponse(events), SSEResponse(events), SSEResponse(events))
    stream = await client.post("/chat/completions", body=BODY, cast_to=Event, stream=True)
    async with stream:
        items = [item async for item in stream]
    assert items == [Event(n=1), Event(n=2)]
    assert stream.http.status_code == 200
    dicts = await client.post("/chat/completions", body=BODY, cast_to=dict, stream=True)
    async with dicts:
        assert [item async for item in dicts] == events
    raw = await client.post("/chat/completions", body=BODY, cast_to=bytes, stream=True)
    async with raw:
        assert [json.loads(item) async for item in raw] == events
    assert server.requests_for("/v1/chat/completions")[-1].headers["accept"] == (
        "text/event-stream"
    )


async def test_chunk_stream_through_post_is_the_chat_stream(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """cast_to=ChatCompletionChunk gives the checked chat stream (usage, finish rules)."""
    stream = await client.post(
        "/chat/completions",
        body={**BODY, "stream": True, "stream_options": {"include_usage": True}},
        cast_to=aa.ChatCompletionChunk,
        stream=True,
    )
    async with stream:
        chunks = [c async for c in stream]
    assert all(isinstance(c, aa.ChatCompletionChunk) for c in chunks)
    assert stream.usage is not None and stream.usage.completion_tokens > 0


async def test_item_stream_without_done_raises(client: aa.AsyncClient, server: LocalServer) -> None:
    """A stream of items that ends without [DONE] raises instead of looking complete."""
    server.queue(SSEResponse([{"n": 1}], done=False))
    stream = await client.post("/chat/completions", body=BODY, cast_to=Event, stream=True)
    with pytest.raises(aa.APIConnectionError, match="no \\[DONE\\]"):
        async with stream:
            async for _ in stream:
                pass


async def test_item_stream_error_event_raises(client: aa.AsyncClient, server: LocalServer) -> None:
    """An error event in an item stream raises the matching status error."""
    error = {"error": {"message": "upstream failed", "type": "server_error", "code": 502}}
    server.queue(SSEResponse([{"n": 1}, error]))
    stream = await client.post("/chat/completions", body=BODY, cast_to=dict, stream=True)
    got: list[Any] = []
    with pytest.raises(aa.APIStatusError, match="upstream failed"):
        async with stream:
            async for item in stream:
                got.append(item)
    assert got == [{"n": 1}]


async def test_post_retries_and_maps_errors(
    client: aa.AsyncClient, server: LocalServer, no_backoff: list[float]
) -> None:
    """A 503 is retried like create(); a 404 raises NotFoundError with its body."""
    hooks = Recorder()
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url, hooks=[hooks]) as c:
        server.queue(ErrorResponse(503), JSONResponse(completion_body("ok")))
        got = await c.post("/chat/completions", body=BODY, cast_to=aa.ChatCompletion)
        assert got.http is not None and got.http.attempts == 2
        assert hooks.retried == [1] and hooks.completed[-1][0] == 2
        with pytest.raises(aa.NotFoundError) as caught:
            await c.post("/embeddings", body={"input": "x"}, cast_to=dict)
    assert caught.value.status_code == 404
    assert len(no_backoff) == 1


async def test_post_max_retries_option(client: aa.AsyncClient, server: LocalServer) -> None:
    """max_retries=0 on the call makes one attempt only."""
    server.queue(ErrorResponse(503), JSONResponse(completion_body()))
    with pytest.raises(aa.InternalServerError):
        await client.post("/chat/completions", body=BODY, cast_to=dict, max_retries=0)
    assert len(server.requests_for("/v1/chat/completions")) == 1


async def test_post_timeout_option(client: aa.AsyncClient, server: LocalServer) -> None:
    """timeout= on the call bounds it: a server that never answers raises APITimeoutError."""
    server.queue(Hang())
    with pytest.raises(aa.APITimeoutError):
        await client.post(
            "/chat/completions",
            body=BODY,
            cast_to=dict,
            timeout=aa.Timeout(0.2, total=0.5),
            max_retries=0,
        )


async def test_post_respects_max_concurrency_and_total_wait(server: LocalServer) -> None:
    """post() takes a max_concurrency slot; waiting for one counts against Timeout.total."""
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url, max_concurrency=2) as c:
        slow = completion_body()
        server.queue(*(JSONResponse(slow, first_byte_delay=0.02) for _ in range(8)))
        got = await asyncio.gather(
            *(c.post("/chat/completions", body=BODY, cast_to=dict) for _ in range(8))
        )
        assert got == [slow] * 8
        assert 1 <= server.max_in_flight <= 2
        server.reset()
        server.queue(Hang(), Hang())
        hung = [
            asyncio.ensure_future(c.post("/chat/completions", body=BODY, cast_to=dict))
            for _ in range(2)
        ]
        for _ in range(200):
            if server.in_flight == 2:
                break
            await asyncio.sleep(0.01)
        assert server.in_flight == 2
        with pytest.raises(aa.APITimeoutError, match="max_concurrency slot"):
            await c.post(
                "/chat/completions", body=BODY, cast_to=dict, timeout=aa.Timeout(5, total=0.2)
            )
        for task in hung:
            task.cancel()
        await asyncio.gather(*hung, return_exceptions=True)


async def test_stream_holds_its_slot_until_closed(server: LocalServer) -> None:
    """A streamed post() keeps its max_concurrency slot until the stream is closed."""
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url, max_concurrency=1) as c:
        server.queue(SSEResponse([{"n": 1}]), JSONResponse(completion_body()))
        stream = await c.post("/chat/completions", body=BODY, cast_to=Event, stream=True)
        waiting = asyncio.ensure_future(c.post("/chat/completions", body=BODY, cast_to=dict))
        await asyncio.sleep(0)
        assert not waiting.done()
        assert len(server.requests_for("/v1/chat/completions")) == 1
        await stream.close()
        assert (await asyncio.wait_for(waiting, 10))["id"] == "c"


async def test_post_refuses_bad_arguments_before_io(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """Bad paths, bodies and cast_to types are refused, naming the problem, sending nothing."""
    with pytest.raises(ValueError, match="relative to base_url"):
        await client.post("https://other.example/x", cast_to=dict)
    with pytest.raises(ValueError, match="extra_query"):
        await client.get("/models?x=1", cast_to=dict)
    with pytest.raises(TypeError, match="body must be a dict"):
        await client.post("/chat/completions", body=[1, 2], cast_to=dict)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="cannot be encoded"):
        await client.post("/chat/completions", body={"x": object()}, cast_to=dict)
    with pytest.raises(TypeError, match="cast_to must be"):
        await client.post("/chat/completions", body=BODY, cast_to=object())  # type: ignore[call-overload]
    assert server.requests_for("/v1/chat/completions") == []


async def test_bad_shape_is_a_validation_error(client: aa.AsyncClient, server: LocalServer) -> None:
    """A body that is not cast_to's shape raises APIResponseValidationError with the body."""
    server.queue(JSONResponse([1, 2, 3]))
    with pytest.raises(aa.APIResponseValidationError) as caught:
        await client.post("/chat/completions", body=BODY, cast_to=dict)
    assert caught.value.body_snippet == "[1,2,3]"


async def test_dict_error_with_200_raises(client: aa.AsyncClient, server: LocalServer) -> None:
    """An error object answered with 200 raises for cast_to=dict too, as for create()."""
    server.queue(
        JSONResponse({"error": {"message": "quota", "type": "x", "code": 429}}),
        JSONResponse(completion_body()),
    )
    c = await client.post("/chat/completions", body=BODY, cast_to=dict)
    assert c["id"] == "c"  # the 429 error object was retried
    assert len(server.requests_for("/v1/chat/completions")) == 2


async def test_job_and_batch_go_through_the_client(server: LocalServer, tmp_path: Path) -> None:
    """The job runner and batch() use the client's path: its query, headers and cap."""
    from anyapi_async._jobs import run_jsonl_job

    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(
            json.dumps({"custom_id": f"r{i}", "body": {**BODY, "n": 1}}) + "\n" for i in range(6)
        )
    )
    async with aa.AsyncClient(
        api_key=API_KEY,
        base_url=server.base_url,
        max_concurrency=1,
        default_query={"api-version": "7"},
        default_headers={"X-App": "job"},
    ) as c:
        summary = await run_jsonl_job(source, tmp_path / "out.jsonl", client=c, concurrency=4)
        assert summary.succeeded == 6
        async with c.chat.completions.batch([BODY] * 4, concurrency=4) as run:
            results = [r async for r in run]
    assert all(r.ok for r in results)
    seen = server.requests_for("/v1/chat/completions")
    assert len(seen) == 10
    assert all(r.query == {"api-version": "7"} and r.headers["x-app"] == "job" for r in seen)
    assert server.max_in_flight == 1
