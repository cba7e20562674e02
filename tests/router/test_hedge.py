"""Hedged requests: a stalled route is cut by a hedge on the next one, within the budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import anyapi_async
from anyapi_async import Hedge, Route, Router
from anyapi_async.testing import ErrorResponse, Generated

from .conftest import Clients, HangingServer, Servers
from .test_fallback import MSGS, chats, client_tasks


@pytest.fixture
async def stalled(hanging: HangingServer) -> AsyncIterator[anyapi_async.AsyncClient]:
    client = anyapi_async.AsyncClient(base_url=hanging.base_url)
    yield client
    await client.aclose()


async def test_hedge_cuts_a_stalled_call_and_releases_the_loser(
    hanging: HangingServer, stalled: anyapi_async.AsyncClient, servers: Servers, clients: Clients
) -> None:
    router = Router(
        [Route(stalled, name="slow"), Route(clients[1], model="m-b", name="b")],
        hedge=Hedge(after=0.01, max_extra=1.0),
    )
    before = client_tasks()
    completion = await router.chat.completions.create(model="x", messages=MSGS)
    assert completion.choices
    assert router.hedges == 1
    assert hanging.requests == 1 and chats(servers[1]) == 1
    # The loser was cancelled and its connection closed: the server saw it go.
    await asyncio.wait_for(hanging.released.wait(), 10)
    assert client_tasks() == before
    assert router.health()["b"].calls == 1


async def test_hedge_stream_before_the_first_event(
    hanging: HangingServer, stalled: anyapi_async.AsyncClient, servers: Servers, clients: Clients
) -> None:
    router = Router(
        [Route(stalled, name="slow"), Route(clients[1], name="b")],
        hedge=Hedge(after=0.01, max_extra=1.0),
    )
    servers[1].queue(Generated(text="hedged text"))
    async with router.chat.completions.stream(model="x", messages=MSGS) as s:
        text = "".join([t async for t in s.text_deltas()])
    assert text == "hedged text"
    await asyncio.wait_for(hanging.released.wait(), 10)


async def test_hedges_never_exceed_max_extra(
    hanging: HangingServer, stalled: anyapi_async.AsyncClient, servers: Servers, clients: Clients
) -> None:
    # A budget of one hedge per four calls; the slow route never answers, so calls that get
    # no hedge wait for their timeout on it and then fall back.
    router = Router(
        [Route(stalled, name="slow"), Route(clients[1], name="b")],
        hedge=Hedge(after=0.01, max_extra=0.25),
    )
    outcomes = await asyncio.gather(
        *(
            router.chat.completions.create(model="x", messages=MSGS, timeout=0.5)
            for _ in range(8)
        ),
        return_exceptions=True,
    )
    assert router.hedges == 2  # 8 calls x 0.25
    assert not [o for o in outcomes if isinstance(o, BaseException)]
    assert chats(servers[1]) == 8
    assert hanging.requests == 8


async def test_hedge_falls_back_when_the_first_route_fails(
    servers: Servers, clients: Clients
) -> None:
    router = Router(
        [Route(clients[0], name="a"), Route(clients[1], name="b")],
        hedge=Hedge(after=30.0, max_extra=0.1),
    )
    servers[0].queue(ErrorResponse(503))
    await router.chat.completions.create(model="x", messages=MSGS)
    assert router.hedges == 0
    assert (chats(servers[0]), chats(servers[1])) == (1, 1)
    servers[0].queue(ErrorResponse(400))
    with pytest.raises(anyapi_async.BadRequestError):
        await router.chat.completions.create(model="x", messages=MSGS)
    assert chats(servers[1]) == 1


async def test_quantile_after_uses_the_routes_latencies(
    servers: Servers, clients: Clients
) -> None:
    hedge = Hedge(after="p95", max_extra=0.1, initial=2.5, min_samples=3)
    router = Router([Route(clients[0], name="a"), Route(clients[1], name="b")], hedge=hedge)
    route = router.routes[0]
    assert router.hedge_after(route) == 2.5  # no samples yet
    for _ in range(3):
        await router.chat.completions.create(model="x", messages=MSGS)
    assert router.hedge_after(route) == max(route.latencies)


def test_hedge_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="quantile"):
        Hedge(after="fast")
    with pytest.raises(ValueError, match="max_extra"):
        Hedge(after=1.0, max_extra=0)
    assert Hedge(after="p99").quantile == pytest.approx(0.99)


async def test_a_cancelled_probe_lets_the_next_one_through(
    hanging: HangingServer, stalled: anyapi_async.AsyncClient, servers: Servers, clients: Clients
) -> None:
    router = Router(
        [Route(stalled, name="slow"), Route(clients[1], name="b")],
        breaker=anyapi_async.CircuitBreaker(failures=1, cooldown=0.0),
    )
    router.failed(router.routes[0], anyapi_async.APIConnectionError(), "next")  # open it
    assert router.health()["slow"].state == "half_open"
    call = asyncio.ensure_future(router.chat.completions.create(model="x", messages=MSGS))
    await asyncio.wait_for(hanging.arrived.wait(), 10)  # the probe is on the slow route
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    hanging.arrived.clear()
    call = asyncio.ensure_future(router.chat.completions.create(model="x", messages=MSGS))
    await asyncio.wait_for(hanging.arrived.wait(), 10)  # a new probe went through
    assert hanging.requests == 2
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
