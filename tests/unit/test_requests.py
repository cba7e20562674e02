"""Request building and error mapping, against aioresponses (no sockets)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from aioresponses import aioresponses
from yarl import URL

import anyapi_async as aa

from ..conftest import API_KEY, BASE_URL, STATUS_CLASSES, completion_body

URL_CC = f"{BASE_URL}/chat/completions"
MSGS: list[Any] = [{"role": "user", "content": "Hi"}]
OK = completion_body("yo")


def sent(mocked: aioresponses, method: str = "POST", url: str = URL_CC) -> list[Any]:
    return mocked.requests[(method, URL(url))]


async def test_body_has_only_set_fields(client: aa.AsyncClient, mocked: aioresponses) -> None:
    """Only the parameters the caller passed are sent; no nulls for the rest."""
    mocked.post(URL_CC, payload=OK)
    await client.chat.completions.create(
        model="m", messages=MSGS, max_tokens=5, logprobs=True, top_logprobs=2, stop=None
    )
    call = sent(mocked)[0]
    body = json.loads(call.kwargs["data"])
    assert body == {
        "model": "m",
        "messages": MSGS,
        "max_tokens": 5,
        "logprobs": True,
        "top_logprobs": 2,
        "stop": None,
    }


async def test_headers_auth_user_agent_and_extras(mocked: aioresponses) -> None:
    """Bearer auth, User-Agent, attribution, default and extra headers, extra query/body."""
    mocked.post(URL_CC + "?trace=1", payload=OK)
    async with aa.AsyncClient(
        api_key=API_KEY,
        base_url=BASE_URL,
        default_headers={"X-Team": "a"},
        http_referer="https://app.example",
        x_title="My App",
    ) as client:
        await client.chat.completions.create(
            model="m",
            messages=MSGS,
            extra_headers={"X-Request-ID": "rid-1"},
            extra_query={"trace": "1"},
            extra_body={"provider": {"order": ["x"]}, "max_tokens": 9},
        )
    call = sent(mocked, url=URL_CC + "?trace=1")[0]
    headers = call.kwargs["headers"]
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert headers["User-Agent"] == f"anyapi-async/{aa.__version__}"
    assert headers["X-Team"] == "a"
    assert headers["HTTP-Referer"] == "https://app.example"
    assert headers["X-Title"] == "My App"
    assert headers["X-Request-ID"] == "rid-1"
    body = json.loads(call.kwargs["data"])
    assert body["provider"] == {"order": ["x"]}
    assert body["max_tokens"] == 9


async def test_async_key_provider_called_per_request(mocked: aioresponses) -> None:
    """An async callable api_key is awaited for every request."""
    keys = iter(["k1", "k2"])

    async def provider() -> str:
        return next(keys)

    mocked.post(URL_CC, payload=OK, repeat=True)
    async with aa.AsyncClient(api_key=provider, base_url=BASE_URL) as client:
        await client.chat.completions.create(model="m", messages=MSGS)
        await client.chat.completions.create(model="m", messages=MSGS)
    auths = [c.kwargs["headers"]["Authorization"] for c in sent(mocked)]
    assert auths == ["Bearer k1", "Bearer k2"]


async def test_struct_message_is_sent_back_with_role(
    client: aa.AsyncClient, mocked: aioresponses
) -> None:
    """A response message appended to the history is encoded with its role."""
    mocked.post(URL_CC, payload=OK, repeat=True)
    first = await client.chat.completions.create(model="m", messages=MSGS)
    await client.chat.completions.create(
        model="m", messages=[*MSGS, first.choices[0].message, {"role": "user", "content": "more"}]
    )
    body = json.loads(sent(mocked)[1].kwargs["data"])
    assert body["messages"][1] == {"role": "assistant", "content": "yo"}


@pytest.mark.parametrize(("status", "cls"), STATUS_CLASSES)
async def test_status_errors(
    client: aa.AsyncClient, mocked: aioresponses, status: int, cls: type[aa.APIStatusError]
) -> None:
    """Every error status raises its class with the body, headers and request id."""
    body = {"error": {"message": f"failed {status}", "type": "t", "code": status, "param": "p"}}
    mocked.post(URL_CC, status=status, payload=body, headers={"x-request-id": "req_9"}, repeat=True)
    with pytest.raises(cls, match=f"failed {status}") as info:
        await client.chat.completions.create(model="m", messages=MSGS, max_retries=0)
    exc = info.value
    assert (exc.status_code, exc.request_id, exc.code, exc.param) == (status, "req_9", status, "p")
    assert exc.body == body
    assert exc.headers["x-request-id"] == "req_9"
    assert len(sent(mocked)) == 1


async def test_html_error_page(client: aa.AsyncClient, mocked: aioresponses) -> None:
    """A 502 HTML page from a proxy still raises the status error, with text kept."""
    mocked.post(URL_CC, status=502, body="<html><h1>Bad Gateway</h1></html>", repeat=True)
    with pytest.raises(aa.InternalServerError, match="Bad Gateway") as info:
        await client.chat.completions.create(model="m", messages=MSGS, max_retries=0)
    assert "Bad Gateway" in info.value.body


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        b'{"id": "x", "choices": [{"index": 0',
        b'["not", "an", "object"]',
        b"{}",
    ],
)
async def test_2xx_bodies_that_are_not_completions(
    client: aa.AsyncClient, mocked: aioresponses, body: bytes
) -> None:
    """HTML, truncated JSON or the wrong shape with status 200 raise a validation error."""
    mocked.post(URL_CC, status=200, body=body)
    with pytest.raises(aa.APIResponseValidationError) as info:
        await client.chat.completions.create(model="m", messages=MSGS)
    assert info.value.status_code == 200
    assert info.value.body_snippet


async def test_error_object_with_status_200(client: aa.AsyncClient, mocked: aioresponses) -> None:
    """A 200 body that is an error object raises an APIError with message and code."""
    mocked.post(URL_CC, status=200, payload={"error": {"message": "Provider down", "code": 402}})
    with pytest.raises(aa.PaymentRequiredError, match="Provider down") as info:
        await client.chat.completions.create(model="m", messages=MSGS)
    assert info.value.code == 402


async def test_vllm_style_error_object(client: aa.AsyncClient, mocked: aioresponses) -> None:
    """An object whose 'object' is 'error' (some inference servers) raises."""
    mocked.post(
        URL_CC, status=200, payload={"object": "error", "message": "bad model", "code": 404}
    )
    with pytest.raises(aa.NotFoundError, match="bad model"):
        await client.chat.completions.create(model="m", messages=MSGS)


async def test_retries_then_success_counts_attempts(
    client: aa.AsyncClient, mocked: aioresponses, no_backoff: list[float]
) -> None:
    """503 twice then 200: three requests, two waits, attempts recorded."""
    mocked.post(URL_CC, status=503, payload={"error": {"message": "busy"}})
    mocked.post(URL_CC, status=503, payload={"error": {"message": "busy"}})
    mocked.post(URL_CC, payload=OK)
    c = await client.chat.completions.create(model="m", messages=MSGS)
    assert c.http is not None and c.http.attempts == 3
    assert len(no_backoff) == 2
    headers = [r.kwargs["headers"] for r in sent(mocked)]
    assert "X-Retry-Count" not in headers[0]
    assert [h.get("X-Retry-Count") for h in headers[1:]] == ["1", "2"]


async def test_final_error_says_attempts(client: aa.AsyncClient, mocked: aioresponses) -> None:
    """When retries run out the exception tells how many attempts were made."""
    mocked.post(URL_CC, status=429, payload={"error": {"message": "slow down"}}, repeat=True)
    with pytest.raises(aa.RateLimitError, match="after 3 attempts"):
        await client.chat.completions.create(model="m", messages=MSGS)


async def test_per_call_and_with_options_max_retries(
    client: aa.AsyncClient, mocked: aioresponses
) -> None:
    """max_retries per call and via with_options override the client default."""
    mocked.post(URL_CC, status=500, payload={}, repeat=True)
    with pytest.raises(aa.InternalServerError):
        await client.chat.completions.create(model="m", messages=MSGS, max_retries=1)
    assert len(sent(mocked)) == 2
    with pytest.raises(aa.InternalServerError):
        await client.with_options(max_retries=0).chat.completions.create(model="m", messages=MSGS)
    assert len(sent(mocked)) == 3


async def test_idempotency_key_reused_across_retries(
    mocked: aioresponses, no_backoff: list[float]
) -> None:
    """One Idempotency-Key per logical call, the same on every retry."""
    mocked.post(URL_CC, status=502, payload={})
    mocked.post(URL_CC, payload=OK)
    mocked.post(URL_CC, payload=OK)
    async with aa.AsyncClient(api_key=API_KEY, base_url=BASE_URL, idempotency_keys=True) as client:
        await client.chat.completions.create(model="m", messages=MSGS)
        await client.chat.completions.create(model="m", messages=MSGS)
    keys = [r.kwargs["headers"]["Idempotency-Key"] for r in sent(mocked)]
    assert keys[0] == keys[1] != keys[2]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"messages": MSGS}, TypeError, "model"),
        ({"model": "", "messages": MSGS}, ValueError, "model"),
        ({"model": "m", "messages": "hi"}, TypeError, "list"),
        ({"model": "m", "messages": {"role": "user"}}, TypeError, "list"),
        ({"model": "m", "messages": []}, ValueError, "empty"),
        ({"model": "m", "messages": [{"content": "x"}]}, ValueError, r"messages\[0\].*role"),
        ({"model": "m", "messages": ["hi"]}, TypeError, r"messages\[0\]"),
        ({"model": "m", "messages": MSGS, "top_logprobs": 21}, ValueError, "top_logprobs"),
        ({"model": "m", "messages": MSGS, "top_logprobs": -1}, ValueError, "top_logprobs"),
        ({"model": "m", "messages": MSGS, "n": 0}, ValueError, "n must"),
        ({"model": "m", "messages": MSGS, "max_tokenz": 5}, TypeError, "max_tokenz"),
        ({"model": 123, "messages": MSGS}, TypeError, "model must be a str.*not int"),
        ({"model": None, "messages": MSGS}, TypeError, "model is required"),
        ({"model": "m", "messages": MSGS, "max_tokens": 0}, ValueError, "max_tokens"),
        ({"model": "m", "messages": MSGS, "max_tokens": True}, ValueError, "max_tokens"),
        ({"model": "m", "messages": MSGS, "max_tokens": "5"}, ValueError, "max_tokens"),
        ({"model": "m", "messages": MSGS, "max_tokens": 5.0}, ValueError, "max_tokens"),
        ({"model": "m", "messages": MSGS, "top_logprobs": 2}, ValueError, "logprobs=True"),
        (
            {"model": "m", "messages": MSGS, "logprobs": False, "top_logprobs": 2},
            ValueError,
            "logprobs=True",
        ),
        (
            {"model": "m", "messages": MSGS, "logprobs": True, "top_logprobs": 2.5},
            ValueError,
            "top_logprobs",
        ),
        ({"model": "m", "messages": MSGS, "logprobs": "yes"}, TypeError, "logprobs"),
        ({"model": "m", "messages": MSGS, "stream": "yes"}, TypeError, "stream must be"),
        ({"model": "m", "messages": MSGS, "temperature": float("nan")}, ValueError, "finite"),
        ({"model": "m", "messages": MSGS, "top_p": float("inf")}, ValueError, "top_p"),
        ({"model": "m", "messages": MSGS, "temperature": "0.5"}, ValueError, "temperature"),
        ({"model": "m", "messages": MSGS, "tool_choice": "any"}, ValueError, "tool_choice"),
        (
            {"model": "m", "messages": MSGS, "tool_choice": {"type": "function"}},
            ValueError,
            "tool_choice",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": object()}]}, TypeError, "encode"),
        (
            {"model": "m", "messages": MSGS, "extra_headers": {"X": "a\r\nb"}},
            ValueError,
            "CR or LF",
        ),
    ],
)
async def test_caller_mistakes_fail_before_io(
    client: aa.AsyncClient,
    mocked: aioresponses,
    kwargs: dict[str, Any],
    exc: type[Exception],
    match: str,
) -> None:
    """Caller mistakes raise TypeError/ValueError and send nothing."""
    with pytest.raises(exc, match=match):
        await client.chat.completions.create(**kwargs)
    assert mocked.requests == {}


def test_api_key_never_in_repr_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """repr hides the key; a key with a newline is refused without echoing it."""
    client = aa.AsyncClient(api_key=API_KEY, base_url=BASE_URL)
    assert API_KEY not in repr(client) and API_KEY not in str(client)
    with pytest.raises(ValueError, match="CR or LF") as info:
        aa.AsyncClient(api_key=API_KEY + "\n", base_url=BASE_URL)
    assert API_KEY not in str(info.value) and all(API_KEY not in str(a) for a in info.value.args)


def test_env_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Key and base URL come from the environment; the default URL is AnyAPI's."""
    monkeypatch.setenv("ANYAPI_API_KEY", "env-key")
    monkeypatch.delenv("ANYAPI_BASE_URL", raising=False)
    client = aa.AsyncClient()
    assert client.base_url == "https://api.anyapi.ai/v1"
    assert client.pipeline.headers["Authorization"] == "Bearer env-key"
    monkeypatch.setenv("ANYAPI_BASE_URL", "https://gw.example/v1/")
    assert aa.AsyncClient().base_url == "https://gw.example/v1"
    monkeypatch.delenv("ANYAPI_API_KEY")
    with pytest.raises(ValueError, match="ANYAPI_API_KEY"):
        aa.AsyncClient()


