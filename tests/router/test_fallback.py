"""The fallback rules, breakers, cool-downs and all-failed errors against local servers."""

from __future__ import annotations

import asyncio
import logging

import msgspec
import pytest

import anyapi_async
from anyapi_async import (
    AllRoutesFailedError,
    ChatCompletionMessageParam,
    CircuitBreaker,
    RateLimitError,
    Route,
    Router,
)
from anyapi_async.testing import ErrorResponse, Generated

from .conftest import Clients, Servers

MSGS: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def chats(server: anyapi_async.testing.LocalServer) -> int:
    return len(server.requests_for("/v1/chat/completions"))


def three(clients: Clients, **kwargs: object) -> Router:
    a, b, c = clients
    return Router(
        [Route(a, model="m-a", name="a"), Route(b, model="m-b", name="b"), Route(c, name="c")],
        **kwargs,  # type: ignore[arg-type]
    )


async def test_503_fails_over_at_once_with_one_attempt(servers: Servers, clients: Clients) -> None:
    router = three(clients)
    servers[0].queue(ErrorResponse(503))
    completion = await router.chat.completions.create(model="asked", messages=MSGS)
    assert completion.choices[0].message.content
    # One attempt on a (its client's own retries are off), then b with b's model.
    assert chats(servers[0]) == 1
    assert chats(servers[1]) == 1
    assert servers[0].requests[-1].json["model"] == "m-a"
    assert servers[1].requests[-1].json["model"] == "m-b"
    assert servers[1].requests[-1].json["messages"] == MSGS
    assert chats(servers[2]) == 0


async def test_route_without_model_keeps_the_callers(servers: Servers, clients: Clients) -> None:
    router = three(clients)
    servers[0].queue(ErrorResponse(500))
    servers[1].queue(ErrorResponse(502))
    await router.chat.completions.create(model="asked", messages=MSGS, max_tokens=5)
    assert servers[2].requests[-1].json["model"] == "asked"
    assert servers[2].requests[-1].json["max_tokens"] == 5


@pytest.mark.parametrize("status", [408, 409, 429, 500, 520, 529])
async def test_retryable_statuses_move_on(
    servers: Servers, clients: Clients, status: int
) -> None:
    router = three(clients)
    servers[0].queue(ErrorResponse(status))
    await router.chat.completions.create(model="x", messages=MSGS)
    assert (chats(servers[0]), chats(servers[1])) == (1, 1)


async def test_connection_error_moves_on(servers: Servers, clients: Clients) -> None:
    dead = anyapi_async.AsyncClient(base_url="http://127.0.0.1:9/v1", max_retries=3)
    try:
        router = Router([Route(dead, name="dead"), Route(clients[1], name="b")])
        await router.chat.completions.create(model="x", messages=MSGS)
        assert chats(servers[1]) == 1
        [error] = router.health()["dead"].errors
        assert "APIConnectionError" in error
    finally:
        await dead.aclose()


@pytest.mark.parametrize("status", [400, 422])
async def test_request_errors_are_never_sent_to_another_route(
    servers: Servers, clients: Clients, status: int
) -> None:
    router = three(clients)
    servers[0].queue(ErrorResponse(status, "bad value for temperature"))
    with pytest.raises(anyapi_async.APIStatusError) as info:
        await router.chat.completions.create(model="x", messages=MSGS)
    assert info.value.status_code == status
    assert not isinstance(info.value, AllRoutesFailedError)
    assert (chats(servers[0]), chats(servers[1]), chats(servers[2])) == (1, 0, 0)
    # The request's fault does not count against the route.
    assert router.health()["a"].consecutive_failures == 0


async def test_404_model_not_found_moves_on_other_404_raises(
    servers: Servers, clients: Clients
) -> None:
    router = three(clients)
    servers[0].queue(ErrorResponse(404, "The model does not exist", code="model_not_found"))
    await router.chat.completions.create(model="x", messages=MSGS)
    assert chats(servers[1]) == 1
    servers[0].queue(ErrorResponse(404, "No such route", code="not_found"))
    with pytest.raises(anyapi_async.NotFoundError):
        await router.chat.completions.create(model="x", messages=MSGS)
    assert chats(servers[1]) == 1


