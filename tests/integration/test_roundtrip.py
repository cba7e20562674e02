"""Full round trips against the local server: requests, pooling, sessions, closing."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import warnings
from typing import Any

import aiohttp
import pytest

import anyapi_async as aa
from anyapi_async.testing import LocalServer

from ..conftest import API_KEY

MSGS: list[Any] = [{"role": "user", "content": "Say something nice"}]


async def test_completion_round_trip(client: aa.AsyncClient, server: LocalServer) -> None:
    """A completion decodes fully and the server saw the exact JSON body."""
    c = await client.chat.completions.create(
        model="local-1", messages=MSGS, max_tokens=8, logprobs=True, top_logprobs=2
    )
    assert c.object == "chat.completion" and c.model == "local-1"
    choice = c.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert c.usage is not None
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens
    assert choice.logprobs is not None and choice.logprobs.content
    entry = choice.logprobs.content[0]
    assert len(entry.top_logprobs) == 2 and entry.bytes == list(entry.token.encode())
    seen = server.requests[-1]
    assert seen.json == {
        "model": "local-1",
        "messages": MSGS,
        "max_tokens": 8,
        "logprobs": True,
        "top_logprobs": 2,
    }
    assert API_KEY not in json.dumps(dict(seen.headers))
    assert c.http is not None and c.http.request_id
    assert c.http.timings.time_to_headers is not None


async def test_keep_alive_reuses_one_connection(
    client: aa.AsyncClient, server: LocalServer
) -> None:
    """Many sequential requests, streaming or not, travel over one connection."""
    for i in range(10):
        if i % 2:
            await client.chat.completions.create(model="m", messages=MSGS)
        else:
            stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True)
            async with stream:
                async for _ in stream:
                    pass
    assert len(server.requests) == 10
    assert server.connections == 1


async def test_caller_owned_session_is_not_closed(server: LocalServer) -> None:
    """A session passed in is used and left open."""
    async with aiohttp.ClientSession() as session:
        async with aa.AsyncClient(api_key="k", base_url=server.base_url, session=session) as c:
            await c.chat.completions.create(model="m", messages=MSGS)
        assert not session.closed
        async with session.get(
            server.base_url + "/models", headers={"Authorization": "Bearer k"}
        ) as r:
            assert r.status == 200


async def test_client_built_outside_the_loop_works(server: LocalServer) -> None:
    """A client created before any loop runs (at import time) creates its session lazily."""
    holder: dict[str, aa.AsyncClient] = {}

    def build() -> None:
        holder["c"] = aa.AsyncClient(api_key="k", base_url=server.base_url)

    thread = threading.Thread(target=build)
    thread.start()
    thread.join()
    async with holder["c"] as c:
        assert (await c.chat.completions.create(model="m", messages=MSGS)).choices


async def test_with_options_shares_the_pool(client: aa.AsyncClient, server: LocalServer) -> None:
    """A with_options copy uses the same connections; closing it keeps the original open."""
    await client.chat.completions.create(model="m", messages=MSGS)
    copy = client.with_options(timeout=5, max_retries=0)
    assert copy.timeout == aa.Timeout(5) and copy.max_retries == 0
    await copy.chat.completions.create(model="m", messages=MSGS)
    await copy.aclose()
    await client.chat.completions.create(model="m", messages=MSGS)
    assert server.connections == 1


async def test_models_list(client: aa.AsyncClient) -> None:
    """GET /models through the client."""
    models = await client.models.list()
    assert models.data and all(m.id for m in models.data)


@pytest.mark.parametrize("model_id", ["local-1", "openai/gpt-4o", "a b?c#d"])
async def test_models_retrieve(client: aa.AsyncClient, server: LocalServer, model_id: str) -> None:
    """GET /models/{id}: the id travels as one percent-encoded path segment and comes back."""
    model = await client.models.retrieve(model_id)
    assert isinstance(model, aa.Model)
    assert (model.id, model.object, model.owned_by) == (model_id, "model", "anyapi")
    seen = server.requests[-1]
    assert (seen.method, seen.path, seen.query) == ("GET", f"/v1/models/{model_id}", {})


@pytest.mark.parametrize(
    ("model_id", "error", "match"),
    [("", ValueError, "must not be empty"), ("  ", ValueError, "must not be empty"),
     (None, TypeError, "must be a str, not NoneType")],
)  # fmt: skip
async def test_models_retrieve_refuses_bad_ids(
    client: aa.AsyncClient, server: LocalServer, model_id: Any, error: type[Exception], match: str
) -> None:
    """A missing or non-str id fails before any request is sent."""
    with pytest.raises(error, match=match):
        await client.models.retrieve(model_id)
    assert server.requests == []


def test_unclosed_client_warns_without_scheduling(server_url: str) -> None:
    """A client dropped while open warns (ResourceWarning) and schedules nothing."""

    async def use() -> aa.AsyncClient:
        c = aa.AsyncClient(api_key="k", base_url=server_url)
        await c.chat.completions.create(model="m", messages=MSGS)
        return c

    loop = asyncio.new_event_loop()
    client = loop.run_until_complete(use())
    # The dropped pool's sockets are reported too (by aiohttp and asyncio, as they are
    # collected), so the recording spans closing the loop as well.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del client
        gc.collect()
        ours = [w for w in caught if "AsyncClient was garbage-collected" in str(w.message)]
        assert ours and ours[0].category is ResourceWarning
        assert not [t for t in asyncio.all_tasks(loop) if not t.done()]
        loop.close()
        gc.collect()


def test_second_event_loop_raises_clearly(server_url: str) -> None:
    """A client first used in one loop refuses another loop with a clear error."""

    async def main() -> aa.AsyncClient:
        client = aa.AsyncClient(api_key="k", base_url=server_url)
        await client.chat.completions.create(model="m", messages=MSGS)
        return client

    loop = asyncio.new_event_loop()
    client = loop.run_until_complete(main())

    async def again() -> None:
        await client.chat.completions.create(model="m", messages=MSGS)

    with pytest.raises(RuntimeError, match="another event loop"):
        asyncio.run(again())
    loop.run_until_complete(client.aclose())
    loop.close()


async def test_second_loop_while_first_is_open_raises_clearly(server: LocalServer) -> None:
    """Using one client from another, still-open loop raises a clear error, never hangs."""
    async with aa.AsyncClient(api_key="k", base_url=server.base_url) as c:
        await c.chat.completions.create(model="m", messages=MSGS)

        def other_loop() -> BaseException | None:
            async def call() -> None:
                await c.chat.completions.create(model="m", messages=MSGS)

            try:
                asyncio.run(call())
            except RuntimeError as exc:
                return exc
            return None

        exc = await asyncio.get_running_loop().run_in_executor(None, other_loop)
        assert exc is not None and "event loop" in str(exc)
