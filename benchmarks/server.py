"""A cheap HTTP/1.1 keep-alive server for the benchmarks: stdlib `asyncio.Protocol`, no framework.

Every response is encoded once at start-up and written straight to the socket, so the
server spends a few microseconds per request and the client figures stay sharp (an
``aiohttp.web`` server costs about three times more CPU per request). Streams use chunked
transfer-encoding with each SSE event (``data: {...}\\n\\n``) as its own HTTP chunk; paced
routes write their first events at once, then one event per ``pace_ms``.

The request's ``model`` field names the route (``"model": "stream-tools"``), so one client
serves every route; any path but ``/_stats`` is treated as chat completions. ``GET /_stats``
answers counters (connections, requests, peak of streams open at once) and
``GET /_stats?reset`` zeroes them.

Run: ``python -m benchmarks.server [--port 0]``; it prints ``{"port": N}`` when listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .payloads import ROUTES, Route, completion_body, stream_events

__all__ = [
    "Prepared",
    "ServerStats",
    "main",
    "prepare",
    "raise_fd_limit",
    "running",
    "serve",
    "spawn",
    "stats",
]

HOST = "127.0.0.1"
_MODEL = re.compile(rb'"model"\s*:\s*"([^"]*)"')
BACKLOG = 4096
# Headers in the style of OpenAI's (behind Cloudflare): clients parse all of them.
COMMON_HEADERS = (
    "Date: Tue, 19 Nov 2024 07:06:40 GMT",
    "Connection: keep-alive",
    "access-control-expose-headers: X-Request-ID",
    "openai-organization: user-benchmark",
    "openai-processing-ms: 231",
    "openai-version: 2020-10-01",
    "x-ratelimit-limit-requests: 30000",
    "x-ratelimit-limit-tokens: 150000000",
    "x-ratelimit-remaining-requests: 29999",
    "x-ratelimit-remaining-tokens: 149999962",
    "x-ratelimit-reset-requests: 2ms",
    "x-ratelimit-reset-tokens: 0s",
    "x-request-id: req_4f6e0c2b9d8a7e1f3c5b2a9d8e7f6a5b",
    "strict-transport-security: max-age=31536000; includeSubDomains; preload",
    "cf-cache-status: DYNAMIC",
    "X-Content-Type-Options: nosniff",
    "Server: cloudflare",
    "cf-ray: 8e4c1f2a3b5d6e7f-CDG",
    'alt-svc: h3=":443"; ma=86400',
)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _head(status: str, headers: list[str]) -> bytes:
    return ("HTTP/1.1 " + status + "\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode()


def _fixed(status: str, content_type: str, body: bytes) -> bytes:
    head = _head(
        status, [f"Content-Type: {content_type}", f"Content-Length: {len(body)}", *COMMON_HEADERS]
    )
    return head + body


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@dataclass
class Prepared:
    """A route's bytes: ``pieces[0]`` at once, then one piece per ``pace`` seconds."""

    pieces: list[bytes]
    pace: float = 0.0


def prepare(route: Route) -> Prepared:
    """Encode ``route``'s whole HTTP response (status line to last chunk)."""
    if not route.stream:
        return Prepared([_fixed("200 OK", "application/json", _json(completion_body(route)))])
    head = _head(
        "200 OK",
        [
            "Content-Type: text/event-stream; charset=utf-8",
            "Transfer-Encoding: chunked",
            *COMMON_HEADERS,
        ],
    )
    frames = [_frame(b"data: " + _json(event) + b"\n\n") for event in stream_events(route)]
    end = _frame(b"data: [DONE]\n\n") + b"0\r\n\r\n"
    if not route.pace_ms:
        return Prepared([head + b"".join(frames) + end])
    burst = route.burst
    pieces = [head + b"".join(frames[:burst]), *frames[burst:]]
    pieces[-1] += end
    return Prepared(pieces, route.pace_ms / 1000)


@dataclass
class ServerStats:
    """Counters read by the harness through ``GET /_stats``."""

    connections: int = 0
    requests: int = 0
    active_streams: int = 0
    peak_streams: int = 0
    routes: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> bytes:
        return _json(
            {
                "connections": self.connections,
                "requests": self.requests,
                "active_streams": self.active_streams,
                "peak_streams": self.peak_streams,
                "routes": self.routes,
            }
        )


