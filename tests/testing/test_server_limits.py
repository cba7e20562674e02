"""The local server under bad input: unknown models, out-of-range values, monstrous schemas."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sys
import tracemalloc
from typing import Any

import aiohttp
import pytest

from anyapi_async import AsyncClient, NotFoundError
from anyapi_async.testing import (
    ANY_MODEL,
    DEFAULT_MODEL,
    Hang,
    LocalServer,
    SchemaTooLarge,
    sample_schema,
)

from .conftest import USER, chat

STARTUP_TIMEOUT = 20.0


def schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


#: Schemas that would take forever or gigabytes if sampled naively.
MONSTROUS: list[dict[str, Any]] = [
    {"type": "array", "items": {"type": "integer"}, "minItems": 100_000_000},
    {
        "type": "array",
        "minItems": 1000,
        "items": {"type": "array", "minItems": 1000, "items": {"type": "string"}},
    },
    {"type": "string", "minLength": 1_000_000_000},
    {  # a node that requires itself: endless without a bound
        "$defs": {"N": {"type": "object", "properties": {"n": {"$ref": "#/$defs/N"}},
                        "required": ["n"]}},
        "$ref": "#/$defs/N",
    },
]  # fmt: skip


async def test_unknown_model_is_404_model_not_found(http: aiohttp.ClientSession) -> None:
    """By default only anyapi-local is served; others get OpenAI's 404 error object."""
    async with LocalServer() as server:
        status, body = await chat(http, server, model="gpt-nope")
        assert status == 404
        assert body == {
            "error": {
                "message": "The model `gpt-nope` does not exist or you do not have access to it.",
                "type": "invalid_request_error",
                "param": None,
                "code": "model_not_found",
            }
        }
        status, body = await chat(http, server, model=DEFAULT_MODEL)
        assert status == 200 and body["model"] == DEFAULT_MODEL
        async with http.get(server.base_url + "/models/gpt-nope") as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "model_not_found"
        async with AsyncClient(api_key="k", base_url=server.base_url, max_retries=0) as client:
            with pytest.raises(NotFoundError, match="gpt-nope") as caught:
                await client.chat.completions.create(
                    model="gpt-nope", messages=[{"role": "user", "content": "hi"}]
                )
            assert caught.value.code == "model_not_found"


async def test_model_list_and_wildcard(http: aiohttp.ClientSession) -> None:
    """models= adds served ids (listed by /v1/models); ANY_MODEL serves every id."""
    async with LocalServer(model="main", models=["gpt-4o", "m"]) as server:
        assert server.models == ("main", "gpt-4o", "m") and not server.any_model
        async with http.get(server.base_url + "/models") as resp:
            assert [m["id"] for m in (await resp.json())["data"]] == ["main", "gpt-4o", "m"]
        assert (await chat(http, server, model="gpt-4o"))[0] == 200
        assert (await chat(http, server, model="gpt-5"))[0] == 404
    async with LocalServer(models=ANY_MODEL) as server:
        assert server.any_model and server.models == (DEFAULT_MODEL,)
        assert (await chat(http, server, model="whatever-you-like"))[0] == 200
    with pytest.raises(TypeError, match="non-empty strings"):
        LocalServer(models=["ok", ""])


async def test_pytest_fixture_serves_any_model(anyapi_server: LocalServer) -> None:
    """The anyapi_server fixture keeps tests of client code free of model lists."""
    assert anyapi_server.any_model


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("temperature", 2.5, "decimal_out_of_range"),
        ("temperature", -0.1, "decimal_out_of_range"),
        ("temperature", "hot", "invalid_type"),
        ("top_p", 1.5, "decimal_out_of_range"),
        ("presence_penalty", -3, "decimal_out_of_range"),
        ("frequency_penalty", 2.01, "decimal_out_of_range"),
        ("logit_bias", {"50256": 101}, "invalid_value"),
        ("n", 100_000, "integer_out_of_range"),
        ("max_tokens", 10**12, "integer_out_of_range"),
        ("max_completion_tokens", 0, "integer_out_of_range"),
    ],
)
async def test_out_of_range_parameters_are_400(
    anyapi_server: LocalServer, http: aiohttp.ClientSession, field: str, value: Any, code: str
) -> None:
    """Values a real API refuses get a 400 naming the parameter."""
    status, body = await chat(http, anyapi_server, **{field: value})
    assert status == 400
    assert body["error"]["param"] == field and body["error"]["code"] == code
    assert (await chat(http, anyapi_server, temperature=2, top_p=0))[0] == 200  # bounds included