async def test_context_length_goes_only_to_a_route_marked_for_it(
    servers: Servers, clients: Clients
) -> None:
    a, b, c = clients
    router = Router(
        [Route(a, name="a"), Route(b, name="b"), Route(c, model="long", name="c",
                                                         on_context_length=True)]
    )
    servers[0].queue(ErrorResponse(400, "too long", code="context_length_exceeded"))
    await router.chat.completions.create(model="x", messages=MSGS)
    assert (chats(servers[0]), chats(servers[1]), chats(servers[2])) == (1, 0, 1)
    assert servers[2].requests[-1].json["model"] == "long"
    # Without such a route it raises as the 400 it is.
    router = Router([Route(a, name="a"), Route(b, name="b")])
    servers[0].queue(ErrorResponse(400, "maximum context length is 8192 tokens"))
    with pytest.raises(AllRoutesFailedError) as info:
        await router.chat.completions.create(model="x", messages=MSGS)
    assert [name for name, _ in info.value.errors] == ["a"]
    assert chats(servers[1]) == 0


async def test_all_routes_failed(servers: Servers, clients: Clients) -> None:
    router = three(clients)
    servers[0].queue(ErrorResponse(503))
    servers[1].queue(ErrorResponse(500))
    servers[2].queue(ErrorResponse(502))
    with pytest.raises(AllRoutesFailedError) as info:
        await router.chat.completions.create(model="x", messages=MSGS)
    error = info.value
    assert isinstance(error, anyapi_async.APIError)
    assert [name for name, _ in error.errors] == ["a", "b", "c"]
    assert [e.status_code for _, e in error.errors] == [503, 500, 502]  # type: ignore[attr-defined]
    assert error.__cause__ is error.errors[-1][1]
    assert "a: " in str(error) and "c: " in str(error)


async def test_breaker_opens_skips_the_dead_route_and_probes_once(
    servers: Servers, clients: Clients
) -> None:
    router = three(clients, breaker=CircuitBreaker(failures=2, cooldown=3600.0))
    servers[0].set_default(ErrorResponse(503))
    for _ in range(2):
        await router.chat.completions.create(model="x", messages=MSGS)
    assert router.health()["a"].state == "open"
    for _ in range(3):
        await router.chat.completions.create(model="x", messages=MSGS)
    assert chats(servers[0]) == 2  # no traffic while open
    assert chats(servers[1]) == 5
    # The route recovers; once the cool-down is over one probe goes through and closes it.
    servers[0].set_default(None)
    router.breaker.cooldown = 0.0
    assert router.health()["a"].state == "half_open"
    await router.chat.completions.create(model="x", messages=MSGS)
    assert chats(servers[0]) == 3
    assert router.health()["a"].state == "closed"
    await router.chat.completions.create(model="x", messages=MSGS)
    assert chats(servers[0]) == 4


async def test_failed_probe_opens_again_and_concurrent_calls_send_one_probe(
    servers: Servers, clients: Clients
) -> None:
    router = three(clients, breaker=CircuitBreaker(failures=1, cooldown=3600.0))
    servers[0].set_default(ErrorResponse(503))
    await router.chat.completions.create(model="x", messages=MSGS)
    router.breaker.cooldown = 0.0
    await asyncio.gather(
        *(router.chat.completions.create(model="x", messages=MSGS) for _ in range(8))
    )
    assert chats(servers[0]) == 2  # one probe among eight concurrent calls
    router.breaker.cooldown = 3600.0
    assert router.health()["a"].state == "open"


