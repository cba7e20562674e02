"""Each route attempt is visible: hooks see the route, the call's span names the route that
answered, and failed attempts on other routes are span events."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import anyapi_async
from anyapi_async import AttemptInfo, Hooks, Route, Router
from anyapi_async.otel import instrument
from anyapi_async.testing import ErrorResponse

from ..otel.conftest import Telemetry, attrs_of
from .conftest import Clients, Servers
from .test_fallback import MSGS


class Seen(Hooks):
    def __init__(self) -> None:
        self.requests: list[str | None] = []
        self.errors: list[tuple[str | None, str]] = []

    def on_request(self, info: AttemptInfo) -> None:
        self.requests.append(info.call.route if info.call else None)

    def on_error(self, info: AttemptInfo, error: anyapi_async.APIError) -> None:
        self.errors.append((info.call.route if info.call else None, type(error).__name__))


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    t.shutdown()


async def test_hooks_see_each_attempt_with_its_route(servers: Servers) -> None:
    seen = Seen()
    a = anyapi_async.AsyncClient(base_url=servers[0].base_url, hooks=[seen])
    b = anyapi_async.AsyncClient(base_url=servers[1].base_url, hooks=[seen])
    try:
        router = Router([Route(a, name="a"), Route(b, name="b")])
        servers[0].queue(ErrorResponse(503))
        await router.chat.completions.create(model="x", messages=MSGS)
        assert seen.requests == ["a", "b"]
        assert seen.errors == [("a", "InternalServerError")]
    finally:
        await a.aclose()
        await b.aclose()


async def test_span_names_the_route_and_failed_attempts_are_events(
    servers: Servers, clients: Clients, telemetry: Telemetry
) -> None:
    a, b, _ = clients
    instrument(a, **telemetry.providers())
    instrument(b, **telemetry.providers())
    router = Router([Route(a, name="primary"), Route(b, name="backup")])
    servers[0].queue(ErrorResponse(503))
    await router.chat.completions.create(model="x", messages=MSGS)
    span = telemetry.span()  # one span for the call, not one per route
    assert attrs_of(span)["anyapi.route"] == "backup"
    [event] = [e for e in span.events if e.name == "anyapi.route.failed"]
    assert attrs_of(event) == {"anyapi.route": "primary", "error.type": "503"}
