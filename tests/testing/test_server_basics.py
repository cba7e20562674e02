"""LocalServer basics: lifecycle, routes, auth, errors, headers, recording and counters."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys

import aiohttp
import pytest
import trustme

import anyapi_async.testing as testing
from anyapi_async.testing import ANY_MODEL, LocalServer

from .conftest import USER, chat, until


async def test_lifecycle_and_urls() -> None:
    """start() binds a free 127.0.0.1 port; URLs follow; aclose() is idempotent."""
    server = LocalServer(models=ANY_MODEL)
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url
    assert await server.start() is server
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.base_url == server.url + "/v1"
    await server.aclose()
    await server.aclose()
    with pytest.raises(RuntimeError):
        _ = server.port


async def test_models_list_shape(anyapi_server: LocalServer, http: aiohttp.ClientSession) -> None:
    """GET /v1/models answers an OpenAI list; /v1/models/{id} one model."""
    async with http.get(anyapi_server.base_url + "/models") as resp:
        body = await resp.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["anyapi-local"]
    assert body["data"][0]["object"] == "model"
    async with http.get(anyapi_server.base_url + "/models/gpt-x") as resp:
        assert (await resp.json())["id"] == "gpt-x"


async def test_missing_key_is_401_when_required() -> None:
    """With require_key=True, no Bearer key: 401 with an OpenAI-shaped error; any key is fine."""
    async with (
        LocalServer(require_key=True, models=ANY_MODEL) as server,
        aiohttp.ClientSession() as bare,
    ):
        url = server.base_url + "/chat/completions"
        async with bare.post(url, json={"model": "m", "messages": USER}) as resp:
            assert resp.status == 401
            error = (await resp.json())["error"]
        async with bare.get(
            server.base_url + "/models", headers={"Authorization": "Basic abc"}
        ) as resp:
            assert resp.status == 401
        async with bare.get(
            server.base_url + "/models", headers={"Authorization": "Bearer anything"}
        ) as resp:
            assert resp.status == 200
    assert set(error) == {"message", "type", "code", "param"}
    assert "API key" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "m"}', "messages"),
        (b'{"model": "m", "messages": []}', "messages"),
        (b'{"model": "m", "messages": "hi"}', "messages"),
        (b'{"model": "m", "messages": [{"role": "robot"}]}', "messages[0].role"),
        (b'{"model": "m", "messages": [{"role": "user"}], "n": 0}', "n"),
        (b'{"model": "m", "messages": [{"role": "user"}], "top_logprobs": 2}', "top_logprobs"),
        (b'{"model": "m", "messages": [{"role": "user"}], "tool_choice": "auto"}', "tool_choice"),
    ],
)
async def test_bad_requests_are_400(
    anyapi_server: LocalServer, http: aiohttp.ClientSession, body: bytes, param: str | None
) -> None:
    """Bodies the API would refuse get 400 and an error naming the parameter."""
    url = anyapi_server.base_url + "/chat/completions"
    async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


async def test_unknown_path_is_404_json(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """Unknown URLs answer 404 with an OpenAI-shaped error."""
    async with http.post(anyapi_server.base_url + "/embeddings", json={}) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "unknown_url"


async def test_request_id_and_rate_limit_headers(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """Every response carries a distinct x-request-id and the x-ratelimit-* headers."""
    ids = []
    for _ in range(2):
        url = anyapi_server.base_url + "/chat/completions"
        async with http.post(url, json={"model": "m", "messages": USER}) as resp:
            ids.append(resp.headers["x-request-id"])
            headers = resp.headers
    async with http.get(anyapi_server.base_url + "/nope") as resp:
        ids.append(resp.headers["x-request-id"])
    assert len(set(ids)) == 3 and all(i.startswith("req_") for i in ids)
    assert [r.request_id for r in anyapi_server.requests] == ids
    assert int(headers["x-ratelimit-limit-requests"]) > int(
        headers["x-ratelimit-remaining-requests"]
    )
    assert int(headers["x-ratelimit-limit-tokens"]) > int(headers["x-ratelimit-remaining-tokens"])
    assert headers["x-ratelimit-reset-requests"] and headers["x-ratelimit-reset-tokens"]


async def test_recording_masks_the_key(
    anyapi_server: LocalServer, http: aiohttp.ClientSession
) -> None:
    """Requests are recorded with method, path, query, JSON body; the key is masked."""
    url = anyapi_server.base_url + "/chat/completions?trace=1"
    async with http.post(
        url, json={"model": "m", "messages": USER}, headers={"X-Api-Key": "sk-other"}
    ) as resp:
        assert resp.status == 200
    seen = anyapi_server.requests[-1]
    assert (seen.method, seen.path, seen.query) == ("POST", "/v1/chat/completions", {"trace": "1"})
    assert seen.json == {"model": "m", "messages": USER}
    assert json.loads(seen.body) == seen.json
    assert seen.headers["authorization"] == "Bearer ***"
    assert seen.headers["X-API-KEY"] == "***"
    assert "sk-raw" not in repr(seen) and "sk-other" not in repr(seen)
    assert anyapi_server.requests_for("/chat/completions") == [seen]


async def test_keep_alive_connections_are_counted(anyapi_server: LocalServer) -> None:
    """Sequential requests on one session share a connection; a second session adds one."""
    for _ in range(2):
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer k"}) as session:
            for _ in range(3):
                status, _body = await chat(session, anyapi_server)
                assert status == 200
    assert len(anyapi_server.requests) == 6
    assert anyapi_server.connections == 2
    anyapi_server.reset()
    assert (anyapi_server.connections, anyapi_server.requests) == (0, [])


async def test_in_flight_counters(anyapi_server: LocalServer, http: aiohttp.ClientSession) -> None:
    """in_flight counts requests being answered, max_in_flight the peak; a client that
    leaves releases its hung request."""
    anyapi_server.queue(testing.Hang(), testing.Hang(), testing.Hang())
    calls = [asyncio.create_task(chat(http, anyapi_server)) for _ in range(3)]
    await until(lambda: anyapi_server.in_flight == 3)
    for call in calls:
        call.cancel()
    await asyncio.gather(*calls, return_exceptions=True)
    await until(lambda: anyapi_server.in_flight == 0)
    assert anyapi_server.max_in_flight == 3
    status, _ = await chat(http, anyapi_server)
    assert status == 200 and anyapi_server.max_in_flight == 3


def test_package_is_separate_from_the_client() -> None:
    """import anyapi_async does not import the testing package."""
    code = "import sys, anyapi_async; print('anyapi_async.testing' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_names() -> None:
    """__all__ is sorted-unique and every public class reports the package as its module."""
    assert len(set(testing.__all__)) == len(testing.__all__)
    for name in testing.__all__:
        obj = getattr(testing, name)
        if isinstance(obj, type):
            assert obj.__module__ == "anyapi_async.testing", name


async def test_https_with_an_ssl_context() -> None:
    """With ssl= the server speaks HTTPS; a client trusting the CA gets answers."""
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)  # fast to generate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    async with LocalServer(ssl=context, models=ANY_MODEL) as server:
        assert server.base_url.startswith("https://127.0.0.1:")
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer k"}) as http:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await http.get(server.base_url + "/models")
            async with http.get(server.base_url + "/models", ssl=trusted) as resp:
                assert resp.status == 200