def test_plain_http_to_remote_host_warns() -> None:
    """http:// to a non-loopback host warns; loopback does not."""
    with pytest.warns(UserWarning, match="plain HTTP"):
        aa.AsyncClient(api_key="k", base_url="http://gateway.example/v1")
    aa.AsyncClient(api_key="k", base_url="http://127.0.0.1:8000/v1")
    aa.AsyncClient(api_key="k", base_url="http://localhost:8000/v1")


async def test_debug_logs_never_show_the_key(
    client: aa.AsyncClient, mocked: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    """Request and retry logs at DEBUG on the root logger carry no key."""
    mocked.post(URL_CC, status=503, payload={})
    mocked.post(URL_CC, payload=OK)
    with caplog.at_level(logging.DEBUG):
        await client.chat.completions.create(model="m", messages=MSGS)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "Retrying" in text and "Authorization" in text
    assert API_KEY not in text


async def test_models_list(client: aa.AsyncClient, mocked: aioresponses) -> None:
    """GET /models decodes into a ModelList."""
    mocked.get(
        f"{BASE_URL}/models", payload={"object": "list", "data": [{"id": "a", "object": "model"}]}
    )
    models = await client.models.list()
    assert [m.id for m in models.data] == ["a"]


async def test_use_after_close(mocked: aioresponses) -> None:
    """A closed client refuses new requests clearly; aclose is idempotent."""
    client = aa.AsyncClient(api_key=API_KEY, base_url=BASE_URL)
    await client.aclose()
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.chat.completions.create(model="m", messages=MSGS)


async def test_good_values_of_checked_parameters_are_sent(
    client: aa.AsyncClient, mocked: aioresponses
) -> None:
    """The checks let every valid form through unchanged."""
    mocked.post(URL_CC, payload=OK)
    choice: Any = {"type": "function", "function": {"name": "f"}}
    await client.chat.completions.create(
        model="m",
        messages=MSGS,
        max_tokens=1,
        temperature=0,
        top_p=0.5,
        logprobs=True,
        top_logprobs=0,
        tool_choice=choice,
    )
    body = json.loads(sent(mocked)[0].kwargs["data"])
    assert body["max_tokens"] == 1 and body["temperature"] == 0 and body["top_p"] == 0.5
    assert body["top_logprobs"] == 0 and body["tool_choice"] == choice


async def test_stream_helper_refuses_stream_argument(
    client: aa.AsyncClient, mocked: aioresponses
) -> None:
    """stream(..., stream=True) says stream() always streams, before any I/O."""
    with pytest.raises(TypeError, match=r"stream\(\) always streams"):
        client.chat.completions.stream(model="m", messages=MSGS, stream=True)  # type: ignore[call-arg]
    assert mocked.requests == {}
