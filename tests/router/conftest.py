"""Router fixtures: three local servers that serve every model, and a client for each."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

import anyapi_async
from anyapi_async.testing import ANY_MODEL, LocalServer

Servers = tuple[LocalServer, LocalServer, LocalServer]
Clients = tuple[anyapi_async.AsyncClient, anyapi_async.AsyncClient, anyapi_async.AsyncClient]


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    async with (
        LocalServer(models=ANY_MODEL) as a,
        LocalServer(models=ANY_MODEL) as b,
        LocalServer(models=ANY_MODEL) as c,
    ):
        yield a, b, c


@pytest.fixture
async def clients(servers: Servers) -> AsyncIterator[Clients]:
    # Clients with retries on: the router must still make one attempt per route.
    made = tuple(anyapi_async.AsyncClient(base_url=s.base_url, max_retries=3) for s in servers)
    try:
        yield made  # type: ignore[misc]
    finally:
        for client in made:
            await client.aclose()


class HangingServer:
    """Accepts chat requests and never answers; ``released`` is set when a client lets go
    of one (aiohttp cancels the handler when its connection closes)."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.released = asyncio.Event()
        self.requests = 0
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        self.arrived.set()
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            self.released.set()
        raise AssertionError("unreachable")  # pragma: no cover

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        self.runner = web.AppRunner(app, handler_cancellation=True)
        await self.runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        await web.SockSite(self.runner, sock).start()
        self.base_url = f"http://127.0.0.1:{port}/v1"


@pytest.fixture
async def hanging() -> AsyncIterator[HangingServer]:
    server = HangingServer()
    await server.start()
    try:
        yield server
    finally:
        assert server.runner is not None
        await server.runner.cleanup()
