"""Three scripted endpoints for the failover benchmark, in one process (aiohttp.web).

Run: ``python -m benchmarks.failover_server``; it prints ``{"ports": [a, b, c, healthy]}``
when listening (``healthy``, with no fault, is the reference). Every endpoint answers
``POST .../chat/completions`` with a fixed completion after ``BASE_DELAY`` seconds, except
when its fault says otherwise (``t`` is the time since the last ``POST /_reset``, sent to
any of them):

- ``down``: answers 503 at once while ``DOWN_FROM <= t < DOWN_UNTIL``.
- ``slow``: every ``SLOW_EVERY``-th request takes ``SLOW_DELAY`` seconds (a slow tail).
- ``limited``: every ``LIMIT_EVERY``-th request is a 429 with ``Retry-After: 1``.

``GET /_stats`` answers the requests each endpoint received since the reset.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

from aiohttp import web

BASE_DELAY = 0.02
DOWN_FROM, DOWN_UNTIL = 0.5, 2.5
SLOW_EVERY, SLOW_DELAY = 50, 1.0
LIMIT_EVERY = 20
#: The three routes, and a fault-free endpoint for the reference figures.
NAMES = ("down", "slow", "limited", "healthy")

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
).encode()


class State:
    def __init__(self) -> None:
        self.epoch = time.monotonic()
        self.counts = dict.fromkeys(NAMES, 0)


def _error(status: int, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps({"error": {"message": f"scripted {status}", "type": "server_error"}})
    return web.Response(
        status=status, body=body, content_type="application/json", headers=headers
    )


def app_for(name: str, state: State) -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        await request.read()
        state.counts[name] += 1
        n = state.counts[name]
        t = time.monotonic() - state.epoch
        if name == "down" and DOWN_FROM <= t < DOWN_UNTIL:
            return _error(503)
        if name == "limited" and n % LIMIT_EVERY == 0:
            return _error(429, {"Retry-After": "1"})
        delay = SLOW_DELAY if name == "slow" and n % SLOW_EVERY == 0 else BASE_DELAY
        await asyncio.sleep(delay)
        return web.Response(body=COMPLETION, content_type="application/json")

    async def reset(request: web.Request) -> web.Response:
        state.epoch = time.monotonic()
        state.counts = dict.fromkeys(NAMES, 0)
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(state.counts)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/_reset", reset)
    app.router.add_get("/_stats", stats)
    return app


async def serve() -> None:
    state = State()
    ports: list[int] = []
    runners: list[web.AppRunner] = []
    for name in NAMES:
        runner = web.AppRunner(app_for(name, state), access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        ports.append(sock.getsockname()[1])
        runners.append(runner)
    print(json.dumps({"ports": ports}), flush=True)
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        for runner in runners:
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(serve())