NOT_FOUND = _fixed(
    "404 Not Found",
    "application/json",
    _json({"error": {"message": "Unknown route", "type": "invalid_request_error", "code": None}}),
)


class BenchProtocol(asyncio.Protocol):
    """One connection: parse requests (Content-Length bodies), write prepared responses."""

    def __init__(self, table: dict[str, Prepared], stats: ServerStats) -> None:
        self._table = table
        self._stats = stats
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._pending: list[bytes] = []
        self._close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._stats.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._stats.active_streams -= 1
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._process()

    def _process(self) -> None:
        buf = self._buf
        while self._timer is None and self._transport is not None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else len(head)])
            total = end + 4 + length
            if len(buf) < total:
                return
            body = bytes(buf[end + 4 : total])
            del buf[:total]
            self._close_after = b"\r\nconnection: close" in head
            path = head[head.find(b" ") + 1 : head.find(b" http/")]
            self._respond(path, body)

    def _respond(self, path: bytes, body: bytes) -> None:
        stats = self._stats
        transport = self._transport
        assert transport is not None
        if path.startswith(b"/_stats"):
            transport.write(_fixed("200 OK", "application/json", stats.as_json()))
            if b"reset" in path:
                stats.connections = stats.requests = 0
                stats.peak_streams = stats.active_streams
                stats.routes = {}
            return self._finish()
        match = _MODEL.search(body)
        route = match.group(1).decode() if match else ""
        prepared = self._table.get(route)
        if prepared is None:
            transport.write(NOT_FOUND)
            return self._finish()
        stats.requests += 1
        stats.routes[route] = stats.routes.get(route, 0) + 1
        transport.write(prepared.pieces[0])
        if len(prepared.pieces) == 1:
            return self._finish()
        stats.active_streams += 1
        stats.peak_streams = max(stats.peak_streams, stats.active_streams)
        self._pending = prepared.pieces[:0:-1]  # reversed: pop() gives the next piece
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(prepared.pace, self._tick, prepared.pace)

    def _tick(self, pace: float) -> None:
        transport = self._transport
        if transport is None:
            return
        transport.write(self._pending.pop())
        if self._pending:
            self._timer = asyncio.get_running_loop().call_later(pace, self._tick, pace)
            return
        self._timer = None
        self._stats.active_streams -= 1
        self._finish()
        if self._buf and self._transport is not None:
            self._process()

    def _finish(self) -> None:
        if self._close_after and self._transport is not None:
            self._transport.close()


def raise_fd_limit() -> None:
    """Lift the soft open-files limit to the hard one (1,000 connections need it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(port: int = 0, routes: dict[str, Route] = ROUTES) -> None:
    """Listen on 127.0.0.1:``port``; print the port as JSON; serve until SIGTERM/SIGINT."""
    raise_fd_limit()
    table = {name: prepare(route) for name, route in routes.items()}
    stats = ServerStats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: BenchProtocol(table, stats), HOST, port, backlog=BACKLOG, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(json.dumps({"port": bound}) + "\n")
    sys.stdout.flush()
    async with server:
        await stop.wait()


def spawn(python: str = sys.executable) -> tuple[subprocess.Popen[bytes], int]:
    """Start the server in a new process; return it and its port once it listens."""
    proc = subprocess.Popen(
        [python, "-m", "benchmarks.server"],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError("the benchmark server did not start")
    return proc, int(json.loads(line)["port"])


@contextlib.contextmanager
def running(port: int | None) -> Iterator[int]:
    """``port`` (a server already running), or the port of one started for the block."""
    if port is not None:
        yield port
        return
    proc, port = spawn()
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait()


def stats(port: int, *, reset: bool = False) -> dict[str, Any]:
    """The server's counters (``reset=True`` zeroes them after reading)."""
    query = b"?reset" if reset else b""
    with socket.create_connection((HOST, port)) as sock:
        sock.sendall(
            b"GET /_stats%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
            % (query, HOST.encode())
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    result: dict[str, Any] = json.loads(data.partition(b"\r\n\r\n")[2])
    return result


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