async def test_failure_rate_window_opens(servers: Servers, clients: Clients) -> None:
    breaker = CircuitBreaker(failures=100, cooldown=3600.0, failure_rate=0.5, min_calls=4)
    router = three(clients, breaker=breaker)
    servers[0].queue(ErrorResponse(503), Generated(), ErrorResponse(503))
    for _ in range(3):
        await router.chat.completions.create(model="x", messages=MSGS)
    assert router.health()["a"].state == "closed"  # 3 calls: under min_calls
    servers[0].queue(ErrorResponse(503))
    await router.chat.completions.create(model="x", messages=MSGS)
    assert router.health()["a"].state == "open"  # 3 of 4 failed


async def test_auth_error_opens_at_once_with_a_warning(
    servers: Servers, clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    router = three(clients)
    servers[0].queue(ErrorResponse(401))
    with caplog.at_level(logging.WARNING, logger="anyapi_async"):
        await router.chat.completions.create(model="x", messages=MSGS)
    assert router.health()["a"].state == "open"
    assert any("'a'" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    await router.chat.completions.create(model="x", messages=MSGS)
    assert chats(servers[0]) == 1


async def test_retry_after_cools_the_route_instead_of_waiting(
    servers: Servers, clients: Clients
) -> None:
    router = three(clients)
    servers[0].queue(ErrorResponse(429, headers={"Retry-After": "30"}))
    await router.chat.completions.create(model="x", messages=MSGS)
    health = router.health()["a"]
    assert 0 < health.cooling <= 30
    assert health.state == "closed"  # busy, not broken
    await router.chat.completions.create(model="x", messages=MSGS)
    assert (chats(servers[0]), chats(servers[1])) == (1, 2)


async def test_every_route_cooling_past_max_retry_after_raises_rate_limit(
    servers: Servers, clients: Clients
) -> None:
    a, b, _ = clients
    router = Router([Route(a, name="a"), Route(b, name="b")])
    servers[0].queue(ErrorResponse(429, headers={"Retry-After": "600"}))
    servers[1].queue(ErrorResponse(503, headers={"Retry-After": "300"}))
    with pytest.raises(RateLimitError) as info:
        await router.chat.completions.create(model="x", messages=MSGS)
    assert info.value.retry_after is not None and 290 < info.value.retry_after <= 300
    # Still cooling: the next call raises at once, without a request.
    with pytest.raises(RateLimitError):
        await router.chat.completions.create(model="x", messages=MSGS)
    assert (chats(servers[0]), chats(servers[1])) == (1, 1)


async def test_every_route_cooling_briefly_waits_and_succeeds(
    servers: Servers, clients: Clients
) -> None:
    a, b, _ = clients
    router = Router([Route(a, name="a"), Route(b, name="b")])
    servers[0].queue(ErrorResponse(429, headers={"retry-after-ms": "1"}))
    servers[1].queue(ErrorResponse(429, headers={"retry-after-ms": "1"}))
    completion = await router.chat.completions.create(model="x", messages=MSGS)
    assert completion.choices
    assert chats(servers[0]) == 2


async def test_stream_fails_over_before_the_first_event(
    servers: Servers, clients: Clients
) -> None:
    router = three(clients)
    servers[0].queue(ErrorResponse(503))
    servers[1].queue(Generated(text="never seen", cut_after=0))
    servers[2].queue(Generated(text="Hello from c"))
    async with router.chat.completions.stream(model="x", messages=MSGS) as s:
        text = "".join([t async for t in s.text_deltas()])
    assert text == "Hello from c"
    assert (chats(servers[0]), chats(servers[1]), chats(servers[2])) == (1, 1, 1)
    stream = await router.chat.completions.create(model="x", messages=MSGS, stream=True)
    async with stream:
        chunks = [c async for c in stream]
    assert chunks
    assert servers[0].requests[-1].json["stream"] is True


async def test_a_cut_after_content_raises_as_today(servers: Servers, clients: Clients) -> None:
    router = three(clients)
    servers[0].queue(Generated(text="one two three four five six", cut_after=2))
    with pytest.raises(anyapi_async.APIConnectionError):
        async with router.chat.completions.stream(model="x", messages=MSGS) as s:
            async for _ in s.text_deltas():
                pass
    assert chats(servers[1]) == 0  # continue_streams=True: tests/router/test_continuation.py


class Person(msgspec.Struct):
    name: str
    age: int


async def test_parse_raw_and_streaming_response_forms(
    servers: Servers, clients: Clients
) -> None:
    router = three(clients)
    servers[0].queue(ErrorResponse(503))
    parsed = await router.chat.completions.parse(
        model="x", messages=MSGS, response_format=Person
    )
    assert isinstance(parsed.choices[0].message.parsed, Person)
    servers[0].queue(ErrorResponse(503))
    raw = await router.chat.completions.with_raw_response.create(model="x", messages=MSGS)
    assert raw.status_code == 200 and raw.parse().choices
    servers[0].queue(ErrorResponse(503))
    async with router.chat.completions.with_streaming_response.create(
        model="x", messages=MSGS
    ) as response:
        completion = await response.parse()
    assert completion.choices
    assert chats(servers[1]) == 3


async def test_batch_through_the_router(servers: Servers, clients: Clients) -> None:
    router = three(clients, breaker=CircuitBreaker(failures=1, cooldown=3600.0))
    servers[0].set_default(ErrorResponse(503))
    requests = [{"model": "x", "messages": MSGS} for _ in range(10)]
    async with router.chat.completions.batch(requests, concurrency=4) as run:
        results = [r async for r in run]
    assert all(r.ok for r in results)
    assert chats(servers[1]) == 10
    assert chats(servers[0]) <= 4  # the breaker opened after the first failures


def client_tasks() -> set[asyncio.Task[object]]:
    """The loop's tasks but the local servers' connection handlers."""
    return {t for t in asyncio.all_tasks() if "RequestHandler" not in repr(t.get_coro())}


async def test_no_task_left_behind(servers: Servers, clients: Clients) -> None:
    router = three(clients)
    servers[0].queue(ErrorResponse(503))
    before = client_tasks()
    await router.chat.completions.create(model="x", messages=MSGS)
    assert client_tasks() == before


def test_bad_routes_are_refused_before_io() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Router([])
    with pytest.raises(TypeError, match="Route"):
        Router(["not a route"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="AsyncClient"):
        Route(object())
    with pytest.raises(ValueError, match="failures"):
        CircuitBreaker(failures=0)


async def test_waiting_for_cooling_routes_is_bounded_by_max_retries(
    servers: Servers, clients: Clients
) -> None:
    a, b, _ = clients  # max_retries=3: three waits, then RateLimitError
    router = Router([Route(a, name="a"), Route(b, name="b")])
    for server in servers[:2]:
        server.set_default(ErrorResponse(429, headers={"retry-after-ms": "1"}))
    with pytest.raises(RateLimitError) as info:
        await router.chat.completions.create(model="x", messages=MSGS)
    assert info.value.retry_after is not None
    assert (chats(servers[0]), chats(servers[1])) == (4, 4)


async def test_model_may_be_left_out_when_every_route_sets_one(
    servers: Servers, clients: Clients
) -> None:
    a, b, c = clients
    router = Router([Route(a, model="m-a", name="a"), Route(b, model="m-b", name="b")])
    servers[0].queue(ErrorResponse(503))
    completion = await router.chat.completions.create(messages=MSGS, max_tokens=5)
    assert completion.choices
    assert servers[1].requests[-1].json["model"] == "m-b"
    async with router.chat.completions.stream(messages=MSGS) as s:
        assert [t async for t in s.text_deltas()]
    assert servers[0].requests[-1].json["model"] == "m-a"
    # A route without a model needs the caller's: refused before any request.
    partial = Router([Route(a, model="m-a", name="a"), Route(c, name="c")])
    with pytest.raises(TypeError, match="'c' has no model"):
        await partial.chat.completions.create(messages=MSGS)
    assert chats(servers[2]) == 0