@pytest.mark.parametrize("schema", MONSTROUS, ids=["minItems", "nested", "minLength", "recursive"])
async def test_monstrous_schema_is_refused_while_others_are_answered(
    anyapi_server: LocalServer, http: aiohttp.ClientSession, schema: dict[str, Any]
) -> None:
    """A schema asking for too much gets a 400 at once; a request sent alongside is answered."""
    anyapi_server.queue(Hang())  # a request the server is busy with meanwhile
    url = anyapi_server.base_url + "/chat/completions"
    hung = asyncio.create_task(http.post(url, json={"model": "m", "messages": USER}))
    try:
        monstrous, normal = await asyncio.gather(
            chat(http, anyapi_server, response_format=schema_format(schema), n=128),
            chat(http, anyapi_server, max_tokens=5),
        )
        assert monstrous[0] == 400
        assert monstrous[1]["error"]["code"] == "schema_too_large"
        assert normal[0] == 200 and normal[1]["choices"][0]["finish_reason"] == "length"
        tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
        status, body = await chat(http, anyapi_server, tools=tools, tool_choice="required")
        assert status == 400 and body["error"]["code"] == "schema_too_large"
        assert anyapi_server.in_flight == 1  # only the hung one
    finally:
        hung.cancel()


@pytest.mark.parametrize("schema", MONSTROUS, ids=["minItems", "nested", "minLength", "recursive"])
def test_sampling_a_monstrous_schema_stays_small(schema: dict[str, Any]) -> None:
    """The sampler gives up before its memory grows past a few megabytes."""
    tracemalloc.start()
    try:
        with pytest.raises(SchemaTooLarge):
            sample_schema(schema, random.Random(0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


def test_large_but_reasonable_schema_is_sampled() -> None:
    """A thousand items is fine: the bound is far above what real schemas ask."""
    value = sample_schema(
        {"type": "array", "items": {"type": "integer"}, "minItems": 1000}, random.Random(1)
    )
    assert isinstance(value, list) and len(value) == 1000


async def test_logprobs_do_not_depend_on_top_logprobs(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """The chosen tokens and their logprobs are the same whatever top_logprobs or max_tokens."""

    async def logprobs(**extra: Any) -> list[tuple[str, float]]:
        status, body = await chat(http, anyapi_server, logprobs=True, seed=4, **extra)
        assert status == 200
        return [(e["token"], e["logprob"]) for e in body["choices"][0]["logprobs"]["content"]]

    plain = await logprobs()
    for top in (1, 5, 20):
        with_top = await logprobs(top_logprobs=top)
        assert with_top == plain
    assert await logprobs(top_logprobs=3, max_tokens=6) == plain[:6]
    _, body = await chat(http, anyapi_server, logprobs=True, top_logprobs=4, seed=4)
    for entry in body["choices"][0]["logprobs"]["content"]:
        assert entry["top_logprobs"][0]["logprob"] == entry["logprob"]
    assert await logprobs(messages=[{"role": "user", "content": "other"}]) != plain


async def test_cli_server_refuses_unknown_models_and_stops_on_sigterm() -> None:
    """`--model` lists the served ids; SIGTERM ends it with 0 even while a request is stuck."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anyapi_async.testing", "--model", "a", "--model", "b",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), STARTUP_TIMEOUT)
        server = _At(line.decode().strip())
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer k"}) as http:
            assert (await chat(http, server, model="b"))[0] == 200
            assert (await chat(http, server, model="m"))[0] == 404
            monstrous = schema_format(MONSTROUS[0])
            assert (await chat(http, server, model="a", response_format=monstrous))[0] == 400
            async with http.get(server.base_url + "/models") as resp:
                assert [m["id"] for m in (await resp.json())["data"]] == ["a", "b"]
        # A client that sent half its body: the handler waits for the rest, forever.
        host, port = server.base_url.split("//")[1].split("/")[0].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model": '
        )
        await writer.drain()
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), STARTUP_TIMEOUT)
        with contextlib.suppress(ConnectionResetError):  # closed or reset, never answered
            assert await asyncio.wait_for(reader.read(), STARTUP_TIMEOUT) == b""
        writer.close()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), STARTUP_TIMEOUT)
    assert proc.returncode == 0, err.decode()


class _At:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
